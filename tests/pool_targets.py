"""Task functions, initializers and classes for the Pool and executor tests.

They live at module level in an importable module (``tests.pool_targets``):
spawn and forkserver workers import them by their qualified name.
"""

import os
import signal
import time

from opentelemetry import trace

tracer = trace.get_tracer("tests.pool_targets")


def square(x):
    return x * x


def add(x, y):
    return x + y


def square_in_span(x):
    """Squares ``x`` inside a user span made with the plain OpenTelemetry API."""
    with tracer.start_as_current_span("task-work") as span:
        span.set_attribute("item", x)
        span.set_attribute("pid", os.getpid())
        return x * x


def fail(x):
    raise ValueError("task failed on %r" % (x,))


def fail_on_odd(x):
    if x % 2:
        raise KeyError("odd %d" % x)
    return x


def worker_pid(_=None):
    return os.getpid()


def slow_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def os_exit(code):
    os._exit(code)


def kill_self(_=None):
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)  # the signal is on its way


def initialize(tag):
    """A pool initializer that makes a user span."""
    with tracer.start_as_current_span("init-work") as span:
        span.set_attribute("tag", tag)
        span.set_attribute("pid", os.getpid())


class Tricky:
    """A task argument whose class has a custom pickling hook (__getstate__)."""

    def __init__(self, value):
        self.value = value

    def __getstate__(self):
        return {"value": self.value}

    def __setstate__(self, state):
        self.value = state["value"]


def unwrap(tricky):
    return tricky.value * 2


class Reduced:
    """A task result whose class has a custom pickling hook (__reduce__)."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return (Reduced, (self.value,))

    def __eq__(self, other):
        return type(other) is Reduced and other.value == self.value

    def __hash__(self):
        return hash(self.value)


def make_reduced(x):
    return Reduced(x)


def add_in_span(x, y):
    """``x + y`` inside a user span (for starmap)."""
    with tracer.start_as_current_span("task-work") as span:
        span.set_attribute("item", x)
        span.set_attribute("pid", os.getpid())
        return x + y


def map_in_a_pool(method):
    """Run in a child: a Pool of its own (start method ``method``) maps square_in_span."""
    import multiprocessing

    with multiprocessing.get_context(method).Pool(1) as pool:
        assert pool.map(square_in_span, range(4), chunksize=2) == [0, 1, 4, 9]
        pool.close()
        pool.join()


def map_in_an_executor(method):
    """Run in a child: a ProcessPoolExecutor of its own (start method ``method``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as executor:
        assert list(executor.map(square_in_span, range(4), chunksize=2)) == [0, 1, 4, 9]


class HoldsLock:
    """A task argument that cannot be pickled: a threading lock sits in its ``lock`` attribute."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()
