"""mptrace: OpenTelemetry tracing for Python multiprocessing.

    import mptrace
    mptrace.install()      # or install(tracer_provider=my_provider)

Importing this package patches nothing and imports neither OpenTelemetry nor
wrapt: spawn and forkserver children import it on their start-up path, so it
stays cheap. The functions below load the machinery on first use.
"""

from mptrace._errors import ConfigurationError

__version__ = "0.1.0"
__all__ = ["install", "uninstall", "flush", "stats", "ConfigurationError", "__version__"]


def install(tracer_provider=None, **options):
    """Instrument multiprocessing in this process and every child it starts.

    With no provider, the global one is used; if the application configured
    none, an SDK provider is built from the standard ``OTEL_*`` variables and
    set as the global provider. A second call is a no-op. Unknown or invalid
    options raise ``TypeError``/``ValueError`` naming the option; an ``OTEL_*``
    variable it cannot use raises ``ConfigurationError`` (a ``ValueError``)
    naming the variable and its value. With ``OTEL_SDK_DISABLED=true`` it does
    nothing.
    """
    from mptrace._install import install as _install

    return _install(tracer_provider, **options)


def uninstall():
    """Restore every patched object, collect outstanding spans, stop collecting."""
    from mptrace._install import uninstall as _uninstall

    return _uninstall()


def flush(timeout=5.0):
    """Hand every span of already-exited children to the provider, then flush it.

    Returns True when everything arrived within ``timeout`` seconds.
    """
    from mptrace._install import flush as _flush

    return _flush(timeout)


def stats():
    """Counters of the span collector in this (root) process, as a dict."""
    from mptrace._install import stats as _stats

    return _stats()
