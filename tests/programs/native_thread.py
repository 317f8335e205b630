"""A thread the threading module does not know (as a C extension or a driver starts one), alive at fork.

    python native_thread.py {pthread|_thread} [START_METHOD]     (default: the default start method)
"""

import _thread
import ctypes
import ctypes.util
import multiprocessing
import sys
import threading


def start_pthread():
    """What a C extension does: pthread_create with a C start routine (libc's sleep: no Python in it).

    The thread exists (in /proc/self/task) once pthread_create returns, scheduled or not.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    thread_id = ctypes.c_ulong()
    sleep = ctypes.cast(libc.sleep, ctypes.c_void_p)
    if libc.pthread_create(ctypes.byref(thread_id), None, sleep, ctypes.c_void_p(120)) != 0:
        raise OSError("pthread_create failed")


def start_low_level_thread(stop):
    """The _thread module's thread: Python code, but threading never hears of it."""
    started = _thread.allocate_lock()
    started.acquire()

    def wait():
        started.release()
        stop.acquire()

    _thread.start_new_thread(wait, ())
    started.acquire()


def work():
    pass


if __name__ == "__main__":
    kind, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
    stop = _thread.allocate_lock()
    stop.acquire()
    if kind == "pthread":
        start_pthread()
    else:
        start_low_level_thread(stop)
    print("threading knows:", threading.active_count())
    process = multiprocessing.get_context(method).Process(target=work, name="after-native-thread")
    process.start()
    process.join()
    stop.release()
    print("exit code:", process.exitcode)
