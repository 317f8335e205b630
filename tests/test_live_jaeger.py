"""Against a running Jaeger (optional): export a traced program, read the trace back.

Skipped unless MPTRACE_JAEGER_URL names Jaeger's query endpoint, for example:

    docker compose -f exporters/jaeger/compose.yaml up -d
    MPTRACE_JAEGER_URL=http://127.0.0.1:16686 python -m pytest tests/test_live_jaeger.py

The program exports over OTLP/gRPC to MPTRACE_JAEGER_OTLP (default: port 4317
on the same host). The trace is read back through Jaeger's API v3
(``/api/v3/traces/{trace_id}``, OTLP JSON), which must hold one resource (one
Jaeger "process") per OS process of the program, all in one service.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.subprocesses import ROOT, environment

JAEGER = os.environ.get("MPTRACE_JAEGER_URL")
pytestmark = pytest.mark.skipif(not JAEGER, reason="set MPTRACE_JAEGER_URL to a running Jaeger to run this test")


def otlp_endpoint():
    explicit = os.environ.get("MPTRACE_JAEGER_OTLP")
    if explicit:
        return explicit
    return "http://%s:4317" % urllib.parse.urlsplit(JAEGER).hostname


def read_trace(trace_id, timeout=60):
    url = "%s/api/v3/traces/%s" % (JAEGER.rstrip("/"), trace_id)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(1)  # Jaeger indexes what it receives in the background


def test_one_trace_with_one_jaeger_process_per_os_process():
    service = "mptrace-live-%s" % uuid.uuid4().hex[:8]
    env = environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(),
                       "OTEL_SERVICE_NAME": service})
    result = subprocess.run([sys.executable, "-m", "tests.programs.export_everywhere"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    trace_id = find_trace_id(service)
    document = read_trace(trace_id)
    resource_spans = document["result"]["resourceSpans"]
    pids, services = [], set()
    for resource_span in resource_spans:
        attributes = {a["key"]: a["value"] for a in resource_span["resource"]["attributes"]}
        services.add(attributes["service.name"]["stringValue"])
        pids.append(attributes["process.pid"]["intValue"])
    assert services == {service}
    assert len(set(pids)) == len(pids) >= 4, "expected one resource per OS process, got %s" % pids


def find_trace_id(service, timeout=60):
    now = time.time()
    query = urllib.parse.urlencode({"query.service_name": service, "query.start_time_min": _rfc3339(now - 3600),
                                    "query.start_time_max": _rfc3339(now + 300), "query.search_depth": 20})
    url = "%s/api/v3/traces?%s" % (JAEGER.rstrip("/"), query)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                found = json.load(response)["result"]["resourceSpans"]
            if found:
                return found[0]["scopeSpans"][0]["spans"][0]["traceId"]
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
        assert time.monotonic() < deadline, "Jaeger has no trace of service %s" % service
        time.sleep(1)


def _rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
