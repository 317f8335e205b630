"""Export configured by OTEL_* variables, to real OTLP receivers on 127.0.0.1."""

import subprocess
import sys

import pytest

from mptrace.testing import start_methods
from tests.otlp_receivers import GrpcReceiver, HttpReceiver
from tests.subprocesses import ROOT, environment

RECEIVERS = {"grpc": GrpcReceiver, "http/protobuf": HttpReceiver}


def run_program(module, env, timeout=120):
    """Run ``python -m module`` with ``env`` added to a clean OTEL_* environment."""
    return subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=environment(env))


@pytest.mark.parametrize("protocol", sorted(RECEIVERS))
def test_every_process_reaches_an_otlp_receiver_in_one_trace(protocol):
    with RECEIVERS[protocol]() as receiver:
        result = run_program("tests.programs.export_everywhere", {
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "export-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
        spans = receiver.spans()
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert spans, "nothing arrived at the %s receiver; stderr: %s" % (protocol, result.stderr)
    assert len({s.trace_id for s in spans}) == 1, "spans are spread over several traces: %s" % spans
    ids = {s.span_id for s in spans}
    orphans = [s for s in spans if s.parent_span_id is not None and s.parent_span_id not in ids]
    assert not orphans, "spans whose parent never arrived: %s" % orphans
    # One resource per OS process: Jaeger shows each as its own process, under one service.
    assert {s.resource["service.name"] for s in spans} == {"export-test"}
    assert {s.resource["deployment.environment"] for s in spans} == {"test"}
    runs = [s for s in spans if s.name == "mp.process.run"]
    assert len(runs) == 2 * len(start_methods()) + 2  # a child and a grandchild per method, and two pool workers
    pids = {s.pid for s in spans}
    assert len(pids) == len(runs) + 1, "expected one resource per process: %s" % spans
    for pid in pids:
        resources = {tuple(sorted(s.resource.items())) for s in spans if s.pid == pid}
        assert len(resources) == 1, "process %s arrived with several resources" % pid
    names = {s.name for s in spans}
    assert {"program-work", "mp.process", "mp.pool", "mp.task", "mp.task.run", "child-work",
            "grandchild-work"} <= names
