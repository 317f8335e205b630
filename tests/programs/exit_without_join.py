"""Starts children and exits without joining them; dumps spans at the very end.

    python -m tests.programs.exit_without_join METHOD OUTPUT.json
"""

import atexit
import json
import multiprocessing
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace

# An explicit resource: TracerProvider() alone runs resource detectors on a thread
# pool, and a fork right after that can see the exiting thread (3.12+ warns).
TEST_RESOURCE = Resource({"service.name": "mptrace-tests"})

exporter = InMemorySpanExporter()


def dump():
    spans = [{"name": s.name, "attributes": dict(s.attributes), "status": s.status.status_code.name,
              "span_id": s.context.span_id, "parent": s.parent.span_id if s.parent else None}
             for s in exporter.get_finished_spans()]
    with open(sys.argv[2], "w") as f:
        json.dump(spans, f)


def nap(seconds, ready=None):
    if ready is not None:
        ready.set()
    time.sleep(seconds)


if __name__ == "__main__":
    atexit.register(dump)  # registered before install(): runs after mptrace's exit work
    provider = TracerProvider(resource=TEST_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context(sys.argv[1])
    context.Process(target=nap, args=(0.3,), name="worker").start()
    ready = context.Event()
    context.Process(target=nap, args=(60, ready), name="daemon", daemon=True).start()
    assert ready.wait(30)  # the daemon is running when the parent exits
