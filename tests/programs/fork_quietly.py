"""Forks traced children from a single thread (or, with --thread, with a second one).

    python -W always::DeprecationWarning -m tests.programs.fork_quietly [--thread]
"""

import multiprocessing
import sys
import threading

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
    stop = threading.Event()
    control = "--thread" in sys.argv
    if control:  # this must warn on 3.12+ (and stays shallow: forking with threads can deadlock)
        threading.Thread(target=stop.wait).start()
    context = multiprocessing.get_context("fork")
    for _ in range(3):
        p = context.Process(target=targets.succeed) if control else context.Process(
            target=targets.start_grandchild, args=("fork",))
        p.start()
        p.join()
    stop.set()
    mptrace.flush()
    print(len(exporter.get_finished_spans()), "spans")
