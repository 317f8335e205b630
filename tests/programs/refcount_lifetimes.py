"""Uses and drops every kind of multiprocessing object with the cycle collector off; says what is still alive.

    python -m tests.programs.refcount_lifetimes METHOD [--traced]

Untraced, reference counting alone frees each of them (and the threads that
served them) as soon as the program lets go; traced, it must too. Each
scenario runs once with messages that pickle and once with one that does not:
an exception that passes through mptrace's frames must not make a reference
cycle that keeps a queue, its feeder thread or a pool's task handler alive.
Its output must be the same traced and untraced.
"""

import gc
import multiprocessing
import sys
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor

from tests import pool_targets


def unpicklable():
    return threading.Lock()


def refuse_to_load():
    raise ValueError("this result cannot be unpickled")


class LoadsBadly:
    """Pickles; unpickling it raises (in the process that receives it)."""

    def __reduce__(self):
        return refuse_to_load, ()


def result_that_loads_badly(_=None):
    return LoadsBadly()


def weakrefs(**objects):
    return [(name, weakref.ref(obj)) for name, obj in sorted(objects.items())]


def executor_refs(executor):
    return weakrefs(executor=executor, call_queue=executor._call_queue, feeder=executor._call_queue._thread)


def executor_submit(context, failing):
    executor = ProcessPoolExecutor(2, mp_context=context)
    futures = [executor.submit(pool_targets.square, unpicklable() if failing else 3) for _ in range(5)]
    outcomes = {type(future.exception()).__name__ for future in futures}
    refs = executor_refs(executor) + weakrefs(future=futures[0])
    executor.shutdown(wait=True)
    del executor, futures
    return outcomes, refs


def executor_map(context, failing):
    executor = ProcessPoolExecutor(2, mp_context=context)
    try:
        outcomes = {str(list(executor.map(pool_targets.square, [1, unpicklable(), 2] if failing else [1, 2])))}
    except Exception as exc:
        outcomes = {type(exc).__name__}
    refs = executor_refs(executor)
    executor.shutdown(wait=True)
    del executor
    return outcomes, refs


def executor_result(context, failing):
    executor = ProcessPoolExecutor(2, mp_context=context)
    future = executor.submit(result_that_loads_badly if failing else pool_targets.square, 3)
    outcomes = {type(future.exception()).__name__}
    refs = executor_refs(executor) + weakrefs(future=future)
    executor.shutdown(wait=True)
    del executor, future
    return outcomes, refs


def pool_refs(pool, result):
    return weakrefs(pool=pool, result=result, task_handler=pool._task_handler, result_handler=pool._result_handler,
                    worker_handler=pool._worker_handler, inqueue=pool._inqueue, outqueue=pool._outqueue)


def pool_run(context, submit):
    """One submission on a pool that is then closed, joined and dropped: what it left alive."""
    pool = context.Pool(2)
    result = submit(pool)
    result.wait()
    outcomes = {str(result.successful())}
    pool.close()
    pool.join()
    refs = pool_refs(pool, result)
    del pool, result
    return outcomes, refs


def pool_apply(context, failing):
    return pool_run(context, lambda pool: pool.apply_async(pool_targets.square, (unpicklable() if failing else 3,)))


def pool_map(context, failing):
    items = [1, unpicklable(), 2] if failing else [1, 2]
    return pool_run(context, lambda pool: pool.map_async(pool_targets.square, items, chunksize=1))


def pool_result(context, failing):
    """A result the worker cannot pickle: the worker sends the error instead."""
    return pool_run(context, lambda pool: pool.apply_async(unpicklable if failing else pool_targets.square,
                                                           () if failing else (3,)))


def queue(kind):
    def scenario(context, failing):
        queue = getattr(context, kind)()
        if failing:
            queue.put(unpicklable())  # the feeder thread prints the error, and goes on
        queue.put(3)
        outcomes = {str(queue.get())}
        refs = weakrefs(queue=queue, feeder=queue._thread)
        queue.close()
        queue.join_thread()
        del queue
        return outcomes, refs

    return scenario


def simple_queue(context, failing):
    queue = context.SimpleQueue()
    try:
        queue.put(unpicklable() if failing else 3)
        outcomes = {str(queue.get())}
    except Exception as exc:
        outcomes = {type(exc).__name__}
    refs = weakrefs(queue=queue)
    del queue
    return outcomes, refs


def pipe(context, failing):
    sender, receiver = context.Pipe()
    try:
        sender.send(unpicklable() if failing else 3)
        outcomes = {str(receiver.recv())}
    except Exception as exc:
        outcomes = {type(exc).__name__}
    refs = weakrefs(sender=sender, receiver=receiver)
    del sender, receiver
    return outcomes, refs


SCENARIOS = (
    ("ProcessPoolExecutor.submit", executor_submit),
    ("ProcessPoolExecutor.map", executor_map),
    ("ProcessPoolExecutor result", executor_result),
    ("Pool.apply_async", pool_apply),
    ("Pool.map_async", pool_map),
    ("Pool result", pool_result),
    ("Queue", queue("Queue")),
    ("JoinableQueue", queue("JoinableQueue")),
    ("SimpleQueue", simple_queue),
    ("Pipe", pipe),
)


def main():
    method = sys.argv[1]
    if "--traced" in sys.argv:
        import mptrace
        from tests.programs import in_memory_pipeline

        mptrace.install(tracer_provider=in_memory_pipeline()[0])
    context = multiprocessing.get_context(method)
    gc.disable()
    for name, scenario in SCENARIOS:
        for failing in (False, True):
            outcomes, refs = scenario(context, failing)
            alive = [label for label, ref in refs if ref() is not None]
            print("%s, %s: %s; alive after the drop: %s" % (
                name, "a message fails" if failing else "every message passes", sorted(outcomes), alive),
                flush=True)
            gc.collect()  # the next scenario starts clean


if __name__ == "__main__":
    main()
