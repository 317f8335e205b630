"""Drops every kind of multiprocessing object and says which were collected and what warned.

    python -m tests.programs.lifetimes METHOD [--traced]

Its output (and the resource tracker's at exit, on stderr) must be the same
traced and untraced, whatever the Python version does.
"""

import gc
import multiprocessing
import sys
import time
import warnings
import weakref
from concurrent.futures import ProcessPoolExecutor

from tests import pool_targets


def collected(ref, tries=200):
    """Whether the object behind ``ref`` is collected, now or once the threads that briefly hold it let go
    (an executor's manager thread does, between two messages)."""
    for _ in range(tries):
        gc.collect()
        if ref() is None:
            return True
        time.sleep(0.01)
    return False


def children_left(tries=500):
    """How many children are still running once those an ending pool or executor stops have exited
    (a dropped executor's manager thread stops its workers after the executor is collected)."""
    for _ in range(tries):
        if not multiprocessing.active_children():
            return 0
        time.sleep(0.02)
    return len(multiprocessing.active_children())


def dropped(make, use):
    """(collected?, the warnings it gave) for an object made, used, then dropped."""
    caught = []

    def record(message, category, *where):  # keeps no reference to the warning's source (the object)
        caught.append("%s: %s" % (category.__name__, str(message)[:60]))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        obj = make()
        use(obj)
        ref = weakref.ref(obj)
        del obj
        gone = collected(ref)
    return gone, sorted(caught)


def put_from_child(queue):
    queue.put("from the child")


def send_from_child(connection):
    connection.send("from the child")


def closed_and_joined(pool):
    assert pool.map(pool_targets.square, range(4)) == [0, 1, 4, 9]
    pool.close()
    pool.join()


def terminated(pool):
    assert pool.apply(pool_targets.square, (3,)) == 9
    pool.terminate()


def used_in_with(pool):
    with pool:
        assert pool.apply(pool_targets.square, (3,)) == 9


def shut_down(executor):
    assert executor.submit(pool_targets.square, 3).result() == 9
    executor.shutdown()


def submitted(executor):
    assert executor.submit(pool_targets.square, 3).result() == 9


def started_and_joined(process):
    process.start()
    process.join()


def filled_by_child(context):
    def use(queue):
        child = context.Process(target=put_from_child, args=(queue,))
        child.start()
        assert queue.get() == "from the child"
        child.join()

    return use


def filled_then_closed(context):
    def use(queue):
        filled_by_child(context)(queue)
        queue.close()
        queue.join_thread()

    return use


def sent_by_child(context):
    def make():
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=send_from_child, args=(writer,))
        child.start()
        writer.close()
        assert reader.recv() == "from the child"
        child.join()
        return reader

    return make


def scenarios(context):
    """(name, make, use): each object made the way a program makes it."""
    return (
        ("Pool closed and joined", context.Pool, closed_and_joined),
        ("Pool dropped while running", context.Pool, lambda pool: None),
        ("Pool terminated", context.Pool, terminated),
        ("Pool used in a with block", context.Pool, used_in_with),
        ("ProcessPoolExecutor shut down", lambda: ProcessPoolExecutor(2, mp_context=context), shut_down),
        ("ProcessPoolExecutor dropped", lambda: ProcessPoolExecutor(2, mp_context=context), submitted),
        ("Process joined", lambda: context.Process(target=pool_targets.square, args=(2,)), started_and_joined),
        ("Queue", context.Queue, filled_by_child(context)),
        ("Queue closed", context.Queue, filled_then_closed(context)),
        ("JoinableQueue", context.JoinableQueue, filled_by_child(context)),
        ("SimpleQueue", context.SimpleQueue, filled_by_child(context)),
        ("Pipe connection", sent_by_child(context), lambda connection: None),
    )


def main():
    method = sys.argv[1]
    if "--traced" in sys.argv:
        import mptrace
        from tests.programs import in_memory_pipeline

        mptrace.install(tracer_provider=in_memory_pipeline()[0])
    context = multiprocessing.get_context(method)
    for name, make, use in scenarios(context):
        gone, caught = dropped(make, use)
        print("%s: %s; warnings %s; children left %d" % (
            name, "collected" if gone else "NOT collected", caught, children_left()),
            flush=True)


if __name__ == "__main__":
    main()
