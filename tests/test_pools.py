"""multiprocessing.Pool traced from the caller to the worker, under every start method."""

import json
import os
import subprocess
import sys
import time
from multiprocessing.pool import ThreadPool

import pytest

import mptrace
from mptrace import _tree
from mptrace._state import state
from tests import pool_targets as targets
from tests.conftest import traced_with
from tests.subprocesses import ROOT
from tests.test_tree import depth, line_with
from tests.spans import (assert_no_orphans, assert_one_trace, describe, is_error, named, one, parent_of,
                         pid_of)

# Each API: how to call it on a pool, the result it must return, and how many task messages it sends.
POOL_CALLS = {
    "Pool.apply": (lambda pool: pool.apply(targets.square_in_span, (3,)), 9, 1),
    "Pool.apply_async": (lambda pool: pool.apply_async(targets.square_in_span, (3,)).get(30), 9, 1),
    "Pool.map": (lambda pool: pool.map(targets.square_in_span, range(4), chunksize=2), [0, 1, 4, 9], 2),
    "Pool.map_async": (lambda pool: pool.map_async(targets.square_in_span, range(4), chunksize=2).get(30),
                       [0, 1, 4, 9], 2),
    "Pool.imap": (lambda pool: list(pool.imap(targets.square_in_span, range(4), chunksize=2)), [0, 1, 4, 9], 2),
    "Pool.imap_unordered": (lambda pool: sorted(pool.imap_unordered(targets.square_in_span, range(4), 2)),
                            [0, 1, 4, 9], 2),
    "Pool.starmap": (lambda pool: pool.starmap(targets.add_in_span, [(1, 2), (3, 4)]), [3, 7], 2),
    "Pool.starmap_async": (lambda pool: pool.starmap_async(targets.add_in_span, [(1, 2), (3, 4)], 1).get(30),
                           [3, 7], 2),
}


def children_of(spans, span, name=None):
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id
            and (name is None or s.name == name)]


def workers_of(spans, pool_span):
    """The mp.process.run spans of a pool's workers."""
    runs = []
    for process in children_of(spans, pool_span, "mp.process"):
        runs += children_of(spans, process, "mp.process.run")
    return runs


def test_every_pool_api_is_traced_from_the_caller_into_the_worker(traced, context, start_method):
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(2) as pool:
            for api, (call, expected, _) in POOL_CALLS.items():
                with traced.tracer.start_as_current_span("call " + api):
                    assert call(pool) == expected, api
            pool.close()
            pool.join()
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)

    work = one(spans, "work")
    pool_span = one(spans, "mp.pool")
    assert parent_of(spans, pool_span) is work
    assert pool_span.attributes["mp.pool.type"] == "multiprocessing.pool.Pool"
    assert pool_span.attributes["mp.pool.processes"] == 2
    assert pool_span.attributes["mp.pool.end"] == "join"
    assert pool_span.attributes["mp.pool.workers_started"] == 2
    sent = sum(chunks for _, _, chunks in POOL_CALLS.values())
    assert pool_span.attributes["mp.pool.tasks"] == sent
    assert pool_span.attributes["mp.pool.tasks_traced"] == sent
    assert pool_span.attributes["mp.pickle.task.count"] == sent
    assert pool_span.attributes["mp.unpickle.result.count"] == sent
    workers = workers_of(spans, pool_span)
    assert len(workers) == 2, describe(spans)
    assert all(w.attributes["mp.start_method"] == start_method for w in workers)
    worker_pids = {pid_of(w) for w in workers}

    for api, (_, _, chunks) in POOL_CALLS.items():
        task = one(spans, "mp.task", **{"mp.task.api": api})
        assert parent_of(spans, task).name == "call " + api
        assert task.attributes["mp.task.chunks"] == chunks, api
        assert task.attributes["mp.task.chunks_traced"] == chunks, api
        assert task.attributes["mp.pickle.task.count"] == chunks, api
        assert task.attributes["mp.pickle.task.bytes"] > 0, api
        assert task.attributes["mp.unpickle.result.count"] == chunks, api
        assert not is_error(task), api
        runs = children_of(spans, task, "mp.task.run")
        assert len(runs) == chunks, "%s: %s" % (api, describe(runs))
        assert {pid_of(r) for r in runs} <= worker_pids, api
        user_spans = [s for run in runs for s in children_of(spans, run, "task-work")]
        items = sorted(s.attributes["item"] for s in user_spans)
        assert items == ([3] if "apply" in api else [1, 3] if "starmap" in api else [0, 1, 2, 3]), api
        for run in runs:
            assert run.attributes["mp.pickle.result.count"] == 1, api
            assert run.attributes["mp.unpickle.task.count"] == 1, api
            assert not is_error(run), api


def test_the_initializer_runs_in_a_span_of_its_own(traced, context):
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(1, initializer=targets.initialize, initargs=("ready",)) as pool:
            assert pool.apply(targets.worker_pid) > 0
    spans = traced.spans()
    assert_no_orphans(spans)
    initializer = one(spans, "mp.pool.initializer")
    assert initializer.attributes["code.function.name"] == "tests.pool_targets.initialize"
    assert parent_of(spans, initializer).name == "mp.process.run"
    user = one(spans, "init-work")
    assert parent_of(spans, user) is initializer
    assert user.attributes["tag"] == "ready"


def test_a_raising_task_is_an_error_on_both_sides(traced, context):
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(2) as pool:  # a map's chunks get spans one per worker: both of this one's
            with pytest.raises(ValueError, match="task failed on 7"):
                pool.apply_async(targets.fail, (7,)).get(30)
            with pytest.raises(KeyError, match="odd 3"):
                pool.map(targets.fail_on_odd, [0, 2, 3, 4], chunksize=2)  # the second chunk fails
            assert pool.apply(targets.square, (2,)) == 4  # the worker goes on
    spans = traced.spans()
    assert_no_orphans(spans)
    for api, error_type in (("Pool.apply_async", "ValueError"), ("Pool.map", "KeyError")):
        task = one(spans, "mp.task", **{"mp.task.api": api})
        assert is_error(task), api
        assert task.attributes["error.type"] == error_type
        assert [e.attributes["exception.type"] for e in task.events if e.name == "exception"] == [error_type]
        failed_runs = [r for r in children_of(spans, task, "mp.task.run") if is_error(r)]
        assert len(failed_runs) == 1, describe(children_of(spans, task))
        run = failed_runs[0]
        assert run.attributes["error.type"] == error_type
        event = [e for e in run.events if e.name == "exception"]
        assert event and "Traceback" in event[0].attributes["exception.stacktrace"], api
    assert not is_error(one(spans, "mp.task", **{"mp.task.api": "Pool.apply"}))
    assert not is_error(one(spans, "mp.pool"))


def test_the_callers_exception_is_unchanged(traced, context):
    with context.Pool(1) as pool:
        with pytest.raises(ValueError) as raised:
            pool.apply(targets.fail, (1,))
    assert type(raised.value) is ValueError and raised.value.args == ("task failed on 1",)


def test_workers_recycled_by_maxtasksperchild_stay_in_the_trace(traced, context):
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(1, maxtasksperchild=1) as pool:
            pids = [pool.apply(targets.worker_pid) for _ in range(3)]
            pool.close()
            pool.join()
    assert len(set(pids)) == 3  # a new worker per task
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    pool_span = one(spans, "mp.pool")
    assert pool_span.attributes["mp.pool.max_tasks_per_child"] == 1
    workers = workers_of(spans, pool_span)
    assert {pid_of(w) for w in workers} >= set(pids)
    assert pool_span.attributes["mp.pool.workers_started"] == len(workers)
    assert pool_span.attributes["mp.pool.workers_replaced"] == len(workers) - 1 >= 2
    runs = named(spans, "mp.task.run")
    assert sorted(pid_of(r) for r in runs) == sorted(pids)
    assert not any(is_error(w) for w in workers)


def wait_for_a_new_worker(pool, old_pids, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {p.pid for p in pool._pool}
        if pids and not pids & old_pids:
            return
        time.sleep(0.02)
    raise AssertionError("the pool did not replace its worker")


@pytest.mark.parametrize("target, arg, error", [(targets.os_exit, 3, "3"), (targets.kill_self, None, "SIGKILL")],
                         ids=["os._exit", "SIGKILL"])
def test_a_worker_dying_mid_task_leaves_closed_error_spans(traced, context, target, arg, error):
    with traced.tracer.start_as_current_span("work"):
        pool = context.Pool(1)
        old_pids = {p.pid for p in pool._pool}
        lost = pool.apply_async(target, (arg,))
        wait_for_a_new_worker(pool, old_pids)  # the pool noticed the death and started another
        assert not lost.ready()  # a Pool never delivers that result
        assert pool.apply(targets.square, (3,)) == 9
        pool.terminate()
        pool.join()
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    task = one(spans, "mp.task", **{"mp.task.api": "Pool.apply_async"})
    assert is_error(task)
    assert task.attributes["mp.task.end_reason"]
    run = one(children_of(spans, task, "mp.task.run"), "mp.task.run")
    assert is_error(run)
    assert run.attributes["mp.span.synthesized"] is True
    assert run.attributes["error.type"] == error
    died = [w for w in workers_of(spans, one(spans, "mp.pool")) if pid_of(w) == pid_of(run)]
    assert len(died) == 1 and is_error(died[0])
    assert one(spans, "mp.pool").attributes["mp.pool.workers_replaced"] >= 1
    assert not is_error(one(spans, "mp.task", **{"mp.task.api": "Pool.apply"}))


@pytest.mark.parametrize("how", ["terminate", "with-block", "close-join"])
def test_ending_a_pool_loses_no_span_already_ended(traced, context, how):
    with traced.tracer.start_as_current_span("work"):
        pool = context.Pool(2)
        assert pool.map(targets.square_in_span, range(8), chunksize=1) == [x * x for x in range(8)]
        if how == "terminate":
            pool.terminate()
        elif how == "with-block":
            with pool:
                pass
        else:
            pool.close()
        pool.join()
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    assert len(named(spans, "mp.task.run")) == 8
    assert len(named(spans, "task-work")) == 8
    pool_span = one(spans, "mp.pool")
    # A worker the pool stopped before it began has no mp.process.run: it recorded nothing.
    assert len(children_of(spans, pool_span, "mp.process")) == 2, describe(spans)
    workers = workers_of(spans, pool_span)
    if how == "close-join":
        assert pool_span.attributes["mp.pool.end"] == "join"
        assert all(w.attributes["mp.exitcode"] == 0 for w in workers)
    else:
        assert pool_span.attributes["mp.pool.end"] == "terminate"
        processes = children_of(spans, pool_span, "mp.process")
        for process in processes:  # stopped by their pool: not a failure
            assert not is_error(process), describe(processes)
            if process.attributes.get("mp.exit.signal") == "SIGTERM":
                assert process.attributes["mp.process.end_reason"] == "terminated by its pool"
    assert not any(is_error(s) for s in spans), describe([s for s in spans if is_error(s)])


def test_pool_tasks_carry_pickling_sizes_and_hooks(traced, context):
    with context.Pool(1) as pool:
        assert pool.apply(targets.unwrap, (targets.Tricky(21),)) == 42
        assert pool.apply(targets.make_reduced, (5,)) == targets.Reduced(5)
    spans = traced.spans()
    sent = one(spans, "mp.task", **{"code.function.name": "tests.pool_targets.unwrap"})
    assert sent.attributes["mp.pickle.task.hooks"] == ("tests.pool_targets.Tricky.__getstate__",)
    assert sent.attributes["mp.pickle.task.bytes"] > 0
    returned = one(spans, "mp.task", **{"code.function.name": "tests.pool_targets.make_reduced"})
    assert "mp.pickle.task.hooks" not in returned.attributes
    run = one(children_of(spans, returned, "mp.task.run"), "mp.task.run")
    assert run.attributes["mp.pickle.result.hooks"] == ("tests.pool_targets.Reduced.__reduce__",)
    assert run.attributes["mp.pickle.result.bytes"] == returned.attributes["mp.unpickle.result.bytes"] > 0


def test_item_spans_on_request(context):
    for traced in traced_with(task_spans="item"):
        with traced.tracer.start_as_current_span("work"):
            with context.Pool(1) as pool:
                assert pool.map(targets.square_in_span, range(4), chunksize=2) == [0, 1, 4, 9]
        spans = traced.spans()
        assert_no_orphans(spans)
        runs = named(spans, "mp.task.run")
        assert len(runs) == 2
        for run in runs:
            items = children_of(spans, run, "mp.task.item")
            assert sorted(i.attributes["mp.task.index"] for i in items) == [0, 1]
            for item in items:
                assert len(children_of(spans, item, "task-work")) == 1


def test_task_spans_are_rate_limited_but_context_still_flows(context):
    for traced in traced_with(task_spans_per_second=1):
        with traced.tracer.start_as_current_span("work"):
            with context.Pool(1) as pool:
                results = [pool.apply_async(targets.square_in_span, (i,)) for i in range(20)]
                assert [r.get(30) for r in results] == [i * i for i in range(20)]
        spans = traced.spans()
        assert_one_trace(spans)
        assert_no_orphans(spans)
        tasks = named(spans, "mp.task")
        assert 1 <= len(tasks) <= 2  # a second's worth at once, then one a second
        assert len(named(spans, "mp.task.run")) == len(tasks)
        user_spans = named(spans, "task-work")
        assert len(user_spans) == 20
        work = one(spans, "work")
        untraced = [s for s in user_spans if parent_of(spans, s) is work]
        assert len(untraced) == 20 - len(tasks)  # nest under the caller's span instead
        pool_span = one(spans, "mp.pool")
        assert pool_span.attributes["mp.pool.tasks"] == 20
        assert pool_span.attributes["mp.pool.tasks_traced"] == len(tasks)
        assert pool_span.attributes["mp.pickle.task.count"] == 20
        assert pool_span.attributes["mp.unpickle.result.count"] == 20


@pytest.mark.parametrize("options, message", [
    ({"task_spans": "every"}, "'task_spans' must be one of 'chunk', 'item', got 'every'"),
    ({"task_spans_per_second": 0}, "'task_spans_per_second' must be a positive number or None, got 0"),
    ({"task_spans_per_second": "fast"}, "'task_spans_per_second' must be a positive number or None, got 'fast'"),
])
def test_bad_task_options_are_refused_by_name(options, message):
    with pytest.raises((TypeError, ValueError)) as raised:
        mptrace.install(**options)
    assert message in str(raised.value)
    assert not state.active()


@pytest.mark.parametrize("variable, value", [("MPTRACE_TASK_SPANS", "all"),
                                             ("MPTRACE_TASK_SPANS_PER_SECOND", "-3")])
def test_bad_task_variables_are_refused_by_name(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as raised:
        mptrace.install()
    assert variable in str(raised.value) and repr(value) in str(raised.value)
    assert not state.active()


def test_thread_pools_are_left_alone(traced):
    with traced.tracer.start_as_current_span("work"):
        with ThreadPool(2) as pool:
            assert pool.map(targets.square, range(10)) == [x * x for x in range(10)]
    spans = traced.spans()
    assert [s.name for s in spans] == ["work"]


def spans_of_a_child_running(target, traced, context, start_method):
    """(child, spans): in a span "work", a child runs ``target(start_method)``, which maps in a pool of its own."""
    with traced.tracer.start_as_current_span("work"):
        child = context.Process(target=target, args=(start_method,))
        child.start()
        child.join(60)
    assert child.exitcode == 0
    spans = traced.spans()
    assert_one_trace(spans)
    assert_no_orphans(spans)
    return child, spans


def assert_mapped_in_two_chunks(spans, api):
    """The child's map of four items: two mp.task.run, each with the user's spans of its two items."""
    task = one(spans, "mp.task", **{"mp.task.api": api})
    runs = children_of(spans, task, "mp.task.run")
    assert len(runs) == 2
    assert len([s for r in runs for s in children_of(spans, r, "task-work")]) == 4
    return task


def test_a_pool_in_a_child_joins_the_trace(traced, context, start_method):
    child, spans = spans_of_a_child_running(targets.map_in_a_pool, traced, context, start_method)
    child_run = [s for s in named(spans, "mp.process.run") if pid_of(s) == child.pid]
    assert len(child_run) == 1
    pool_span = one(spans, "mp.pool")
    assert parent_of(spans, pool_span) is child_run[0]
    assert len(workers_of(spans, pool_span)) == 1
    task = assert_mapped_in_two_chunks(spans, "Pool.map")
    assert pid_of(task) == child.pid


def test_uninstall_ends_a_live_pool_which_goes_on_working(context):
    for traced in traced_with():
        pool = context.Pool(1)
        assert pool.apply(targets.square, (2,)) == 4
        mptrace.uninstall()
        try:
            assert pool.apply(targets.square, (3,)) == 9
            assert pool.map(targets.square, range(5)) == [0, 1, 4, 9, 16]
        finally:
            pool.terminate()
            pool.join()
        spans = list(traced.exporter.get_finished_spans())
        assert one(spans, "mp.pool").attributes["mp.pool.end"] == "uninstall"
        assert len(named(spans, "mp.task")) == 1
        mptrace.install(tracer_provider=traced.provider)  # for traced_with's own uninstall


@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_a_pool_left_open_at_exit_loses_nothing(start_method, kind, tmp_path):
    output = tmp_path / "spans.json"
    result = subprocess.run([sys.executable, "-m", "tests.programs.pool_left_open", start_method, kind, str(output)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    spans = json.loads(output.read_text())
    ids = {s["span_id"] for s in spans}
    orphans = [s["name"] for s in spans if s["parent"] is not None and s["parent"] not in ids]
    assert not orphans, spans
    by_trace = {}
    for span in spans:  # on failure, which spans left the program's trace, and from which process
        by_trace.setdefault(span["trace_id"], []).append((span["name"], span["pid"], span["parent"] is None))
    assert len(by_trace) == 1, by_trace
    names = [s["name"] for s in spans]
    assert names.count("mp.task.run") == 4 and names.count("task-work") == 4, names
    pools = [s for s in spans if s["name"] == "mp.pool"]
    assert len(pools) == 1 and pools[0]["attributes"]["mp.pool.tasks"] == 4
    assert pools[0]["attributes"]["mp.pool.end"] == ("exit" if kind == "pool" else "shutdown")
    assert names.count("mp.process") == names.count("mp.process.run") or kind == "pool"
    assert not [s for s in spans if s["status"] == "ERROR"], spans


def test_every_pool_thread_works_in_the_pools_trace(context):
    """With every message notable, the pool's own threads' messages get spans: in the pool's trace."""
    for traced in traced_with(pickle_span_seconds=0):
        with traced.tracer.start_as_current_span("work"):
            with context.Pool(1, maxtasksperchild=1) as pool:
                assert [pool.apply(targets.square, (i,)) for i in range(3)] == [0, 1, 4]
                pool.close()
                pool.join()
        spans = traced.spans()
        assert_one_trace(spans)
        assert_no_orphans(spans)
        assert named(spans, "mp.unpickle")  # the worker handler's wake-up messages, at least


@pytest.mark.parametrize("chunks, traced_chunks", [(8, 8), (9, 2)], ids=["4 per worker: in full", "longer"])
def test_a_map_longer_than_default_chunking_traces_one_chunk_per_worker(traced, context, chunks, traced_chunks):
    """Pool(2): map's default chunking makes 4 chunks per worker; a map of up to 8 is traced in full."""
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(2) as pool:
            assert pool.map(targets.square_in_span, range(chunks), chunksize=1) == [x * x for x in range(chunks)]
    spans = traced.spans()
    assert_no_orphans(spans)
    task = one(spans, "mp.task", **{"mp.task.api": "Pool.map"})
    assert task.attributes["mp.task.chunks"] == chunks
    assert task.attributes["mp.task.chunks_traced"] == traced_chunks
    runs = children_of(spans, task, "mp.task.run")
    assert sorted(r.attributes["mp.task.index"] for r in runs) == list(range(traced_chunks))
    # The other chunks' own spans nest under mp.task: nothing is left out of the trace.
    assert len(children_of(spans, task, "task-work")) == chunks - traced_chunks
    assert len(named(spans, "task-work")) == chunks


def test_no_rate_limit_traces_every_chunk(context):
    for traced in traced_with(task_spans_per_second=None):
        with context.Pool(2) as pool:
            assert len(pool.map(targets.square, range(50), chunksize=1)) == 50
        spans = traced.spans()
        assert one(spans, "mp.task").attributes["mp.task.chunks_traced"] == 50
        assert len(named(spans, "mp.task.run")) == 50


def _pickling_error(obj):
    """The exception multiprocessing's own pickler raises for ``obj``."""
    from multiprocessing.reduction import ForkingPickler

    try:
        ForkingPickler.dumps(obj)
    except Exception as exc:
        return exc
    raise AssertionError("%r pickles" % (obj,))


def test_a_task_that_cannot_be_pickled_fails_for_the_caller_as_without_mptrace(traced, context):
    """The task handler pickles through mptrace's stand-in for its put(): the pool still reports the error."""
    unpicklable = lambda: None  # noqa: E731
    expected = _pickling_error(unpicklable)
    chunks = 12  # more than the 2 traced chunks of Pool(2): the unpicklable one is sent without a span
    items = list(range(chunks - 1)) + [unpicklable]
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(2) as pool:
            for call in (lambda: pool.apply(targets.square, (unpicklable,)),
                         lambda: pool.map(targets.square, items, chunksize=1)):
                with pytest.raises(type(expected)) as raised:
                    call()
                assert str(raised.value) == str(expected)
            assert pool.map(targets.square, range(3)) == [0, 1, 4]  # the pool goes on working
    spans = traced.spans()
    assert_no_orphans(spans)
    failed_map, later_map = sorted(named(spans, "mp.task"), key=lambda s: s.start_time)[1:]
    assert failed_map.attributes["mp.task.api"] == later_map.attributes["mp.task.api"] == "Pool.map"
    assert is_error(failed_map) and not is_error(later_map)
    assert failed_map.attributes["mp.task.chunks"] == chunks - 1  # sent: all but the one that failed to pickle
    failed = [s for s in children_of(spans, failed_map, "mp.pickle") if is_error(s)]
    assert len(failed) == 1 and failed[0].attributes["mp.pickle.channel"] == "task"


HINTS = {"lambda": "a lambda cannot be pickled", "lock": "a threading lock cannot be pickled",
         "file": "an open file cannot be pickled"}


def assert_unsent_tasks_are_named_under_their_pool(spans, pool_type, expected):
    """``expected``: (path, api, culprit kind, times). Each failed send names its culprit on mp.pickle and
    mp.task, and the tree draws it under the pool, counted; the root counts it as an error."""
    failed = [s for s in named(spans, "mp.pickle") if is_error(s)]
    assert len(failed) == sum(times for *_, times in expected), describe(failed)
    for path, api, kind, times in expected:
        pickles = [s for s in failed if s.attributes.get("mp.pickle.path") == path]
        assert len(pickles) == times, (path, describe(failed))
        for pickle in pickles:
            assert pickle.attributes["mp.pickle.channel"] == "task"
            assert pickle.attributes["mp.pickle.hint"].startswith(HINTS[kind]), pickle.attributes
            task = parent_of(spans, pickle)
            assert task.name == "mp.task" and task.attributes["mp.task.api"] == api, describe([task])
            assert is_error(task) and "raised" not in task.status.description
            assert task.status.description.startswith("could not pickle the task at %s: " % path)
            assert task.attributes["mp.task.end_reason"] == "could not pickle the task at %s" % path
            assert task.attributes["mp.task.pool"] == "%016x" % one(spans, "mp.pool").context.span_id
    lines = _tree.summary_lines(spans)
    assert "%d errors" % len(failed) in lines[0], "\n".join(lines)
    pool_line = line_with(lines, pool_type + "(")
    assert depth(pool_line) == 1
    for path, api, kind, times in expected:
        line = line_with(lines, "could not pickle a task message: %s: %s" % (path, HINTS[kind]))
        assert depth(line) == 2 and lines.index(line) > lines.index(pool_line), "\n".join(lines)
        assert line.endswith(" (×%d)" % times) == (times > 1), line


def assert_each_fails_as_untraced(calls):
    """Each (call, culprit) raises what pickling the culprit raises without mptrace, message and all."""
    for call, culprit in calls:
        expected = _pickling_error(culprit)
        with pytest.raises(type(expected)) as raised:
            call()
        assert str(raised.value) == str(expected)


def test_a_task_that_cannot_be_pickled_is_named_under_its_pool(traced, context):
    """The path and hint a Process argument gets, for every Pool API; the caller sees the error unchanged."""
    unpicklable = lambda x: x  # noqa: E731
    holder = targets.HoldsLock()
    with open(os.devnull, "rb") as file, traced.tracer.start_as_current_span("work"):
        with context.Pool(2) as pool:
            calls = [  # (how it fails, what fails to pickle)
                (lambda: pool.apply_async(unpicklable, (1,)).get(30), unpicklable),
                (lambda: pool.apply_async(unpicklable, (2,)).get(30), unpicklable),
                (lambda: pool.apply_async(targets.square, (holder,)).get(30), holder),
                (lambda: pool.apply(targets.square, (), {"x": file}), file),
                (lambda: pool.map(targets.square, [0, 1, 2, 3, 4, holder.lock], chunksize=2), holder.lock),
                (lambda: list(pool.imap(targets.square, [0, 1, 2, holder.lock])), holder.lock),
                (lambda: pool.starmap(targets.add, [(1, 2), (3, holder.lock)]), holder.lock),
            ]
            assert_each_fails_as_untraced(calls)
            assert pool.map(targets.square, range(3)) == [0, 1, 4]  # the pool goes on working
    assert_unsent_tasks_are_named_under_their_pool(traced.spans(), "Pool", [
        ("func", "Pool.apply_async", "lambda", 2),
        ("args[0].lock", "Pool.apply_async", "lock", 1),
        ("kwds['x']", "Pool.apply", "file", 1),
        ("iterable[5]", "Pool.map", "lock", 1),  # chunk 2 of size 2, its second item
        ("iterable[3]", "Pool.imap", "lock", 1),
        ("iterable[1][1]", "Pool.starmap", "lock", 1),
    ])


def test_task_and_result_pickling_hooks_are_shown_under_the_pool(traced, context):
    from concurrent.futures import ProcessPoolExecutor

    with context.Pool(1) as pool:
        assert pool.apply(targets.unwrap, (targets.Tricky(21),)) == 42
        assert pool.apply(targets.make_reduced, (5,)) == targets.Reduced(5)
    with ProcessPoolExecutor(1, mp_context=context) as executor:
        assert executor.submit(targets.unwrap, targets.Tricky(1)).result(30) == 2
        assert executor.submit(targets.make_reduced, 2).result(30) == targets.Reduced(2)
    lines = _tree.summary_lines(traced.spans())
    for pool_type in ("Pool(", "ProcessPoolExecutor("):
        pool_line = line_with(lines, pool_type)
        under = lines[lines.index(pool_line) + 1:]
        under = under[:next((i for i, line in enumerate(under) if depth(line) < 2), len(under))]
        for hooks in ("task pickling hooks: tests.pool_targets.Tricky.__getstate__",
                      "result pickling hooks: tests.pool_targets.Reduced.__reduce__"):
            assert [depth(line) for line in under if hooks in line] == [2], "\n".join(lines)


def test_the_task_handlers_stand_in_sends_what_connection_send_would():
    """put_for(): a task's pickle and its trailer; anything else, and a closed pipe's error, as send() has them."""
    from multiprocessing import Pipe
    from multiprocessing.reduction import ForkingPickler

    from mptrace import _spanparent, _tasks, _trailer

    caller = _spanparent.Parent(0x1234, 0x5678, True)
    sender = _tasks.TaskSender(None, lambda obj: caller if type(obj) is tuple else None, lambda obj: (None, None))
    reader, writer = Pipe(duplex=False)
    put = sender.put_for(writer.send)
    assert put is not writer.send
    task = (7, 0, targets.square, (3,), {})
    put(task)
    data = reader.recv_bytes()
    assert _trailer.read(data)[:3] == (_trailer.TASK, 0x1234, 0x5678)
    assert data[:-_trailer.SIZE] == bytes(ForkingPickler.dumps(task))
    put(None)  # a sentinel: through send() itself, with no trailer
    assert reader.recv_bytes() == bytes(ForkingPickler.dumps(None))
    writer.close()
    for call in (put, writer.send):
        with pytest.raises(OSError) as raised:
            call(task)
        assert str(raised.value) == "handle is closed"
    reader.close()


def test_the_result_handlers_stand_in_reads_what_connection_recv_would(traced):
    """get_for(): each message unpickled as recv() has it, the end of the pipe as EOFError, a closed one as OSError."""
    from multiprocessing import Pipe

    from mptrace import _tasks

    pool = _tasks.PoolTrace("test")
    receiver = _tasks.ResultReceiver(lambda obj: (None, None), pool)
    reader, writer = Pipe(duplex=False)
    get = receiver.get_for(reader.recv)
    assert get is not reader.recv
    writer.send((1, 0, (True, [1, 4, 9])))
    writer.send(None)
    assert get() == (1, 0, (True, [1, 4, 9]))
    assert get() is None
    assert pool.received[0] == 1  # the result, not the sentinel
    writer.close()
    with pytest.raises(EOFError):
        get()
    reader.close()
    for call in (get, reader.recv):
        with pytest.raises(OSError) as raised:
            call()
        assert str(raised.value) == "handle is closed"
    pool.end("join")


def test_a_workers_results_without_spans_are_counted_on_its_process(traced, context):
    """Results of chunks without mp.task.run are pickled in the caller's adopted context: the worker's own totals."""
    chunks = 12  # Pool(1): one traced chunk, 11 without
    with traced.tracer.start_as_current_span("work"):
        with context.Pool(1) as pool:
            assert pool.map(targets.square_in_span, range(chunks), chunksize=1) == [x * x for x in range(chunks)]
            pool.close()
            pool.join()
    spans = traced.spans()
    assert_no_orphans(spans)
    run = one(spans, "mp.task.run")
    assert run.attributes["mp.pickle.result.count"] == 1
    worker = one(spans, "mp.process.run")
    assert worker.attributes["mp.pickle.queue.count"] == chunks - 1
    assert worker.attributes["mp.pickle.queue.bytes"] > 0
    assert not [s for s in named(spans, "task-work") if "mp.pickle.queue.count" in s.attributes]
