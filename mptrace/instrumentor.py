"""``opentelemetry-instrument`` support: multiprocessing as one more instrumented library.

Registered under the ``opentelemetry_instrumentor`` entry point as
``multiprocessing`` (needs ``pip install 'mptrace[instrument]'``), so

    opentelemetry-instrument python app.py

configures the SDK from the OTEL_* variables and then calls
``MultiprocessingInstrumentor().instrument()``, which is ``mptrace.install()``
on the provider it configured. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=multiprocessing``
turns it off, as for any instrumentation.
"""

import sys

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import mptrace


class MultiprocessingInstrumentor(BaseInstrumentor):
    """``instrument(tracer_provider=None, **mptrace_options)``; ``uninstrument()``."""

    def instrumentation_dependencies(self):
        return ()  # multiprocessing is part of the standard library

    def _instrument(self, **kwargs):
        if is_multiprocessing_child():
            return  # the parent's mptrace traces this process already, from its bootstrap
        options = {k: v for k, v in kwargs.items() if k != "tracer_provider"}
        mptrace.install(tracer_provider=kwargs.get("tracer_provider"), **options)

    def _uninstrument(self, **kwargs):
        mptrace.uninstall()


def is_multiprocessing_child():
    """Whether this interpreter is a spawn child or a forkserver, started by multiprocessing.

    opentelemetry-instrument puts its sitecustomize on PYTHONPATH, so every such
    interpreter runs the auto-instrumentation at start-up, before
    multiprocessing hands it the parent's state; by then its command line says.
    """
    argv = sys.argv
    if "--multiprocessing-fork" in argv:  # spawn children (multiprocessing.spawn.is_forking)
        return True
    return len(argv) >= 2 and argv[0] == "-c" and "multiprocessing" in " ".join(argv[1:2])
