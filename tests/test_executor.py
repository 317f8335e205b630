"""concurrent.futures.ProcessPoolExecutor traced from the caller to the worker, under every start method."""

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from tests import pool_targets as targets
from tests.conftest import traced_with
from tests.spans import assert_no_orphans, assert_one_trace, describe, is_error, named, one, parent_of, pid_of
from tests.test_pools import (assert_each_fails_as_untraced, assert_mapped_in_two_chunks,
                              assert_unsent_tasks_are_named_under_their_pool, children_of, spans_of_a_child_running,
                              workers_of)

POOL_TYPE = "concurrent.futures.ProcessPoolExecutor"


def test_submit_and_map_are_traced_from_the_caller_into_the_worker(traced, context, start_method):
    with traced.tracer.start_as_current_span("work"):
        with ProcessPoolExecutor(2, mp_context=context) as executor:
            with traced.tracer.start_as_current_span("call submit"):
                assert executor.submit(targets.square_in_span, 3).result(30) == 9
            with traced.tracer.start_as_current_span("call map"):
                assert list(executor.map(targets.square_in_span, range(4), chunksize=2)) == [0, 1, 4, 9]
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)

    pool_span = one(spans, "mp.pool")
    assert parent_of(spans, pool_span).name == "work"
    assert pool_span.attributes["mp.pool.type"] == POOL_TYPE
    assert pool_span.attributes["mp.pool.processes"] == 2
    assert pool_span.attributes["mp.pool.end"] == "shutdown"
    assert pool_span.attributes["mp.pool.tasks"] == 3  # one call, then a map of two chunks
    workers = workers_of(spans, pool_span)
    assert 1 <= len(workers) <= 2 and pool_span.attributes["mp.pool.workers_started"] == len(workers)
    assert all(w.attributes["mp.start_method"] == start_method for w in workers)
    assert all(w.attributes["mp.args.changed"] == () for w in workers)  # the call queue is a handle

    for api, caller, chunks, items in (("ProcessPoolExecutor.submit", "call submit", 1, [3]),
                                       ("ProcessPoolExecutor.map", "call map", 2, [0, 1, 2, 3])):
        task = one(spans, "mp.task", **{"mp.task.api": api})
        assert parent_of(spans, task).name == caller
        assert task.attributes["code.function.name"] == "tests.pool_targets.square_in_span"
        assert task.attributes["mp.task.chunks"] == chunks
        assert task.attributes["mp.pickle.task.count"] == chunks
        assert task.attributes["mp.unpickle.result.count"] == chunks
        assert not is_error(task)
        runs = children_of(spans, task, "mp.task.run")
        assert len(runs) == chunks, describe(spans)
        assert {pid_of(r) for r in runs} <= {pid_of(w) for w in workers}
        user_spans = [s for run in runs for s in children_of(spans, run, "task-work")]
        assert sorted(s.attributes["item"] for s in user_spans) == items


def test_a_raising_task_is_an_error_on_both_sides(traced, context):
    with ProcessPoolExecutor(1, mp_context=context) as executor:
        future = executor.submit(targets.fail, 5)
        with pytest.raises(ValueError, match="task failed on 5"):
            future.result(30)
        assert executor.submit(targets.square, 4).result(30) == 16
    spans = traced.spans()
    assert_no_orphans(spans)
    task = one(spans, "mp.task", **{"code.function.name": "tests.pool_targets.fail"})
    assert is_error(task) and task.attributes["error.type"] == "ValueError"
    run = one(children_of(spans, task, "mp.task.run"), "mp.task.run")
    assert is_error(run) and run.attributes["error.type"] == "ValueError"
    assert [e.name for e in run.events] == ["exception"]
    assert not is_error(one(spans, "mp.pool"))


@pytest.mark.parametrize("target", [targets.os_exit, targets.kill_self], ids=["os._exit", "SIGKILL"])
def test_a_dying_worker_breaks_the_pool_and_leaves_closed_error_spans(traced, context, target):
    with traced.tracer.start_as_current_span("work"):
        executor = ProcessPoolExecutor(1, mp_context=context)
        assert executor.submit(targets.square, 2).result(30) == 4
        future = executor.submit(target, 3)
        with pytest.raises(BrokenProcessPool):
            future.result(30)
        executor.shutdown(wait=True)
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    task = one(spans, "mp.task", **{"code.function.name": target.__module__ + "." + target.__name__})
    assert is_error(task)
    assert task.attributes["error.type"] == "concurrent.futures.process.BrokenProcessPool"
    run = one(children_of(spans, task, "mp.task.run"), "mp.task.run")
    assert is_error(run) and run.attributes["mp.span.synthesized"] is True
    pool_span = one(spans, "mp.pool")
    assert pool_span.attributes["mp.pool.end"] == "broken"
    assert not named(spans, "mp.task") or all(s.end_time for s in spans)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child arrived in Python 3.11")
def test_workers_replaced_after_max_tasks_per_child_stay_in_the_trace(traced, context, start_method):
    if start_method == "fork":
        pytest.skip("max_tasks_per_child refuses the fork start method")
    with traced.tracer.start_as_current_span("work"):
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as executor:
            pids = [executor.submit(targets.worker_pid).result(30) for _ in range(3)]
    assert len(set(pids)) == 3
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    pool_span = one(spans, "mp.pool")
    assert pool_span.attributes["mp.pool.max_tasks_per_child"] == 1
    workers = workers_of(spans, pool_span)
    assert {pid_of(w) for w in workers} >= set(pids)
    assert pool_span.attributes["mp.pool.workers_replaced"] >= 2
    assert sorted(pid_of(r) for r in named(spans, "mp.task.run")) == sorted(pids)


def test_shutdown_with_cancel_futures_ends_every_task(traced, context):
    with traced.tracer.start_as_current_span("work"):
        executor = ProcessPoolExecutor(1, mp_context=context)
        assert executor.submit(targets.square_in_span, 2).result(30) == 4
        workers = list(executor._processes.values())
        futures = [executor.submit(targets.slow_pid, 0.3) for _ in range(6)]
        time.sleep(0.1)
        manager = executor._executor_manager_thread
        executor.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.join(30)
        manager.join(30)  # it ends mp.pool; interpreter exit would wait for it too
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    cancelled = [f for f in futures if f.cancelled()]
    assert cancelled, "shutdown(cancel_futures=True) cancelled nothing"
    tasks = named(spans, "mp.task")
    assert len(tasks) == 7, describe(tasks)
    assert len([t for t in tasks if t.attributes.get("mp.task.cancelled")]) == len(cancelled)
    assert len(named(spans, "task-work")) == 1  # the finished task's user span arrived
    assert one(spans, "mp.pool").attributes["mp.pool.end"] == "shutdown"


def test_an_executor_in_a_child_joins_the_trace(traced, context, start_method):
    child, spans = spans_of_a_child_running(targets.map_in_an_executor, traced, context, start_method)
    pool_span = one(spans, "mp.pool")
    assert pid_of(pool_span) == child.pid
    assert parent_of(spans, pool_span).name == "mp.process.run"
    assert_mapped_in_two_chunks(spans, "ProcessPoolExecutor.map")


def test_every_executor_thread_works_in_the_pools_trace(context):
    """With every message notable, the executor's own threads' messages get spans: in the pool's trace."""
    for traced in traced_with(pickle_span_seconds=0):
        with traced.tracer.start_as_current_span("work"):
            with ProcessPoolExecutor(2, mp_context=context) as executor:
                assert list(executor.map(targets.square, range(6))) == [0, 1, 4, 9, 16, 25]
                assert executor.submit(targets.square, 7).result(30) == 49
        spans = traced.spans()
        assert_one_trace(spans)
        assert_no_orphans(spans)


@pytest.mark.parametrize("items, traced_chunks", [(lambda: list(range(8)), 8), (lambda: list(range(9)), 2),
                                                   (lambda: iter(range(8)), 2)],
                         ids=["8 chunks: in full", "9 chunks", "unknown length"])
def test_a_map_traces_its_chunks_in_full_only_when_short_and_sized(traced, context, items, traced_chunks):
    """ProcessPoolExecutor(2).map: in full up to 4 chunks per worker, if known before the first is sent."""
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        assert len(list(executor.map(targets.square_in_span, items()))) in (8, 9)
    spans = traced.spans()
    assert_no_orphans(spans)
    task = one(spans, "mp.task", **{"mp.task.api": "ProcessPoolExecutor.map"})
    assert task.attributes["mp.task.chunks_traced"] == traced_chunks
    assert len(named(spans, "mp.task.run")) == traced_chunks



def test_a_call_that_cannot_be_pickled_is_named_under_its_executor(traced, context):
    """submit and map get the path and hint a Process argument gets; the future raises the error unchanged."""
    unpicklable = lambda x: x  # noqa: E731
    holder = targets.HoldsLock()
    with open(os.devnull, "rb") as file, traced.tracer.start_as_current_span("work"):
        with ProcessPoolExecutor(2, mp_context=context) as executor:
            calls = [  # (how it fails, what fails to pickle)
                (lambda: executor.submit(unpicklable, 1).result(30), unpicklable),
                (lambda: executor.submit(targets.square, holder).result(30), holder),
                (lambda: executor.submit(targets.square, x=file).result(30), file),
                (lambda: list(executor.map(targets.square, [0, 1, 2, holder.lock], chunksize=2)), holder.lock),
                (lambda: list(executor.map(targets.add, [1, 2], [3, holder.lock])), holder.lock),
            ]
            assert_each_fails_as_untraced(calls)
            assert executor.submit(targets.square, 3).result(30) == 9  # the executor goes on working
    assert_unsent_tasks_are_named_under_their_pool(traced.spans(), "ProcessPoolExecutor", [
        ("fn", "ProcessPoolExecutor.submit", "lambda", 1),
        ("args[0].lock", "ProcessPoolExecutor.submit", "lock", 1),
        ("kwargs['x']", "ProcessPoolExecutor.submit", "file", 1),
        ("iterable[3]", "ProcessPoolExecutor.map", "lock", 1),  # chunk 1 of size 2, its second item
        ("iterables[1][1]", "ProcessPoolExecutor.map", "lock", 1),
    ])


def test_the_workers_a_broken_executor_terminates_say_so_and_are_not_failures(traced):
    """A worker dies; the executor breaks and terminates the other, busy one: that one's mp.process says its
    executor stopped it, as a pool's terminate() does, and the failure is on the executor and its tasks.
    Under fork only, where both workers run from the first submit (a spawn executor starts its second worker
    on the second submit, and may finish the busy task before it sees the first die)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    busy = executor.submit(targets.slow_pid, 20)
    time.sleep(0.5)  # the slow task has begun in one worker
    with pytest.raises(BrokenProcessPool):
        executor.submit(targets.os_exit, 3).result(30)
    with pytest.raises(BrokenProcessPool):
        busy.result(30)
    executor.shutdown(wait=True)
    spans = traced.spans()
    stopped = [s for s in named(spans, "mp.process") if s.attributes.get("mp.exit.signal") == "SIGTERM"]
    assert len(stopped) == 1, [dict(s.attributes) for s in named(spans, "mp.process")]
    assert stopped[0].attributes["mp.process.end_reason"] == "terminated by its executor"
    assert not is_error(stopped[0])
    assert one(spans, "mp.pool").attributes["mp.pool.end"] == "broken"
