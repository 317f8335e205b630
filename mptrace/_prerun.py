"""Failures before run(): a spawn or forkserver child that dies while it starts.

From the stowaway's activation until ``_bootstrap``, a spawn/forkserver child
runs ``spawn.prepare`` (working directory, sys.path, ..., then the re-import of
the main module as ``__mp_main__``) and unpickles the process object. An
exception there never reaches ``run()``. CPython reports it through
``sys.excepthook`` on both paths (3.9-3.13): spawn's interpreter after
``spawn_main`` raises, forkserver's child branch of ``forkserver.main``
explicitly before ``os._exit(1)``. So the child watches with a hook chained in
front of the previous one: it records the failure, hides mptrace's own frames
from the traceback, and calls the previous hook with the same arguments, so the
printed traceback is the one an untraced run prints.

The parent reads the recorded failure from the child's spool file when it
observes the exit (``read_failure``), so its ``mp.process`` says it too.

Everything the failure path needs is imported when this module is: a failure
can come while the main module's imports are half done, and must not depend
on importing anything then. Standard library only (no ``traceback``: 2.6 ms
of imports in every child, for a failure most children never have).
"""

import os
import sys

from mptrace import _litespan, _log, _spool, semconv

MAX_MESSAGE = 1000  # characters of the exception's message kept
MAX_FRAMES = 64  # frames of the formatted traceback kept (the innermost)
MAIN_GUARD_HINT = ('put the code that starts processes or creates pools under `if __name__ == "__main__":` '
                   "in the main module: a spawn or forkserver child re-runs its top level")

_OWN_DIRECTORY = os.path.dirname(os.path.abspath(__file__)) + os.sep
_INTERNAL_DIRECTORIES = tuple(os.sep + name + os.sep for name in ("multiprocessing", "importlib"))
_INTERNAL_FILES = ("runpy.py",)
_IMPORTLIB_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_MAIN_IMPORT_FUNCTIONS = ("_fixup_main_from_path", "_fixup_main_from_name", "import_main_path")
_MAIN_GUARD_FUNCTION = "_check_not_importing_main"
_MAIN_GUARD_MESSAGE = "finished its bootstrapping phase"


# -- the watch: from activation until _bootstrap ---------------------------------


class _Watch:
    """One chained ``sys.excepthook`` in one process; ``record(exception)`` runs once, before the previous hook."""

    def __init__(self, record):
        self.pid = os.getpid()
        self.record = record
        self.active = True
        self.previous = sys.excepthook
        self.hook = self._make_hook()

    def _make_hook(self):
        watch = self

        def excepthook(kind, value, tb):
            if watch.active and watch.pid == os.getpid() and isinstance(value, BaseException):
                watch.active = False
                try:
                    hide_own_frames(value)
                except Exception:
                    pass
                try:
                    watch.record(value)
                except Exception:
                    _log.internal_error("recording a failure before run()")
            return watch.previous(kind, value, tb)

        return excepthook


_watch = None


def watch(record):
    """Until ``stop()``: an uncaught exception in this process calls ``record(exception)`` first."""
    global _watch
    stop()
    _watch = _Watch(record)
    sys.excepthook = _watch.hook


def stop():
    """``_bootstrap`` began: exceptions from here on are run()'s, reported as they always were.

    The previous hook goes back unless the program chained its own on top of
    ours meanwhile; then ours stays in the chain, inert.
    """
    global _watch
    current, _watch = _watch, None
    if current is None:
        return
    current.active = False
    if sys.excepthook is current.hook:
        sys.excepthook = current.previous


# -- what the failure was ------------------------------------------------------------


def _frames(exception):
    """The (code, line number) of each frame of the exception's traceback, outermost first."""
    frames = []
    tb = getattr(exception, "__traceback__", None)
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def _in_spawn(code):
    spawn = sys.modules.get("multiprocessing.spawn")
    return spawn is not None and code.co_filename == getattr(spawn, "__file__", None)


def phase_of(exception):
    """Which phase of the start the exception ended, read from where it passed."""
    names = {code.co_name for code, _ in _frames(exception) if _in_spawn(code)}
    if names.intersection(_MAIN_IMPORT_FUNCTIONS):
        return semconv.PHASE_MAIN_IMPORT
    if "prepare" in names:
        return semconv.PHASE_PREPARATION
    return semconv.PHASE_UNPICKLING


def _is_internal(filename):
    if not filename or filename.startswith("<") or filename.startswith(_OWN_DIRECTORY):
        return True
    return any(d in filename for d in _INTERNAL_DIRECTORIES) or os.path.basename(filename) in _INTERNAL_FILES


def location_of(exception):
    """``path:line`` in the program's own code: where the syntax error is, else the deepest frame of its own."""
    if isinstance(exception, SyntaxError) and exception.filename and exception.lineno:
        return "%s:%d" % (exception.filename, exception.lineno)
    own = [(code, line) for code, line in _frames(exception) if not _is_internal(code.co_filename)]
    if not own:
        return None
    code, line = own[-1]
    return "%s:%d" % (code.co_filename, line)


def is_missing_main_guard(exception):
    """CPython's RuntimeError for a process started while the main module is being re-imported."""
    if not isinstance(exception, RuntimeError):
        return False
    if any(code.co_name == _MAIN_GUARD_FUNCTION and _in_spawn(code) for code, _ in _frames(exception)):
        return True
    return _MAIN_GUARD_MESSAGE in _message(exception)


def _message(exception):
    try:
        return str(exception)
    except Exception:  # a user __str__ that raises
        return "<unprintable %s>" % type(exception).__name__


def first_paragraph(message):
    """The first paragraph of a message, on one line: CPython's main-guard message is 15 indented lines."""
    paragraphs = [" ".join(p.split()) for p in message.strip().split("\n\n")]
    return next((p for p in paragraphs if p), "")


def failure_attributes(exception):
    """The attributes that name a failure before run(), for mp.process.run and mp.process."""
    attributes = {
        semconv.CHILD_FAILURE_PHASE: phase_of(exception),
        semconv.CHILD_FAILURE_TYPE: type(exception).__name__,
        semconv.CHILD_FAILURE_MESSAGE: _message(exception)[:MAX_MESSAGE],
        semconv.OTEL_ERROR_TYPE: _litespan.qualified_type_name(exception),
    }
    location = location_of(exception)
    if location:
        attributes[semconv.CHILD_FAILURE_LOCATION] = location
    if is_missing_main_guard(exception):
        attributes[semconv.CHILD_FAILURE_HINT] = MAIN_GUARD_HINT
    return attributes


def status_description(attributes):
    """``RuntimeError in main-module import: An attempt has been made ...``: the span's status."""
    message = first_paragraph(str(attributes.get(semconv.CHILD_FAILURE_MESSAGE) or ""))
    head = "%s in %s" % (attributes.get(semconv.CHILD_FAILURE_TYPE), attributes.get(semconv.CHILD_FAILURE_PHASE))
    return head + (": " + message if message else "")


def format_exception(exception):
    """A traceback in Python's own layout, without source lines (they need linecache)."""
    lines = ["Traceback (most recent call last):\n"]
    frames = _frames(exception)
    if len(frames) > MAX_FRAMES:
        lines.append("  [%d frames left out]\n" % (len(frames) - MAX_FRAMES))
    for code, line in frames[-MAX_FRAMES:]:
        lines.append('  File "%s", line %d, in %s\n' % (code.co_filename, line, code.co_name))
    message = _message(exception)
    lines.append("%s: %s\n" % (_litespan.qualified_type_name(exception), message) if message
                 else "%s\n" % _litespan.qualified_type_name(exception))
    return "".join(lines)


def exception_event(exception):
    """The OpenTelemetry ``exception`` event's attributes."""
    return {
        "exception.type": type(exception).__name__,
        "exception.message": _message(exception)[:MAX_MESSAGE],
        "exception.stacktrace": format_exception(exception),
        "exception.escaped": "True",
    }


# -- the printed traceback stays the untraced one ---------------------------------------


def hide_own_frames(exception):
    """Unlink mptrace's frames from the traceback (and those of its context and cause).

    They are wrappers that call straight through (the ``spawn.prepare``
    timer, the import timer's loader), so without them the traceback reads as
    in an untraced run. The import timer's loader also splits importlib's
    frames into two runs, of which Python trims only the second: the first
    goes with it.
    """
    seen = set()
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        _unlink_own(exception.__traceback__)
        exception = exception.__cause__ or exception.__context__


def _unlink_own(tb):
    kept = []
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(_OWN_DIRECTORY) and kept:
            if filename.endswith("_importhook.py"):
                while len(kept) > 1 and kept[-1].tb_frame.f_code.co_filename in _IMPORTLIB_FILES:
                    kept.pop()
        else:
            kept.append(tb)
        tb = tb.tb_next
    for outer, inner in zip(kept, kept[1:] + [None]):
        if outer.tb_next is not inner:
            outer.tb_next = inner


# -- the parent's side ------------------------------------------------------------


def read_failure(directory, run_span_id):
    """The failure attributes the child with this run span recorded before run(), or None."""
    path = os.path.join(directory, _spool.file_name(run_span_id))
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return None
    wanted = "%016x" % run_span_id
    for line in reversed(lines):
        record = _spool.decode(line)
        if record and record.get("t") == _spool.END and record.get("sid") == wanted:
            attributes = record.get("a")
            if isinstance(attributes, dict) and semconv.CHILD_FAILURE_PHASE in attributes:
                return {k: v for k, v in attributes.items() if k in _COPIED and isinstance(v, str)}
            return None
    return None


_COPIED = (semconv.CHILD_FAILURE_PHASE, semconv.CHILD_FAILURE_TYPE, semconv.CHILD_FAILURE_MESSAGE,
           semconv.CHILD_FAILURE_LOCATION, semconv.CHILD_FAILURE_HINT, semconv.OTEL_ERROR_TYPE)
