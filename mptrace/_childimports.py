"""What a spawn or forkserver child imports before run(), and how long it takes.

A fresh interpreter re-imports the parent's main module (as ``__mp_main__``)
and then imports whatever unpickling the process object needs. When that is
slow, it is slow in every child: mptrace records it as two ``mp.import`` spans
under ``mp.process.run``, one per phase (``main`` and ``unpickle``), each with
how many modules it imported and the slowest of them. The number of spans is
fixed whatever the child imports; the slowest modules are a bounded list.

Timing per module uses an import hook that lives only from the stowaway's
activation to ``_bootstrap``. Standard library only: it runs in the child.
"""

import sys
import time

from mptrace import _importhook

MAX_SLOWEST = 8


class ImportClock:
    """Times module executions and the phases of a child's start-up."""

    def __init__(self, inherited):
        self.activated = time.time_ns()
        # A forkserver child is forked from the server: it starts with what the
        # server imported (its preload list), mptrace's own modules left out.
        self.inherited = inherited
        self.main_reran = False  # set by the prepare() hook
        self.phases = []  # (phase, start, end, modules imported, slowest)
        self._durations = {}  # module -> ns, for the phase in progress
        self._starts = {}
        self._open = None  # (phase, start, modules before) of the phase left open
        self._finder = _importhook.install(_importhook.AfterImportFinder(self._starting, self._finished))

    def _starting(self, name):
        self._starts[name] = time.perf_counter_ns()
        return True

    def _finished(self, module):
        name = getattr(module, "__name__", None)
        started = self._starts.pop(name, None)
        if started is not None:
            self._durations[name] = time.perf_counter_ns() - started

    def measure(self, phase, function, *args):
        """Run ``function(*args)`` as one phase; its exceptions propagate."""
        self._durations = {}
        before, start = len(sys.modules), time.time_ns()
        try:
            return function(*args)
        finally:
            self._close_phase(phase, start, len(sys.modules) - before)

    def open_phase(self, phase):
        self._durations = {}
        self._open = (phase, time.time_ns(), len(sys.modules))

    def close_open_phase(self):
        if self._open is not None:
            phase, start, before = self._open
            self._open = None
            self._close_phase(phase, start, len(sys.modules) - before)

    def stop(self):
        _importhook.remove(self._finder)

    def _close_phase(self, phase, start, imported):
        slowest = sorted(self._durations.items(), key=lambda item: -item[1])[:MAX_SLOWEST]
        described = ["%s %.1f ms" % (name, ns / 1e6) for name, ns in slowest]
        self.phases.append((phase, start, time.time_ns(), imported, described))
