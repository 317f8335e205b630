"""Starts one child that starts one grandchild; prints the spans as JSON.

    python -m tests.programs.tree CHILD_METHOD GRANDCHILD_METHOD
"""

import json
import multiprocessing
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace
from tests import targets

# An explicit resource: TracerProvider() alone runs resource detectors on a thread
# pool, and a fork right after that can see the exiting thread (3.12+ warns).
TEST_RESOURCE = Resource({"service.name": "mptrace-tests"})

if __name__ == "__main__":
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=TEST_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mptrace.install(tracer_provider=provider)
    child = multiprocessing.get_context(sys.argv[1]).Process(target=targets.start_grandchild, args=(sys.argv[2],))
    child.start()
    child.join()
    mptrace.flush()
    print(json.dumps({"exitcode": child.exitcode, "spans": [
        {"name": s.name, "span_id": s.context.span_id, "parent": s.parent.span_id if s.parent else None,
         "trace_id": s.context.trace_id, "pid": s.resource.attributes.get("process.pid")}
        for s in exporter.get_finished_spans()]}))
