"""A program for the ``mptrace run`` tests, run as a script or with -m.

    python tests/programs/cli_program.py MODE [ARGS...]

Prints its arguments and how ``__main__`` looks, starts one child (whose
target lives in ``__main__``, so a spawn child must re-import this program),
then ends as MODE says: ``ok``, ``exit3``, ``raise``, ``interrupt``, ``wait``
(prints "ready" and sleeps, for a signal from outside), ``os_exit``.
"""

import multiprocessing
import os
import sys
import time


def child_work(tag):
    print("child got", tag, flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    print("argv", sys.argv[1:], flush=True)
    print("main", __name__, __spec__.name if __spec__ else None, flush=True)
    # What `mptrace run` set for install() is gone again: the program sees the environment it was given.
    print("env", sorted(name for name in ("OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "MPTRACE_TRACE_FILE",
                                          "MPTRACE_TREE", "MPTRACE_SPOOL_DIR") if name in os.environ), flush=True)
    child = multiprocessing.Process(target=child_work, args=("tag-1",))
    child.start()
    child.join()
    print("child exit", child.exitcode, flush=True)
    if mode == "exit3":
        sys.exit(3)
    if mode == "raise":
        raise ValueError("raised by the program")
    if mode == "interrupt":
        raise KeyboardInterrupt
    if mode == "wait":
        print("ready", flush=True)
        time.sleep(60)
    if mode == "os_exit":
        os._exit(4)
