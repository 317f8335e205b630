"""A target module that imports OpenTelemetry only inside the target."""

import importlib
import sys


def work(queue):
    queue.put("opentelemetry.trace" in sys.modules)
    from opentelemetry import trace

    with trace.get_tracer("lazy").start_as_current_span("lazy-work"):
        pass


def work_through_the_sdk(queue):
    """The first OpenTelemetry import is the SDK's, which imports the API halfway through its own."""
    queue.put("opentelemetry.trace" in sys.modules)
    importlib.import_module("opentelemetry.sdk.trace")

    from opentelemetry import trace

    with trace.get_tracer("lazy").start_as_current_span("lazy-work"):
        pass


def task_through_the_sdk(x):
    """A Pool task whose module the worker first imports to run it: OpenTelemetry arrives with the SDK."""
    importlib.import_module("opentelemetry.sdk.trace")

    from opentelemetry import trace

    with trace.get_tracer("lazy").start_as_current_span("lazy-task"):
        return x * 2


def initializer_through_the_sdk():
    """A Pool initializer that brings OpenTelemetry's SDK into the worker."""
    importlib.import_module("opentelemetry.sdk.trace")

    from opentelemetry import trace

    with trace.get_tracer("lazy").start_as_current_span("lazy-initializer"):
        pass
