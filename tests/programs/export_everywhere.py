"""A program configured only by OTEL_* variables: mptrace.install() with no provider.

    OTEL_EXPORTER_OTLP_ENDPOINT=... python -m tests.programs.export_everywhere

Starts a child under every start method, a Pool, and a grandchild, inside one
span of the program's own (through the global provider mptrace set up), then
exits without flushing: the spans must leave at exit on their own.
"""

import multiprocessing

from opentelemetry import trace

import mptrace
from mptrace.testing import start_methods
from tests import pool_targets, targets

if __name__ == "__main__":
    mptrace.install()
    methods = start_methods()
    with trace.get_tracer("program").start_as_current_span("program-work"):
        for method in methods:
            child = multiprocessing.get_context(method).Process(target=targets.start_grandchild, args=(method,))
            child.start()
            child.join()
        pool = multiprocessing.get_context("spawn").Pool(2)
        assert pool.map(pool_targets.square, range(4)) == [0, 1, 4, 9]
        pool.close()  # not terminate(): a worker terminated before it got going reports no mp.process.run
        pool.join()
    print("done", flush=True)
