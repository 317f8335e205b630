"""Which TracerProvider mptrace reports to."""

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from mptrace import _log


def resolve(tracer_provider):
    """The provider given, else the global SDK provider, else one built from OTEL_*.

    Returns None when the global provider is not the SDK's (for instance a
    no-op one): mptrace then leaves processes alone.
    """
    if tracer_provider is not None:
        if not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                "install() argument 'tracer_provider' must be an opentelemetry.sdk.trace.TracerProvider, "
                "got %r" % (tracer_provider,))
        return tracer_provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if isinstance(current, trace.ProxyTracerProvider):
        provider = build_from_environment()
        trace.set_tracer_provider(provider)
        return provider
    _log.warning("the global tracer provider %r is not the OpenTelemetry SDK's; not tracing", current)
    return None


def build_from_environment():
    """An SDK provider configured by the standard OTEL_* variables."""
    provider = TracerProvider()  # resource and sampler come from OTEL_* already
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    for name in names:
        _add_exporter(provider, name)
    return provider


def _add_exporter(provider, name):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    if name == "none":
        return
    if name == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif name == "otlp":
        exporter = _otlp_exporter()
        if exporter is None:
            _log.warning(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'mptrace[otlp]'; "
                "spans are not exported")
            return
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        raise ValueError("OTEL_TRACES_EXPORTER has an unsupported value %r (choose from: otlp, console, none)" % name)


def _otlp_exporter():
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            raise ValueError(
                "OTEL_EXPORTER_OTLP_PROTOCOL has an unsupported value %r (choose from: grpc, http/protobuf)"
                % protocol)
    except ImportError:
        return None
    return OTLPSpanExporter()
