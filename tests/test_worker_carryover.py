"""State carried between the tasks of a reused worker: what a task left changed for the next one.

The programs are a user's: a module ``counter`` whose task function counts its
calls in a global and remembers its items in a list, an ``lru_cache`` function,
and a pure function, run through ``Pool(2).map`` and ``ProcessPoolExecutor``.
"""

import io
import multiprocessing
import os
import re
import sys

import pytest

from mptrace import _compare, _tree
from mptrace.testing import SpanRecorder
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, environment, eventually, run_traced

PROGRAM = "tests/programs/carryover.py"
COUNTED = ["counter.CALLS", "counter.SEEN"]


def run_program(tmp_path, start_method, api, function, items=8):
    result, spans = run_traced(tmp_path, PROGRAM, start_method, api, function, str(items))
    return result, spans


def task_runs(spans):
    return [s for s in spans if s["name"] == "mp.task.run"]


def worker_runs(spans):
    """The run spans of the workers that ran a task."""
    pids = {s["pid"] for s in task_runs(spans)}
    return [s for s in spans if s["name"] == "mp.process.run" and s["pid"] in pids]


def carried(run):
    attributes = run["attributes"]
    return dict(zip(attributes["mp.worker.carried"], attributes["mp.worker.carried.tasks"]))


@pytest.mark.parametrize("api", ["pool", "executor"])
def test_each_task_names_the_globals_it_changed_and_each_worker_counts_them(start_method, tmp_path, api):
    result, spans = run_program(tmp_path, start_method, api, "count")
    tasks = task_runs(spans)
    assert len(tasks) == 8  # a map this short is traced in full
    for task in tasks:
        assert task["attributes"]["mp.task.changed"] == COUNTED
        assert task["attributes"]["mp.task.changed.look"] in ("full", "shallow")  # full unless over its budget
    runs = worker_runs(spans)
    for run in runs:
        ran = len([t for t in tasks if t["pid"] == run["pid"]])
        assert carried(run) == {"counter.CALLS": ran, "counter.SEEN": ran}
        assert run["attributes"]["mp.worker.tasks_checked"] == ran
    assert sum(run["attributes"]["mp.worker.tasks_checked"] for run in runs) == 8


def test_a_class_attribute_a_task_changes_is_named(start_method, tmp_path):
    result, spans = run_program(tmp_path, start_method, "pool", "tally")
    tasks = task_runs(spans)
    assert tasks and all(t["attributes"]["mp.task.changed"] == ["counter.Tally.total"] for t in tasks)
    assert sum(carried(run).get("counter.Tally.total", 0) for run in worker_runs(spans)) == 8


def test_tasks_without_a_span_are_still_counted_on_the_worker(tmp_path):
    """300 tasks: only a few get a span (see _tasks), every one is looked at."""
    result, spans = run_program(tmp_path, "fork", "pool", "count", items=300)
    traced = len(task_runs(spans))
    assert traced < 300
    runs = [s for s in spans if s["name"] == "mp.process.run" and "mp.worker.tasks_checked" in s["attributes"]]
    assert sum(r["attributes"]["mp.worker.tasks_checked"] for r in runs) == 300
    assert sum(carried(r)["counter.CALLS"] for r in runs) == 300
    assert sum(r["attributes"]["mp.worker.tasks_checked_in_full"] for r in runs) <= traced


def test_workers_their_pool_terminates_still_report_what_their_tasks_carried(start_method, tmp_path):
    """``with Pool() as pool``: terminate() kills the workers; what they found is on their run spans anyway."""
    result, spans = run_program(tmp_path, start_method, "pool_with", "count")
    runs = worker_runs(spans)
    assert runs and all(set(carried(run)) == set(COUNTED) for run in runs)
    assert sum(carried(run)["counter.CALLS"] for run in runs) == 8


def test_an_lru_cache_filled_by_a_task_is_named(start_method, tmp_path):
    result, spans = run_program(tmp_path, start_method, "pool", "cached")
    filled = [t for t in task_runs(spans) if "counter.square (lru_cache)" in t["attributes"]["mp.task.changed"]]
    assert filled, "no task span named the cache it filled"
    assert all(t["attributes"]["mp.task.changed"] == ["counter.square (lru_cache)"] for t in filled)
    runs = worker_runs(spans)
    total = sum(carried(run).get("counter.square (lru_cache)", 0) for run in runs)
    assert total == len(filled) and 3 <= total <= 6  # item % 3: three results, cached once per worker


def test_a_pure_task_function_records_no_change(start_method, tmp_path):
    result, spans = run_program(tmp_path, start_method, "executor", "pure")
    for task in task_runs(spans):
        assert task["attributes"]["mp.task.changed"] == []
    runs = worker_runs(spans)
    assert runs and all(run["attributes"]["mp.worker.carried"] == [] for run in runs)
    assert sum(run["attributes"]["mp.worker.tasks_checked"] for run in runs) == 8


def test_a_module_with_one_global_list(tmp_path):
    """One watched name, a list: what a module of settings or results often is."""
    (tmp_path / "results.py").write_text("SEEN = []\n\ndef keep(item):\n    SEEN.append(item)\n    return len(SEEN)\n")
    program = tmp_path / "keeping.py"
    program.write_text("import multiprocessing, sys\nimport results\nif __name__ == '__main__':\n"
                       "    pool = multiprocessing.get_context(sys.argv[1]).Pool(2)\n"
                       "    pool.map(results.keep, range(300), chunksize=1)\n    pool.close()\n    pool.join()\n")
    result, spans = run_traced(tmp_path, str(program), "fork")
    assert "mptrace" not in result.stderr, result.stderr  # no internal error logged
    runs = [s for s in spans if s["name"] == "mp.process.run" and "mp.worker.tasks_checked" in s["attributes"]]
    assert sum(carried(r)["results.SEEN"] for r in runs) == 300


# -- in the test process: SpanRecorder, the tree, and the option that turns it off ------------------------


def count_in_pool(context, recorder_options=None, items=6):
    sys.path.insert(0, os.path.join(ROOT, "tests", "programs"))
    try:
        import counter

        with SpanRecorder(**(recorder_options or {})) as recorder:
            pool = context.Pool(2)
            pool.map(counter.count, range(items), chunksize=1)
            pool.close()
            pool.join()
            return recorder, recorder.spans
    finally:
        sys.path.remove(os.path.join(ROOT, "tests", "programs"))


def test_the_testing_helpers_and_the_tree_name_what_was_carried(context):
    recorder, spans = count_in_pool(context)
    workers = [p for p in recorder.processes() if p.carried_between_tasks is not None]
    assert workers
    assert sum(p.carried_between_tasks["counter.CALLS"] for p in workers) == 6
    with pytest.raises(AssertionError, match=r"expected no state carried between the tasks of .*counter\.CALLS"):
        recorder.assert_nothing_carried_between_tasks()
    lines = _tree.summary_lines(spans)
    found = [line for line in lines if "carried between tasks: " in line]
    assert len(found) == len(workers)
    assert all("counter.CALLS (" in line and "counter.SEEN (" in line for line in found)
    worker_lines = [i for i, line in enumerate(lines) if "PoolWorker" in line]
    assert all(any(w < lines.index(line) for w in worker_lines) for line in found)
    out = io.StringIO()
    _tree.render(spans, file=out, color=True)
    assert re.search(r"\x1b\[33mcarried between tasks: counter\.CALLS", out.getvalue()), out.getvalue()


def test_the_tree_says_a_terminated_workers_counts_are_lower_bounds(context, tmp_path):
    """terminate() kills a busy worker before its end: its counts are those of its last record."""
    running = tmp_path / "running"
    sys.path.insert(0, os.path.join(ROOT, "tests", "programs"))
    try:
        import counter

        with SpanRecorder() as recorder:
            with context.Pool(1) as pool:
                pool.map(counter.count, range(3), chunksize=1)
                pool.apply_async(counter.block, (str(running),))
                assert eventually(running.exists)
            spans = recorder.spans
    finally:
        sys.path.remove(os.path.join(ROOT, "tests", "programs"))
    lines = _tree.summary_lines(spans)
    [found] = [line for line in lines if "carried between tasks" in line]
    assert re.search(r"carried between tasks \(counted until its last record before it was stopped\): "
                     r"counter\.CALLS \(at least 3 tasks\)", found), "\n".join(lines)


def test_check_task_state_false_looks_for_nothing(context):
    recorder, spans = count_in_pool(context, {"check_task_state": False})
    assert all(p.carried_between_tasks is None for p in recorder.processes())
    assert all("mp.task.changed" not in s.attributes for s in spans if s.name == "mp.task.run")
    assert not any("carried between tasks" in line for line in _tree.summary_lines(spans))


def test_check_task_state_must_be_a_bool():
    import mptrace

    with pytest.raises(TypeError, match="'check_task_state' must be True or False"):
        mptrace.install(check_task_state="yes")


# -- mptrace compare -------------------------------------------------------------------------------------


COLLECTING = """\
import multiprocessing
import counter

def collect(item):
    if counter.MODE == "collect":  # set by the main block: a fork worker has it, a spawn worker does not
        counter.SEEN.append(item)
    return len(counter.SEEN)

if __name__ == "__main__":
    counter.MODE = "collect"
    pool = multiprocessing.Pool(2)
    pool.map(collect, range(6), chunksize=1)
    pool.close()
    pool.join()
"""


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs fork to differ from spawn")
def test_compare_names_state_carried_under_one_start_method_only(tmp_path):
    (tmp_path / "counter.py").write_text("MODE = 'off'\nSEEN = []\n")
    program = tmp_path / "collecting.py"
    program.write_text(COLLECTING)
    mptrace = os.path.join(os.path.dirname(sys.executable), "mptrace")
    import subprocess

    done = subprocess.run([mptrace, "compare", "--start-methods", "fork,spawn", str(program)], capture_output=True,
                          text=True, cwd=str(tmp_path), env=environment(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "carried between tasks" in done.stdout
    differences = done.stdout[done.stdout.index("What differs:"):]
    assert re.search(r"carried between tasks differs: fork: counter\.SEEN \(by the pool's workers\); spawn: -",
                     " ".join(differences.split())), done.stdout
    assert _compare.ROWS[-2] == "carried between tasks"
