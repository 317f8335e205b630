"""Which TracerProvider mptrace reports to."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from mptrace import _environment, _log

QUIET_SECONDS = 60.0  # after an export error, further ones are counted, not logged, for this long


def resolve(tracer_provider):
    """The provider given, else the global SDK provider, else one built from OTEL_*.

    Returns None when mptrace should trace nothing: ``OTEL_SDK_DISABLED`` is
    true, or the global provider is not the SDK's (for instance a no-op one).
    Raises ConfigurationError for an OTEL_* value it cannot use.
    """
    if _environment.sdk_disabled():
        _log.info("OTEL_SDK_DISABLED is true: not tracing")
        return None
    if tracer_provider is not None:
        if not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                "install() argument 'tracer_provider' must be an opentelemetry.sdk.trace.TracerProvider, "
                "got %r" % (tracer_provider,))
        return tracer_provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the application's, or opentelemetry-instrument's
        return current
    if isinstance(current, trace.ProxyTracerProvider):
        configured = _environment.build()
        _say_where_spans_go(configured)
        for exporter in configured.exporters:
            quiet_repeated_errors(exporter)
        trace.set_tracer_provider(configured.provider)
        return configured.provider
    _log.warning("the global tracer provider %r is not the OpenTelemetry SDK's; not tracing", current)
    return None


def _say_where_spans_go(configured):
    """Once: where spans go (a warning when nobody chose, so that nothing is silent)."""
    if configured.explicit:
        if configured.destinations:
            _log.info("sending spans to %s", " and ".join(configured.destinations))
        return
    if configured.destinations:
        _log.warning("no exporter is configured (OTEL_TRACES_EXPORTER); sending spans to %s, the "
                     "OpenTelemetry default. Set OTEL_TRACES_EXPORTER to choose (otlp, console, mptrace, none)",
                     configured.destinations[0])
    else:
        _log.warning("spans are not exported: no exporter is configured (OTEL_TRACES_EXPORTER) and the default, "
                     "OTLP, is not installed (%s). Or set OTEL_TRACES_EXPORTER=console or mptrace",
                     _environment.OTLP_EXTRA_HINT)


class QuietRepeats:
    """A logging filter: one export error, then silence for QUIET_SECONDS, then one with a count.

    An exporter whose backend is down logs every failed batch, with retries;
    a traced program would print that all its life.
    """

    def __init__(self, clock=None):
        import time

        self._clock = clock or time.monotonic
        self._quiet_until = None
        self._suppressed = 0

    def filter(self, record):
        import logging

        if record.levelno < logging.WARNING:
            return True
        now = self._clock()
        if self._quiet_until is not None and now < self._quiet_until:
            self._suppressed += 1
            return False
        if self._suppressed:
            record.msg = "%s (and %d similar messages in the last %d s, not shown)" % (
                record.msg, self._suppressed, QUIET_SECONDS)
            self._suppressed = 0
        self._quiet_until = now + QUIET_SECONDS
        return True


def quiet_repeated_errors(exporter):
    """Put one QuietRepeats on the loggers of ``exporter``'s modules (an exporter mptrace built)."""
    import logging

    quiet = QuietRepeats()
    for cls in type(exporter).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if module.startswith("opentelemetry.exporter."):
            logger = logging.getLogger(module)
            if not any(isinstance(f, QuietRepeats) for f in logger.filters):
                logger.addFilter(quiet)
