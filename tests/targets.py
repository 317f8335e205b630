"""Process targets for the tests.

They live in an importable module (``tests.targets``) because spawn and
forkserver children import a target by its qualified name.
"""

import multiprocessing
import os
import sys
import time

from opentelemetry import trace

tracer = trace.get_tracer("tests.targets")


def user_span(name="user-work"):
    with tracer.start_as_current_span(name) as span:
        span.set_attribute("pid", os.getpid())


def succeed():
    user_span()


def raise_error():
    user_span()
    raise ValueError("boom in child")


def exit_with(code):
    user_span()
    sys.exit(code)


def os_exit_with(code):
    with tracer.start_as_current_span("outer-never-ended"):
        user_span()
        os._exit(code)


def signal_ready_then_sleep(ready):
    user_span()
    ready.set()
    time.sleep(60)


def start_grandchild(method):
    with tracer.start_as_current_span("child-work"):
        process = multiprocessing.get_context(method).Process(target=user_span, args=("grandchild-work",))
        process.start()
        process.join()
    if process.exitcode != 0:
        sys.exit(10 + process.exitcode)


def write_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")


def accept(*args, **kwargs):
    """A target that only receives its arguments."""


class Dropping:
    """__getstate__ drops state: only pickling (spawn, forkserver) runs it."""

    def __init__(self):
        self.a, self.b, self.c = 1, 2, 3

    def __getstate__(self):
        state = self.__dict__.copy()
        state["c"] = 0
        return state


class Reducing:
    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return Reducing, (self.value,)


class ReducingEx:
    def __init__(self, value):
        self.value = value

    def __reduce_ex__(self, protocol):
        return ReducingEx, (self.value * 2,)  # arrives changed


class Restoring:
    def __init__(self):
        self.ready = True

    def __setstate__(self, state):
        state["ready"] = False  # the child's copy is not ready
        self.__dict__.update(state)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


def reduce_point(point):
    return Point, (point.x, point.y)


import copyreg  # noqa: E402

copyreg.pickle(Point, reduce_point)


class Hostile:
    """Every dunder a naive fingerprint might call raises."""

    def __init__(self):
        self.value = 5

    def __repr__(self):
        raise RuntimeError("__repr__ must not be called")

    def __eq__(self, other):
        raise RuntimeError("__eq__ must not be called")

    __hash__ = object.__hash__


class Holder:
    def __init__(self, resource):
        self.name = "holder"
        self.resource = resource


class WithNewArgs:
    """Rebuilt through __new__ with the arguments __getnewargs_ex__ gives."""

    def __new__(cls, size=0):
        instance = super().__new__(cls)
        instance.size = size
        return instance

    def __getnewargs_ex__(self):
        return (), {"size": self.size}


class Original:
    def __init__(self):
        self.kind = "original"


class Replacement:
    def __init__(self):
        self.kind = "replacement"


class BecomesAnother(Original):
    """__reduce__ rebuilds it as a different class: the child gets a Replacement."""

    def __reduce__(self):
        return Replacement, ()


# -- channels: queues, pipes, simple queues ----------------------------------


def echo(inbox, outbox):
    """Send back every message until None."""
    for message in iter(inbox.get, None):
        outbox.put(message)


def echo_in_span(inbox, outbox):
    """echo, inside a span of the child's own (OpenTelemetry imported here)."""
    with trace.get_tracer("tests").start_as_current_span("child-work"):
        echo(inbox, outbox)
        outbox.close()
        outbox.join_thread()  # pickled inside the span


def send_over(connection, messages):
    for message in messages:
        connection.send(message)
    connection.close()


class NeedsTwo(Exception):
    """An exception that pickles but cannot be rebuilt: unpickling calls NeedsTwo(a)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def put_unrebuildable(queue):
    queue.put(NeedsTwo("a", "b"))
    queue.close()
    queue.join_thread()


def queue_made_here(size):
    """Put ``size`` bytes on a queue made in this process (which imports multiprocessing.queues now) and get
    them back."""
    import multiprocessing

    queue = multiprocessing.Queue()
    queue.put(b"x" * size)
    assert len(queue.get(timeout=30)) == size
    queue.close()
    queue.join_thread()


def queue_made_in_a_span(size):
    """queue_made_here, inside a span of this child's own. The span says whether mptrace's channel counting
    was loaded before (in a spawn child it is not: OpenTelemetry is wired at run() before it is loaded)."""
    with trace.get_tracer("tests").start_as_current_span("child-work") as span:
        span.set_attribute("test.channels_loaded_before", "mptrace._channels" in sys.modules)
        queue_made_here(size)


def report_resolved_directories(outbox):
    """The directories this child resolved to tell the application's modules from libraries', and the
    modules whose answer its parent sent."""
    from mptrace import _modstate

    outbox.put((list(_modstate._real_directories), list(_modstate._parent_library_files)))
    outbox.close()
    outbox.join_thread()


def mptrace_modules():
    """Where each of mptrace's modules this process holds came from ({name: (loader's class, __file__)}), and
    which finders still serve the parent's bundle (see mptrace/_bundle.py)."""
    found = {name: (type(module.__spec__.loader).__name__, module.__file__)
             for name, module in list(sys.modules.items()) if name == "mptrace" or name.startswith("mptrace.")}
    return found, [type(finder).__name__ for finder in sys.meta_path if getattr(finder, "serves_mptrace_bundle", False)]


def report_mptrace_modules(outbox, *ignored):
    outbox.put(mptrace_modules())


_modules_at_start = []


def note_mptrace_modules():
    """A pool initializer: what the worker held before its first task."""
    _modules_at_start.append(mptrace_modules())


def noted_mptrace_modules(ignored):
    return _modules_at_start[0]


def start_spawn_grandchild_reporting_modules(outbox):
    """Start a spawn child that reports where its mptrace modules came from (see mptrace_modules)."""
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=report_mptrace_modules, args=(outbox,))
    child.start()
    child.join()
    if child.exitcode:
        sys.exit(child.exitcode)


def signal_ready_then_sleep_with(ready, anything):
    """``signal_ready_then_sleep``, with an argument to compare."""
    ready.set()
    time.sleep(60)
