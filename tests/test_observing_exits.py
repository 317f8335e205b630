"""mp.process ends however the parent observes the exit; instrumentation is early."""

import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time

import pytest

import mptrace
from mptrace import _collector, semconv
from tests import pool_targets, targets
from tests.programs import mptrace_call_recorder
from tests.spans import assert_no_orphans, is_error, named, one
from tests.subprocesses import ROOT, eventually


def wait_for_exit(process):
    multiprocessing.connection.wait([process.sentinel], 30)


@pytest.mark.parametrize("observe", ["join", "is_alive", "exitcode", "close"])
def test_every_way_of_observing_the_exit_ends_mp_process(traced, context, observe):
    process = context.Process(target=targets.exit_with, args=(6,))
    process.start()
    wait_for_exit(process)
    if observe == "join":
        process.join()
    elif observe == "is_alive":
        # The sentinel can fire a moment before the child is reapable.
        assert eventually(lambda: not process.is_alive())
    elif observe in ("exitcode", "sentinel_then_exitcode"):
        assert eventually(lambda: process.exitcode == 6)
    elif observe == "close":
        assert eventually(lambda: process.exitcode is not None)
        process.close()
    spans = list(traced.exporter.get_finished_spans())  # before flush(), which polls by itself
    launch = one(spans, "mp.process")
    assert launch.attributes["mp.exitcode"] == 6 and is_error(launch)


def mptrace_functions_run_by(call):
    """The functions of mptrace's own that ``call()`` runs on this thread, as module:name."""
    ran = []
    sys.setprofile(mptrace_call_recorder(ran.append))
    try:
        call()
    finally:
        sys.setprofile(None)
    return ran


# What the root may run of mptrace when it observes an exit and no collection is due: the caller waits
# for each function (and right after a fork, for the pages it writes: copy-on-write faults). Ending
# mp.process and reporting the exit wait for the collector's next pass.
OBSERVING_BUDGET = 6


@pytest.mark.parametrize("ending", ["exit code", "killed"])
def test_an_observed_exit_ends_mp_process_at_the_next_collection_as_observed(traced, context, monkeypatch, ending):
    assert mptrace.flush()  # a collection now, so that the next one is not due when join() observes the exit
    monkeypatch.setattr(_collector, "COLLECT_INTERVAL", 3600.0)
    if ending == "exit code":
        process = context.Process(target=targets.exit_with, args=(6,))
        process.start()
    else:
        ready = context.Event()
        process = context.Process(target=targets.signal_ready_then_sleep, args=(ready,))
        process.start()
        assert ready.wait(60)
        os.kill(process.pid, signal.SIGKILL)
    wait_for_exit(process)
    observed_from = time.time_ns()
    ran = mptrace_functions_run_by(process.join)
    observed_by = time.time_ns()
    assert len(ran) <= OBSERVING_BUDGET, "observing an exit ran %d of mptrace's functions:\n%s" % (
        len(ran), "\n".join(ran))
    assert not named(traced.exporter.get_finished_spans(), "mp.process"), "handed over before a collection"
    launch = one(traced.spans(), "mp.process")
    assert observed_from <= launch.end_time <= observed_by, "mp.process did not end when the exit was observed"
    assert launch.attributes[semconv.CHILD_PID] == process.pid and is_error(launch)
    if ending == "exit code":
        assert launch.attributes[semconv.EXITCODE] == 6 and semconv.EXIT_SIGNAL not in launch.attributes
    else:
        assert launch.attributes[semconv.EXITCODE] == -signal.SIGKILL
        assert launch.attributes[semconv.EXIT_SIGNAL] == "SIGKILL"


def test_exits_a_pools_handler_thread_observes_end_mp_process_at_the_next_collection(traced, context, monkeypatch):
    """A worker recycled by maxtasksperchild is observed by the pool's handler thread: noted there, ended
    (with its pid and exit code) at the next collection, on whichever thread makes it."""
    assert mptrace.flush()
    monkeypatch.setattr(_collector, "COLLECT_INTERVAL", 3600.0)
    with context.Pool(1, maxtasksperchild=1) as pool:
        pids = [pool.apply(pool_targets.worker_pid) for _ in range(3)]
        pool.close()
        pool.join()
    assert len(set(pids)) == 3
    spans = traced.spans()
    assert_no_orphans(spans)
    workers = named(spans, "mp.process")
    assert {w.attributes[semconv.CHILD_PID] for w in workers} >= set(pids)
    assert all(w.attributes[semconv.EXITCODE] == 0 and not is_error(w) for w in workers)
    assert len(named(spans, "mp.process.run")) == len(workers)


def test_flush_notices_children_nobody_joined(traced, context):
    process = context.Process(target=targets.succeed)
    process.start()
    wait_for_exit(process)
    assert named(traced.spans(), "mp.process.run"), "flush() did not collect the exited child"
    process.join()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_child_is_instrumented_before_the_main_module_is_reimported(method, tmp_path):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip("no %s here" % method)
    output = tmp_path / "reimport.txt"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "programs", "main_reimport.py"), method,
                             str(output)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = output.read_text().split()
    # From 3.13.8/3.14.1 the forkserver runs the main module once, in the server
    # (which mptrace does not touch); the children then skip the re-import.
    if method == "forkserver" and not lines:
        pytest.skip("this Python re-imports __main__ only in the fork server")
    assert lines == ["__mp_main__", "mptrace._child"], lines


def test_killed_middle_process_leaves_no_orphans(traced, context, start_method):
    ready = context.Event()
    middle = context.Process(target=start_grandchild_then_wait, args=(start_method, ready))
    middle.start()
    assert ready.wait(30), "the middle process never started its grandchild"
    middle.kill()
    middle.join(30)
    mptrace.uninstall()  # collects everything, including the orphaned grandchild's file
    spans = list(traced.exporter.get_finished_spans())
    assert_no_orphans(spans)
    launches = named(spans, "mp.process")
    grandchild_launch = [s for s in launches if s.attributes.get("mp.process.name") == "grandchild"]
    assert len(grandchild_launch) == 1
    assert grandchild_launch[0].attributes["mp.span.synthesized"] is True
    middle_run = [s for s in named(spans, "mp.process.run") if s.attributes["mp.process.name"] != "grandchild"]
    assert middle_run[0].attributes["mp.exit.signal"] == "SIGKILL"


def start_grandchild_then_wait(method, ready):
    import time

    grandchild = multiprocessing.get_context(method).Process(target=time.sleep, args=(0.5,), name="grandchild")
    grandchild.start()
    ready.set()
    time.sleep(60)


def test_spool_directory_is_removed_at_exit(start_method, tmp_path):
    output = tmp_path / "spans.json"
    result = subprocess.run([sys.executable, "-m", "tests.programs.exit_without_join", start_method, str(output)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=dict(os.environ, MPTRACE_SPOOL_DIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["spans.json"]
