"""Span exporters of mptrace's own, for a run without a tracing backend.

``ProcessTreeExporter`` keeps the run's spans (every process's: they all reach
the root's provider) and, when the provider shuts down at exit, prints the
process tree to stderr and writes the whole trace as a Jaeger JSON file, which
Jaeger UI opens with "Upload" without any backend. It is what ``mptrace run``
uses when no exporter is configured, and what ``OTEL_TRACES_EXPORTER=mptrace``
selects for any program that calls ``mptrace.install()`` (the trace file then
goes where ``MPTRACE_TRACE_FILE`` says, if anywhere).
"""

import os
import threading

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from mptrace import _log
from mptrace._config import ENV_TRACE_FILE, ENV_TREE
MAX_SPANS = 200_000  # kept for the view and the file; a run with more keeps its first ones and says so


class ProcessTreeExporter(SpanExporter):
    """Collects spans in memory; at shutdown prints the process tree and writes the trace file.

    ``tree``: print the tree (to ``file``, default stderr; default: unless
    ``$MPTRACE_TREE`` is ``off``); ``trace_file``: where to write the Jaeger JSON
    trace (default: ``$MPTRACE_TRACE_FILE``, else nowhere).
    """

    def __init__(self, trace_file=None, tree=None, file=None, color=None):
        self.trace_file = trace_file if trace_file is not None else (os.environ.get(ENV_TRACE_FILE) or None)
        self.tree = tree if tree is not None else os.environ.get(ENV_TREE, "").strip().lower() != "off"
        self.file = file
        self.color = color
        self._spans = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._done = False

    def export(self, spans):
        with self._lock:
            room = MAX_SPANS - len(self._spans)
            self._spans.extend(spans[:max(room, 0)])
            self._dropped += max(len(spans) - max(room, 0), 0)
        return SpanExportResult.SUCCESS

    def spans(self):
        with self._lock:
            return list(self._spans)

    def force_flush(self, timeout_millis=30000):
        return True

    def shutdown(self):
        """Print and write once (the provider shuts down at exit); never raises."""
        with self._lock:
            if self._done:
                return
            self._done = True
        spans = self.spans()
        if self.tree:
            from mptrace import _tree

            _tree.render(spans, file=self.file, color=self.color)
        if self._dropped:
            _log.warning("the process tree and trace file show the first %d spans; %d more were left out",
                         MAX_SPANS, self._dropped)
        if self.trace_file and not spans:  # an empty trace must not replace the file of an earlier run
            _say("no spans were recorded, so no trace was written (%s left as it was)" % self.trace_file, self.file)
        elif self.trace_file:
            _log.safely("writing the trace file", self._write, spans)

    def _write(self, spans):
        from mptrace import _jaeger_json

        try:
            path = _jaeger_json.write(spans, self.trace_file)
        except OSError as error:  # the user's to fix, in one line: not a traceback of mptrace's
            _log.warning("cannot write the trace file %s: %s", self.trace_file, error.strerror or error)
            return
        _say("trace written to %s (Jaeger UI opens it: Search, Upload)" % path, self.file)


def _say(message, file=None):
    """One line for the person at the terminal, on stderr (where the tree goes)."""
    import sys

    try:
        print("mptrace: " + message, file=file or sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr closed: nobody to tell
