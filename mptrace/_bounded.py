"""Waiting on the user's span processors, with a deadline: flush(), uninstall(), exit.

An exporter can hang (a backend that never answers). A SimpleSpanProcessor
exports in the thread that ends a span, and the SDK's BatchSpanProcessor
``force_flush()`` ignores its timeout and waits for the export in progress
(opentelemetry-sdk 1.45). Where mptrace waits on its own account (flush(timeout),
uninstall(), and its exit work, which runs before the program's other atexit
handlers), each hand-over and flush is made in a helper thread and waited for
until one deadline. A call still running then is left to the processor (it has
the span: the SDK's business from there, as when an exporter raises); once one
call was late, the next ones are not made at all (GaveUp), so the whole wait
is bounded.
"""

import contextlib
import threading
import time

_window = None  # the Deadline of the work being waited for, in the thread doing it


class GaveUp(Exception):
    """Not called: an earlier call did not return before the deadline."""


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.thread = threading.get_ident()
        self.gave_up = False
        self._calls = None  # served by the helper thread, started on the first call
        self._helper = None

    def remaining(self):
        return max(0.0, self.end - time.monotonic())

    def call(self, function, args, kwargs):
        if self.gave_up:
            raise GaveUp()
        if self._calls is None and not self._start_helper():
            return function(*args, **kwargs)  # no thread to wait on: the call itself, without a bound
        done, outcome = threading.Event(), []
        self._calls.put((function, args, kwargs, done, outcome))
        if not done.wait(self.remaining()):
            self.gave_up = True  # the call goes on in the helper thread, on its own
            return None
        raised, value = outcome[0]
        if raised:
            raise value
        return value

    def _start_helper(self):
        """Whether the helper thread runs; Python 3.12+ refuses new threads once the interpreter
        is shutting down (atexit handlers), and then nothing can be waited for with a bound."""
        if self._helper is not None:
            return self._helper.is_alive()
        import queue  # here, not at the top: a spawn child loads this module with OpenTelemetry, and never waits

        calls = queue.SimpleQueue()
        helper = threading.Thread(target=_serve, args=(calls,), name="mptrace-handover", daemon=True)
        try:
            helper.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self._helper = helper
            return False
        self._helper, self._calls = helper, calls
        return True

    def close(self):
        if self._calls is not None:
            self._calls.put(None)  # the helper ends after the call it is in, if any
            if not self.gave_up:  # it is idle: gone before we return, so no thread of ours outlives a flush()
                self._helper.join(self.remaining() + 1.0)


def _serve(calls):
    while True:
        item = calls.get()
        if item is None:
            return
        function, args, kwargs, done, outcome = item
        try:
            outcome.append((False, function(*args, **kwargs)))
        except BaseException as error:  # handed back to the waiting thread, which raises it
            outcome.append((True, error))
        done.set()


@contextlib.contextmanager
def waiting_at_most(seconds):
    """Within this block, call() in this thread waits at most ``seconds`` in all."""
    global _window
    deadline, previous = Deadline(seconds), _window
    _window = deadline
    try:
        yield deadline
    finally:
        _window = previous
        deadline.close()


def active():
    """Whether this thread is inside waiting_at_most()."""
    window = _window
    return window is not None and window.thread == threading.get_ident()


def call(function, *args, **kwargs):
    """``function(*args, **kwargs)``; inside waiting_at_most(), made in the helper thread and
    waited for until the deadline (None when it was late; GaveUp when an earlier one was)."""
    window = _window
    if window is None or window.thread != threading.get_ident():
        return function(*args, **kwargs)
    return window.call(function, args, kwargs)


def remaining_millis():
    """What is left of this thread's deadline, in milliseconds (for an SDK timeout argument)."""
    window = _window
    return int(window.remaining() * 1000) if active() else 30000
