"""Every object mptrace wraps lives and dies as it does untraced: pools, executors, processes, queues, pipes.

A wrapper that holds what it wraps (a pool in multiprocessing's finaliser
registry, say) keeps worker processes, threads, pipes and semaphores alive
until exit, and takes away the ResourceWarning an unclosed pool gives.
"""

import contextlib
import gc
import os
import pickle
import subprocess
import sys
import threading
import warnings
import weakref
from concurrent.futures import ProcessPoolExecutor

import pytest

from mptrace import semconv
from tests import pool_targets
from tests.programs.lifetimes import children_left, collected, filled_by_child, filled_then_closed, sent_by_child
from tests.spans import named
from tests.subprocesses import ROOT


def open_file_descriptors():
    return len(os.listdir("/proc/self/fd"))


def warm_up(context):
    """Start what multiprocessing starts once per process (resource tracker, forkserver), so that a
    count of file descriptors taken after it sees only what the test makes."""
    pool = context.Pool(1)
    assert pool.apply(pool_targets.square, (2,)) == 4
    pool.close()
    pool.join()
    del pool
    gc.collect()  # what earlier tests left in reference cycles closes its descriptors now, not during the count


def pool_ends(traced):
    return [s.attributes.get(semconv.POOL_END) for s in named(traced.spans(), semconv.SPAN_POOL)]


# -- Pool ---------------------------------------------------------------------


def test_a_pool_that_ends_is_collected(traced, context):
    pool = context.Pool(2)
    assert pool.map(pool_targets.square, range(4)) == [0, 1, 4, 9]
    pool.close()
    pool.join()
    closed = weakref.ref(pool)
    with context.Pool(2) as pool:
        assert pool.apply(pool_targets.square, (3,)) == 9
    in_with = weakref.ref(pool)
    pool = context.Pool(2)
    pool.terminate()
    terminated = weakref.ref(pool)
    del pool
    assert collected(closed), "a pool closed and joined stays alive"
    assert collected(in_with), "a pool used in a with block stays alive"
    assert collected(terminated), "a terminated pool stays alive"
    assert pool_ends(traced) == ["join", "terminate", "terminate"]


def test_a_dropped_running_pool_warns_is_terminated_and_collected(traced, context):
    caught = []

    def record(message, category, *where):  # keeps no reference to the pool (the warning's source)
        caught.append((category, str(message)))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        pool = context.Pool(2)
        dropped = weakref.ref(pool)
        del pool
        assert collected(dropped), "a dropped running pool stays alive"
    assert [c for c, m in caught if "unclosed running multiprocessing pool" in m] == [ResourceWarning]
    assert children_left() == 0, "the workers of a dropped pool are never terminated"
    assert pool_ends(traced) == ["terminate"]


def test_closing_and_joining_pools_gives_back_every_file_descriptor(traced, context):
    warm_up(context)
    before = open_file_descriptors()
    for _ in range(5):
        pool = context.Pool(2)
        assert pool.map(pool_targets.square, range(4)) == [0, 1, 4, 9]
        pool.close()
        pool.join()
    del pool
    gc.collect()
    assert open_file_descriptors() == before
    assert pool_ends(traced) == ["join"] * 6


REFUSED = (
    (dict(processes=0), ValueError),
    (dict(processes=1, initializer=3), TypeError),
)
if sys.version_info >= (3, 10):  # 3.9 accepts it
    REFUSED += ((dict(processes=1, maxtasksperchild=0), ValueError),)


def test_a_pool_that_refuses_its_arguments_leaves_nothing_behind(traced, context):
    warm_up(context)
    before = open_file_descriptors()
    for _ in range(10):
        for arguments, error in REFUSED:
            with pytest.raises(error):
                context.Pool(**arguments)
    gc.collect()
    assert open_file_descriptors() == before
    assert pool_ends(traced) == ["join"], "only the warm-up pool is a pool"


def local_initializer():
    pass


def test_a_pool_whose_workers_cannot_start_ends_failed_and_leaves_nothing_behind(traced, context, start_method):
    if start_method == "fork":
        pytest.skip("fork does not pickle the initializer")
    try:
        pickle.dumps(lambda: None)
    except Exception as exc:
        expected = type(exc)
    warm_up(context)
    before = open_file_descriptors()
    for _ in range(5):
        with pytest.raises(expected):
            context.Pool(2, initializer=lambda: None)
    gc.collect()
    assert open_file_descriptors() == before
    failed = [s for s in named(traced.spans(), semconv.SPAN_POOL) if s.attributes[semconv.POOL_END] == "failed"]
    assert len(failed) == 5
    for span in failed:
        assert span.status.status_code.name == "ERROR"
        assert span.attributes[semconv.OTEL_ERROR_TYPE].endswith(expected.__name__)
        assert span.attributes[semconv.POOL_WORKERS_STARTED] == 0


# -- ProcessPoolExecutor ------------------------------------------------------


def test_an_executor_is_collected_after_shutdown_and_when_dropped(traced, context):
    executor = ProcessPoolExecutor(2, mp_context=context)
    assert executor.submit(pool_targets.square, 3).result() == 9
    executor.shutdown()
    shut_down = weakref.ref(executor)
    executor = ProcessPoolExecutor(2, mp_context=context)
    assert executor.submit(pool_targets.square, 3).result() == 9
    dropped = weakref.ref(executor)
    del executor
    assert collected(shut_down), "an executor shut down stays alive"
    assert collected(dropped), "a dropped executor stays alive"
    assert children_left() == 0, "the workers of a dropped executor are never stopped"


def test_an_executor_that_refuses_its_arguments_leaves_nothing_behind(traced, context):
    warm_up(context)
    before = open_file_descriptors()
    for _ in range(10):
        with pytest.raises(ValueError):
            ProcessPoolExecutor(0, mp_context=context)
        with pytest.raises(AttributeError):
            ProcessPoolExecutor(1, mp_context="not a context")
    gc.collect()
    assert open_file_descriptors() == before
    assert pool_ends(traced) == ["join"], "only the warm-up pool is a pool"


# -- Process, queues, connections ---------------------------------------------


def test_a_joined_process_is_collected(traced, context):
    process = context.Process(target=pool_targets.square, args=(2,))
    process.start()
    process.join()
    joined = weakref.ref(process)
    del process
    assert collected(joined)


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_a_queue_a_child_filled_is_collected(traced, context, kind):
    queue = getattr(context, kind)()
    filled_by_child(context)(queue)
    dropped = weakref.ref(queue)
    del queue
    assert collected(dropped)
    queue = context.Queue()
    filled_then_closed(context)(queue)
    closed = weakref.ref(queue)
    del queue
    assert collected(closed)


def test_a_pipe_connection_is_collected_and_closed(traced, context):
    warm_up(context)
    before = open_file_descriptors()
    reader = sent_by_child(context)()
    dropped = weakref.ref(reader)
    del reader
    assert collected(dropped)
    assert open_file_descriptors() == before


# -- the whole program, against itself untraced --------------------------------


def run_program(start_method, *args):
    return subprocess.run([sys.executable, "-m", "tests.programs.lifetimes", start_method, *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_what_is_collected_and_what_warns_is_what_it_is_untraced(start_method):
    plain = run_program(start_method)
    traced = run_program(start_method, "--traced")
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout
    assert traced.stderr == plain.stderr  # the resource tracker's leaked semaphores, say
    assert "NOT collected" not in plain.stdout, "the untraced baseline changed: %s" % plain.stdout


# -- freed by reference counting alone, as untraced ---------------------------
#
# Untraced, an executor, a pool and their queues and threads are freed the
# moment the program lets go of them, even when a task failed to pickle (its
# exception's traceback holds the feeder or task-handler thread's frames). An
# exception that passed through mptrace's frames must not close a reference
# cycle around them, which only the cycle collector would free.


@contextlib.contextmanager
def cycle_collector_off():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def still_alive(refs):
    return [name for name, ref in refs if ref() is not None]


def test_a_shut_down_executor_is_freed_without_the_cycle_collector(traced, context):
    with cycle_collector_off():
        executor = ProcessPoolExecutor(2, mp_context=context)
        futures = [executor.submit(pool_targets.square, threading.Lock()) for _ in range(3)]
        assert [type(future.exception()) for future in futures] == [TypeError] * 3
        refs = [("executor", weakref.ref(executor)), ("call queue", weakref.ref(executor._call_queue)),
                ("feeder thread", weakref.ref(executor._call_queue._thread)), ("future", weakref.ref(futures[0]))]
        executor.shutdown(wait=True)
        del executor, futures
        assert still_alive(refs) == []


def test_a_joined_pool_whose_task_failed_to_pickle_is_freed_without_the_cycle_collector(traced, context):
    with cycle_collector_off():
        pool = context.Pool(2)
        result = pool.apply_async(pool_targets.square, (threading.Lock(),))
        mapped = pool.map_async(pool_targets.square, [1, threading.Lock(), 2], chunksize=1)
        result.wait()
        mapped.wait()
        assert not result.successful() and not mapped.successful()
        pool.close()
        pool.join()
        refs = [("pool", weakref.ref(pool)), ("task handler", weakref.ref(pool._task_handler)),
                ("outqueue", weakref.ref(pool._outqueue)), ("result", weakref.ref(result))]
        del pool, result, mapped
        assert still_alive(refs) == []


def test_what_reference_counting_frees_is_what_it_frees_untraced(start_method):
    command = [sys.executable, "-m", "tests.programs.refcount_lifetimes", start_method]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    traced = subprocess.run(command + ["--traced"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout
    assert plain.stdout.count("alive after the drop: []\n") == 20, "the untraced baseline changed: %s" % plain.stdout
