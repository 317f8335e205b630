"""mptrace in every program of a traced CPython suite run (see tools/cpython_suites.py).

For a traced run, tools/cpython_suites.py puts a .pth file in the
interpreter's site-packages that imports this module when
$MPTRACE_SUITES_SPANS is set, so every Python process of the run imports it at
start-up, including those a test starts with ``-I`` or ``-E``. A process that multiprocessing
starts itself (a spawn child, the fork server, the resource tracker) is left
alone: mptrace instruments it through its parent, as it would for any program.
Any other process (the test runner, its workers, a program a test starts with
``subprocess``) is a root: it installs mptrace with a provider whose exporter
only counts spans, and writes that count at exit to $MPTRACE_SUITES_SPANS, so
the comparison can show that the traced run traced something.
"""

import os
import sys
import types


def _command_line():
    """This process's argv as the kernel holds it: ``sys.argv`` lacks the ``-c`` code this early."""
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")
    except OSError:
        return []


def _started_by_multiprocessing(argv):
    """A spawn child (``--multiprocessing-fork``), or ``-c 'from multiprocessing.forkserver import main'``-like."""
    return b"--multiprocessing-fork" in argv or any(arg.startswith(b"from multiprocessing.") for arg in argv)


def _install_counting():
    import atexit

    # Before the provider: see tests/__init__.py (opentelemetry-sdk's at-fork handler).
    import concurrent.futures.thread  # noqa: F401
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import mptrace

    class CountingExporter(SpanExporter):
        spans = 0

        def export(self, spans):
            CountingExporter.spans += len(spans)
            return SpanExportResult.SUCCESS

    def write_count(directory=os.environ.get("MPTRACE_SUITES_SPANS"), pid=os.getpid()):
        if directory and os.getpid() == pid and CountingExporter.spans:
            with open(os.path.join(directory, str(pid)), "w") as out:
                out.write("%d\n" % CountingExporter.spans)

    atexit.register(write_count)  # before install(): runs after mptrace's exit handler has collected the spans
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(CountingExporter()))
    mptrace.install(tracer_provider=provider)


def _first_time():
    """True once per process: a venv's site-packages is reached twice (lib and its lib64 link), the .pth too."""
    if "mptrace_suites_site" in sys.modules:
        return False
    sys.modules["mptrace_suites_site"] = types.ModuleType("mptrace_suites_site")
    return True


if _first_time() and not _started_by_multiprocessing(_command_line()):
    _install_counting()
