"""Random generators that sibling children start with in the same state, and native threads alive at fork.

Programs written as a user would (a module-level ``random.Random()``, numpy's
generators, a thread a C extension starts with pthread_create), run under
mptrace; the assertions are on the spans, the tree, ``mptrace compare`` and
``mptrace.testing``.
"""

import _thread
import importlib
import importlib.util
import multiprocessing
import os
import sys

import pytest

import mptrace
from mptrace.testing import SpanRecorder
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, run_traced
from tests.test_cli import mptrace as mptrace_command

PROGRAMS = os.path.join(ROOT, "tests", "programs")
RANDOM_WORKERS = os.path.join(PROGRAMS, "random_workers.py")
NUMPY_WORKERS = os.path.join(PROGRAMS, "numpy_workers.py")
NATIVE_THREAD = os.path.join(PROGRAMS, "native_thread.py")
RANDOM_POOL = os.path.join(PROGRAMS, "random_pool.py")


@pytest.fixture
def random_targets():
    """tests.random_targets, imported for this test only: its generators would be in every later fork child
    of this test process (and in the trees other tests compare line by line)."""
    module = importlib.import_module("tests.random_targets")
    yield module
    sys.modules.pop("tests.random_targets", None)


def run_states(spans):
    """{worker name: {generator name: hash}} from each mp.process.run's mp.random.states."""
    found = {}
    for span in spans:
        if span["name"] == "mp.process.run":
            entries = span["attributes"]["mp.random.states"]
            found[span["attributes"]["mp.process.name"]] = dict(entry.rsplit(":", 1) for entry in entries)
    return found


def test_fork_siblings_share_a_module_level_generator(tmp_path):
    """Two fork workers drawing from a module-level random.Random() draw the same stream: named, both workers."""
    result, spans = run_traced(tmp_path, RANDOM_WORKERS, "fork")
    assert "rng same: True" in result.stdout  # the premise: they really drew the same numbers
    states = run_states(spans)
    first, second = states["worker-0"], states["worker-1"]
    assert first["__main__.rng"] == second["__main__.rng"]
    assert first["__main__.replay"] == second["__main__.replay"]
    # CPython reseeds the random module's global generator in every fork child: never shared, so not
    # hashed there (it would cost every fork child the hash of 625 words).
    assert "global same: False" in result.stdout
    assert "random" not in first and "random" not in second


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_fresh_interpreters_share_only_the_seeded_generator(tmp_path, method):
    """Under spawn and forkserver each child re-creates random.Random(42): the same; random.Random() is not."""
    result, spans = run_traced(tmp_path, RANDOM_WORKERS, method)
    assert "rng same: False" in result.stdout and "replay same: True" in result.stdout
    states = run_states(spans)
    first, second = states["worker-0"], states["worker-1"]
    assert first["__main__.replay"] == second["__main__.replay"]
    assert first["__main__.rng"] != second["__main__.rng"]
    assert first["random"] != second["random"]


@pytest.mark.parametrize("fix, ending", [("shared", "close"), ("shared", "with"), ("reseed", "with")])
def test_pool_workers_and_the_initializer_that_reseeds(tmp_path, fix, ending):
    """Fork pool workers share a module-level generator unless the pool's initializer reseeds it (the usual
    fix); the states reach the trace also when the pool's terminate() kills its workers."""
    _, spans = run_traced(tmp_path, RANDOM_POOL, "fork", fix, ending)
    states = run_states(spans)
    first, second = states["ForkPoolWorker-1"], states["ForkPoolWorker-2"]
    assert (first["__main__.rng"] == second["__main__.rng"]) == (fix == "shared")


def test_the_tree_names_the_generators_and_the_processes_that_share_them(tmp_path):
    code, out, err = mptrace_command("run", "--exporter", "tree", "--start-method", "fork", RANDOM_WORKERS,
                                     cwd=str(tmp_path))  # where it writes its trace file
    assert code == 0, err
    text = " ".join(err.split())  # the tree wraps long lines
    assert text.count("same random state in 2 processes (worker-0 (pid") == 2, err  # under each worker
    assert "), worker-1 (pid " in text and "), so the same draws: __main__.replay, __main__.rng" in text


def test_compare_shows_which_generators_are_shared_under_each_method():
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", RANDOM_WORKERS)
    assert code == 0, err
    differences = " ".join(out[out.index("What differs:"):].split())
    assert ("worker-0 (__main__.draw): random state shared differs: fork: __main__.replay with worker-1; "
            "__main__.rng with worker-1; spawn: __main__.replay with worker-1") in differences


def test_recorder_names_the_siblings_that_share_a_state(context, random_targets):
    with SpanRecorder() as recorder:
        workers = [context.Process(target=random_targets.draw, name="drawer-%d" % i) for i in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        first, second = recorder.processes()
        assert first.random_shared["tests.random_targets.seeded"] == (second,)
        assert second.random_shared["tests.random_targets.seeded"] == (first,)
        shared_unseeded = "tests.random_targets.rng" in first.random_shared
        assert shared_unseeded == (context.get_start_method() == "fork")
        assert "random" not in first.random_shared
        with pytest.raises(AssertionError, match=r"tests.random_targets.seeded \(also in drawer-1\)"):
            recorder.assert_random_independent("drawer-0")


def test_a_child_hashes_no_generator_of_an_ignored_module(context, random_targets):
    """ignore_modules holds in every child: a forkserver child does not take the module watch its server made
    for the children that choose nothing (see _modstate.prepare_server_watch)."""
    with SpanRecorder(ignore_modules=["tests.random_targets"]) as recorder:
        worker = context.Process(target=random_targets.draw)
        worker.start()
        worker.join()
        states = recorder.process().random_states
        assert not any(entry.startswith("tests.random_targets.") for entry in states), states


def test_independent_generators_pass(context, random_targets):
    """One child alone shares nothing; assert_random_independent passes."""
    with SpanRecorder() as recorder:
        worker = context.Process(target=random_targets.draw)
        worker.start()
        worker.join()
        assert any(entry.startswith("tests.random_targets.rng:") for entry in recorder.process().random_states)
        recorder.assert_random_independent()


def test_random_state_off_hashes_nothing_and_says_it_cannot_tell(random_targets):
    with SpanRecorder(random_state=False) as recorder:
        workers = [multiprocessing.get_context("fork").Process(target=random_targets.draw) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert all("mp.random.states" not in p.run.attributes for p in recorder.processes())
        with pytest.raises(AssertionError, match="cannot tell .* random_state=False"):
            recorder.assert_random_independent()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_random_state_option_must_be_a_bool(value):
    with pytest.raises(TypeError, match="'random_state' must be True or False"):
        mptrace.install(random_state=value)


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed")
@pytest.mark.parametrize("method", START_METHODS)
def test_numpy_generators(tmp_path, method):
    """numpy's legacy global generator is not reseeded at fork (unlike random's); a seeded Generator is
    the same in every child whatever the start method."""
    result, spans = run_traced(tmp_path, NUMPY_WORKERS, method)
    states = run_states(spans)
    first, second = states["worker-0"], states["worker-1"]
    assert first["__main__.generator"] == second["__main__.generator"]
    legacy_shared = first["numpy.random"] == second["numpy.random"]
    assert legacy_shared == (method == "fork")
    assert ("legacy same: %s" % legacy_shared) in result.stdout


# -- threads at fork -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pthread", "_thread"])
def test_a_thread_threading_does_not_know_is_counted_at_fork(tmp_path, kind):
    result, spans = run_traced(tmp_path, NATIVE_THREAD, kind, "fork")
    assert "threading knows: 1" in result.stdout  # only the main thread: the other one is native to it
    (launch,) = [s for s in spans if s["name"] == "mp.process"]
    assert launch["attributes"]["mp.fork.threads"] == 0
    assert launch["attributes"]["mp.fork.threads.native"] == 1
    (name,) = launch["attributes"]["mp.fork.threads.native_names"]
    assert name.endswith(")") and "(tid " in name


def test_no_native_thread_no_count(tmp_path):
    _, spans = run_traced(tmp_path, RANDOM_WORKERS, "fork")
    for launch in (s for s in spans if s["name"] == "mp.process"):
        assert launch["attributes"]["mp.fork.threads.native"] == 0
        assert "mp.fork.threads.native_names" not in launch["attributes"]


def test_the_tree_and_compare_show_a_native_thread_at_fork(tmp_path):
    code, out, err = mptrace_command("run", "--exporter", "tree", "--start-method", "fork", NATIVE_THREAD, "pthread",
                                     cwd=str(tmp_path))  # where it writes its trace file
    assert code == 0, err
    assert "1 native thread alive at fork (not started by threading" in err
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", NATIVE_THREAD, "pthread")
    assert code == 0, err
    differences = " ".join(out[out.index("What differs:"):].split())
    assert "threads at fork differs: fork: 1 native; spawn: -" in differences


def fork_and_join(name):
    worker = multiprocessing.get_context("fork").Process(target=os.getpid, name=name)
    worker.start()
    worker.join()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+ warns about exactly this
def test_recorder_counts_native_threads_at_fork():
    """One more native thread than without it (a test runner may have threads of its own: xdist's execnet)."""
    stop, started = _thread.allocate_lock(), _thread.allocate_lock()
    stop.acquire()
    started.acquire()

    def wait():
        started.release()
        stop.acquire()

    with SpanRecorder() as recorder:
        fork_and_join("before")
        _thread.start_new_thread(wait, ())
        started.acquire()
        try:
            fork_and_join("with-thread")
        finally:
            stop.release()
        before = recorder.process("before").native_threads_at_fork
        assert before is not None
        assert recorder.process("with-thread").native_threads_at_fork == before + 1
