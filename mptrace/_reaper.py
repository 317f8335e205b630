"""``mptrace run``'s spool directory is removed however the program ends.

install() removes its spool directory at exit, which a program killed by a
signal (SIGTERM, SIGKILL) or ending through ``os._exit`` never reaches; and
mptrace installs no signal handler in the program (a signal must kill it the
same way as untraced). So ``mptrace run`` gives install() a private parent
directory and, before the program starts, leaves a watcher behind that removes
it once the program is gone, however it went.

The watcher is a fork of ``mptrace run`` made before the program runs (no
thread exists yet), detached twice: it is nobody's child (the program's
``os.wait()`` never sees it) and in a session of its own (a signal to the
program's process group or terminal does not reach it). It holds nothing of
the program's (its standard streams are /dev/null, every other descriptor
closed) and blocks on a pipe whose write end only the program's process, and
the children it forks, hold (the end is closed on exec: a spawn child, the
forkserver and any program it runs do not hold it). When the last of them
is gone, the read returns and the watcher removes the directory and exits.
"""

import os
import shutil
import tempfile

PREFIX = "mptrace-run-"
_held = []  # the pipe's write end: held, never written, for the life of the program


def private_directory(parent):
    """A new directory in ``parent`` that is removed when this process and its fork children are gone."""
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    read_end, write_end = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:  # pragma: no cover (runs in the forked processes)
        _detach_and_watch(read_end, directory)
    os.close(read_end)
    os.waitpid(intermediate, 0)
    _held.append(write_end)
    return directory


def remove(directory):
    """Remove it now (at a normal exit: the watcher finds it gone)."""
    shutil.rmtree(directory, ignore_errors=True)


def _detach_and_watch(read_end, directory):  # pragma: no cover (runs in the forked processes)
    """In the first fork: a new session, a second fork that watches; never returns."""
    try:
        os.setsid()
        if os.fork() == 0:
            os.chdir("/")  # holds no directory of the program's either
            _keep_only(read_end)
            _wait_for_end_of_file(read_end)
            remove(directory)
    finally:
        os._exit(0)


def _keep_only(read_end):  # pragma: no cover
    """Standard streams to /dev/null, every descriptor but ``read_end`` closed: the watcher keeps no pipe
    of the program's open (a reader of its output would wait for the watcher)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = {0, 1, 2, read_end}
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = range(3, 1024)
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _wait_for_end_of_file(read_end):  # pragma: no cover
    while True:
        try:
            if not os.read(read_end, 1):
                return
        except InterruptedError:
            continue
        except OSError:
            return
