"""mp.program: one span around a whole program run, so that the run is one trace.

Without it, every ``start()`` made outside a span of the program's own begins a
trace of its own: a program that starts two processes at top level exports two
traces, and no backend shows them together. ``mptrace run`` (and so ``mptrace
compare``) always opens this span before the program's first line; an
application that calls ``install()`` itself opts in with
``install(program_span=True)``.

The span is made current in the thread that opened it (the main thread), so
every span started there nests under it: processes, pools, the program's own
spans. It ends at exit (or ``uninstall()``), after multiprocessing has joined
the children, and carries how the program ended: its exit status and, when it
failed, the exception and where it was raised.
"""

import os
import sys
import threading
import traceback

from mptrace import _litespan, _log, semconv
from mptrace._state import state

# Frames that are not the program's: a failure is placed at the program's own code.
_NOT_THE_PROGRAM = (os.sep + "runpy.py", "<frozen runpy>", os.sep + "mptrace" + os.sep)


class ProgramSpan:
    """The root span of a program run, current in the thread that began it."""

    def __init__(self, tracer, name):
        from opentelemetry import context, trace

        self.span = tracer.start_span(semconv.SPAN_PROGRAM, kind=trace.SpanKind.INTERNAL,
                                      attributes={semconv.PROGRAM_NAME: name,
                                                  semconv.OTEL_PROCESS_PID: os.getpid()})
        self._token = context.attach(trace.set_span_in_context(self.span))
        self._thread = threading.get_ident()
        self._outcome_known = False

    def set_outcome(self, status, failure=None):
        """How the program ended: ``status`` as the shell sees it (negative: a signal), the uncaught exception."""
        self._outcome_known = True
        span = self.span
        span.set_attribute(semconv.OTEL_PROCESS_EXIT_CODE, status)
        if failure is not None:
            _record_failure(span, failure)
        elif status != 0:
            from opentelemetry.trace.status import Status, StatusCode

            span.set_attribute(semconv.OTEL_ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR, "exit status %d" % status))

    def end(self):
        """End the span; without a known outcome, an uncaught exception the interpreter reported is one."""
        if not self._outcome_known:
            uncaught = getattr(sys, "last_value", None)  # set by the interpreter before atexit handlers run
            if isinstance(uncaught, BaseException) and not isinstance(uncaught, SystemExit):
                _record_failure(self.span, uncaught)
        self.span.end()
        self._detach()

    def _detach(self):
        from opentelemetry import context

        token, self._token = self._token, None
        if token is not None and threading.get_ident() == self._thread:  # a token belongs to its thread
            try:
                context.detach(token)
            except Exception:  # another thread, or the context moved on: nothing to undo there
                pass


def _record_failure(span, failure):
    from opentelemetry.trace.status import Status, StatusCode

    span.record_exception(failure, escaped=True)
    span.set_attribute(semconv.OTEL_ERROR_TYPE, _litespan.qualified_type_name(failure))
    where = failure_location(failure)
    if where is not None:
        span.set_attribute(semconv.OTEL_CODE_FILE_PATH, where[0])
        span.set_attribute(semconv.OTEL_CODE_LINE_NUMBER, where[1])
    span.set_status(Status(StatusCode.ERROR, "%s: %s" % (type(failure).__name__, _safe_str(failure))))


def failure_location(failure):
    """(file, line) where the program failed: a SyntaxError's own place, else its deepest own frame."""
    if isinstance(failure, SyntaxError) and failure.filename and failure.lineno:
        return str(failure.filename), int(failure.lineno)
    frames = traceback.extract_tb(failure.__traceback__)
    own = [f for f in frames if not any(marker in f.filename for marker in _NOT_THE_PROGRAM)]
    last = (own or frames or [None])[-1]
    return (last.filename, last.lineno) if last is not None else None


def _safe_str(value):
    try:
        return str(value)
    except Exception:
        return "<unprintable %s>" % type(value).__name__


def begin(name):
    """Open mp.program in this thread (the root only); the span, or None."""
    if not state.is_root() or state.root.program is not None:
        return None
    state.root.program = _log.safely("opening the program span", ProgramSpan, state.tracer, name)
    return state.root.program


def set_outcome(status, failure=None):
    program = state.root.program if state.is_root() else None
    if program is not None:
        _log.safely("recording how the program ended", program.set_outcome, status, failure)


def end():
    """End mp.program (at exit or uninstall), once."""
    program = state.root.program if state.is_root() else None
    if program is not None:
        state.root.program = None
        _log.safely("ending the program span", program.end)


def default_name():
    """What a program that called install() itself is called: its script, or its module."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        name = spec.name
        return "-m " + (name[:-len(".__main__")] if name.endswith(".__main__") else name)
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    return path or "python"
