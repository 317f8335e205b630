"""A target module that imports OpenTelemetry only inside the target."""

import sys


def work(queue):
    queue.put("opentelemetry.trace" in sys.modules)
    from opentelemetry import trace

    with trace.get_tracer("lazy").start_as_current_span("lazy-work"):
        pass
