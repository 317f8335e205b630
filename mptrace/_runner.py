"""Running a user's program as ``__main__`` in this interpreter, as ``python`` would.

``mptrace run`` installs mptrace, then hands the program to ``runpy`` exactly
as ``python script.py`` and ``python -m module`` do: ``sys.argv`` is the
program's own, ``sys.path[0]`` is the script's directory (or the current one
for ``-m``), and ``__main__`` is a module whose ``__file__`` (or
``__spec__``) is the program's, so spawn and forkserver children re-import
the program, not mptrace. The program's exit status becomes ours: its
``sys.exit`` code, 1 after an uncaught exception (reported through
``sys.excepthook``), and death by SIGINT after an uncaught KeyboardInterrupt,
as CPython itself does. No signal handler is installed: a signal that kills
the program kills it the same way under mptrace.
"""

import os
import runpy
import signal
import sys


class ProgramNotFound(Exception):
    """The script or module to run does not exist; the message says which."""


def check(target, is_module):
    """Raise ProgramNotFound before installing anything if ``target`` cannot be run."""
    if is_module:
        import importlib.util

        sys.path.insert(0, os.getcwd())
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError) as error:
            raise ProgramNotFound("cannot run module %r: %s" % (target, error)) from None
        finally:
            sys.path.pop(0)
        if found is None:
            raise ProgramNotFound("no module named %r" % target)
    elif not os.path.exists(target):
        raise ProgramNotFound("no such file: %r" % target)


def run(target, args, is_module):
    """Run the program; returns (its exit status, the uncaught exception that ended it or None).

    The status is an int, or a negative signal number.
    """
    try:
        if is_module:
            sys.argv = [target] + list(args)  # runpy sets argv[0] to the module's file, as python -m does
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target] + list(args)
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exit_:
        return _exit_status(exit_.code), None
    except KeyboardInterrupt as interrupt:
        _report_uncaught()
        return -signal.SIGINT, interrupt
    except BaseException as error:
        _report_uncaught()
        return 1, error
    return 0, None


def _report_uncaught():
    """``sys.excepthook`` on the exception, its traceback starting at the program's first frame."""
    kind, error, traceback = sys.exc_info()
    while traceback is not None and _is_ours(traceback.tb_frame.f_code.co_filename):
        traceback = traceback.tb_next
    sys.excepthook(kind, error.with_traceback(traceback), traceback)


def _is_ours(filename):
    """This module's frames and runpy's: python itself shows neither."""
    return filename in (__file__, runpy.__file__) or filename.startswith("<frozen runpy")


def _exit_status(code):
    """What ``sys.exit(code)`` makes the process's exit status (a message goes to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


_pending_signal = [None]


def _die_by_pending_signal():
    signal_number = _pending_signal[0]
    if signal_number is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal_number, signal.SIG_DFL)
        os.kill(os.getpid(), signal_number)


def prepare():
    """Call before anything registers an atexit handler: a signal death must come after all of them."""
    import atexit

    atexit.register(_die_by_pending_signal)  # atexit runs handlers last-registered first


def exit_with(status):
    """End this process with ``status``: an exit code, or a negative number for death by that signal.

    Exits through ``sys.exit`` so atexit handlers run (the trace is written
    there); a signal is re-raised after them, with its default action.
    """
    if status < 0:
        _pending_signal[0] = -status
        status = 128 - status  # what a shell reports, if the signal somehow does not kill us
    sys.exit(status)
