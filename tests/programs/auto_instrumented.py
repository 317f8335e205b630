"""A program that knows nothing of mptrace: run under ``opentelemetry-instrument``.

Starts a child under every start method, each making a span with the plain
OpenTelemetry API, inside one span of the program's own.
"""

import multiprocessing

from opentelemetry import trace

from mptrace.testing import start_methods
from tests import targets

if __name__ == "__main__":
    methods = start_methods()
    with trace.get_tracer("program").start_as_current_span("program-work"):
        for method in methods:
            child = multiprocessing.get_context(method).Process(target=targets.user_span)
            child.start()
            child.join()
            assert child.exitcode == 0
    print("done", flush=True)
