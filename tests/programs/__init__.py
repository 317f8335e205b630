"""Whole programs the tests run in a fresh interpreter (``python -m tests.programs.X``)."""

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# An explicit resource: TracerProvider() alone runs resource detectors on a thread
# pool, and a fork right after that can see the exiting thread (3.12+ warns).
TEST_RESOURCE = Resource({"service.name": "mptrace-tests"})


def in_memory_pipeline():
    """(provider, exporter): a provider whose spans stay in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=TEST_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def mptrace_call_recorder(on_call, on_c_call=None):
    """A ``sys.setprofile`` function that calls ``on_call("module:name")`` for each call of one of mptrace's
    own functions, and ``on_c_call(function)`` for each call of a builtin, if given."""
    import mptrace

    package = os.path.dirname(os.path.abspath(mptrace.__file__)) + os.sep

    def record(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(package):
            on_call("%s:%s" % (os.path.basename(code.co_filename)[:-3], code.co_name))
        elif event == "c_call" and on_c_call is not None:
            on_c_call(arg)

    return record
