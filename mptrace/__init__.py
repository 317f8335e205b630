"""mptrace: OpenTelemetry tracing for Python multiprocessing.

    import mptrace
    mptrace.install()      # or install(tracer_provider=my_provider)

Importing this package patches nothing and imports neither OpenTelemetry nor
wrapt: spawn and forkserver children import it on their start-up path, so it
stays cheap. The functions below load the machinery on first use.
"""

import sys

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
    nothing. In a process that multiprocessing is starting or that mptrace
    traces as a child (a spawn or forkserver child re-running the main
    module's ``install()`` line, a fork server preloading it) it returns at
    once: the root configures the whole tree and reports its errors once.
    """
    if _in_child_of_a_traced_program():
        return None
    from mptrace._install import install as _install

    return _install(tracer_provider, **options)


def _in_child_of_a_traced_program():
    """Whether this process is a traced child, or one multiprocessing is still bootstrapping.

    Looked up without importing anything: this runs in every spawn child of a
    program that calls ``install()`` at top level.
    """
    child = sys.modules.get("mptrace._child")
    if child is not None and child.is_traced_child():
        return True
    # multiprocessing's own flag: set while a spawn or forkserver child (or the
    # fork server, preloading the main module) re-imports the main module.
    process = sys.modules.get("multiprocessing.process")
    return process is not None and getattr(process.current_process(), "_inheriting", False) is True


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
