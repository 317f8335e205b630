"""Whole programs the tests run in a fresh interpreter (``python -m tests.programs.X``)."""

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
