"""``opentelemetry-instrument python app.py`` instruments multiprocessing through mptrace."""

import os
import subprocess
import sys

import pytest

from mptrace import _environment
from mptrace.testing import start_methods
from tests.otlp_receivers import HttpReceiver
from tests.subprocesses import ROOT, environment

INSTRUMENT = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
METHODS = start_methods()


def entry_point_names(group):
    return {point.name: point.value for point in _environment._entry_points(group)}


def test_the_instrumentor_is_registered():
    assert entry_point_names("opentelemetry_instrumentor").get("multiprocessing") == \
        "mptrace.instrumentor:MultiprocessingInstrumentor"


def run_instrumented(receiver, extra_env=None):
    env = environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                       "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_METRICS_EXPORTER": "none",
                       "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "auto"})
    env.update(extra_env or {})
    return subprocess.run([INSTRUMENT, sys.executable, "-m", "tests.programs.auto_instrumented"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not os.path.exists(INSTRUMENT), reason="opentelemetry-instrumentation is not installed")
def test_every_child_joins_the_program_s_trace_under_opentelemetry_instrument():
    with HttpReceiver() as receiver:
        result = run_instrumented(receiver)
        spans = receiver.spans()
    assert result.returncode == 0 and "done" in result.stdout, result.stderr
    names = [s.name for s in spans]
    assert names.count("mp.process") == len(METHODS) and names.count("mp.process.run") == len(METHODS)
    assert names.count("user-work") == len(METHODS), "a child's own span was lost or exported twice"
    assert len({s.trace_id for s in spans}) == 1
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s.name != "program-work")
    assert len({s.pid for s in spans}) == len(METHODS) + 1  # a resource per process
    assert {s.attributes.get("mp.start_method") for s in spans if s.name == "mp.process"} == set(METHODS)


@pytest.mark.skipif(not os.path.exists(INSTRUMENT), reason="opentelemetry-instrumentation is not installed")
def test_it_can_be_disabled_like_any_instrumentation():
    with HttpReceiver() as receiver:
        result = run_instrumented(receiver, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "multiprocessing"})
        spans = receiver.spans()
    assert result.returncode == 0, result.stderr
    assert not [s for s in spans if s.name.startswith("mp.")]
    assert "program-work" in [s.name for s in spans]
