"""The environment and working directory each child got, against its parent's at start() (issue 18, item 2).

The program (tests/programs/env_snapshot.py) starts a first worker, then sets APP_MODE, changes the C
environment only (os.putenv, os.unsetenv) and chdir()s, then starts a second worker. What really differs,
per start method (CPython's multiprocessing):

* fork: nothing; the child is a copy, and mptrace records nothing (the fork path does no extra work);
* spawn: os.environ's changes arrive; os.putenv/os.unsetenv's differ from the parent's os.environ;
  multiprocessing chdir()s the child to the parent's working directory;
* forkserver: the environment is the server's, from when it started with the first worker, so the second
  worker still sees APP_MODE "prod"; multiprocessing chdir()s it to the parent's directory, but the server
  (and the modules it preloaded) ran in the directory of its start.

(tests/test_environment.py is about something else: install()'s OTEL_* variables.)
"""

import json
import os
import sys
import textwrap

import hypothesis
import hypothesis.strategies as st
import pytest

from mptrace._envcompare import DIGEST_BYTES, pack_digests, unpack_digests
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, run_traced
from tests.test_cli import mptrace

PROGRAM = os.path.join(ROOT, "tests", "programs", "env_snapshot.py")
RECORDED = os.path.join(ROOT, "tests", "programs", "env_snapshot_recorded.py")
NOTHING = {"added": [], "removed": [], "changed": []}
ENV_KEYS = ("mp.env.added", "mp.env.removed", "mp.env.changed", "mp.cwd.differs")
WITHOUT_FORK = [m for m in START_METHODS if m != "fork"]


def runs_by_name(spans):
    return {s["attributes"]["mp.process.name"]: s["attributes"] for s in spans if s["name"] == "mp.process.run"}


def recorded(tmp_path, method, *extra):
    """What mptrace.testing said about the program's workers, run under a SpanRecorder in a fresh interpreter."""
    import subprocess

    output = tmp_path / "recorded.json"
    done = subprocess.run([sys.executable, RECORDED, method, str(output), *extra], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    with open(output) as f:
        return json.load(f)


@pytest.mark.parametrize("start_method", WITHOUT_FORK)
def test_the_second_worker_names_what_differs_from_its_parent(start_method, tmp_path):
    result, spans = run_traced(tmp_path, PROGRAM, start_method)
    runs = runs_by_name(spans)
    first, second = runs["first"], runs["second"]
    for key in ("mp.env.added", "mp.env.removed", "mp.env.changed"):
        assert first[key] == [], "the first worker got the parent's environment as it was at start()"
    assert first["mp.cwd.differs"] is False and second["mp.cwd.differs"] is False, \
        "multiprocessing chdir()s spawn and forkserver children to the parent's working directory"
    if start_method == "spawn":
        # os.environ's APP_MODE arrives; only what the C environment alone changed differs.
        assert (second["mp.env.added"], second["mp.env.removed"], second["mp.env.changed"]) == (
            ["CACHE_DIR"], ["LEGACY_FLAG"], [])
        assert "second test" in result.stdout
        assert not any(key.startswith("mp.forkserver.") and key != "mp.forkserver.preload" for key in second)
    else:
        # The fork server started with the first worker: its environment is from then.
        assert (second["mp.env.added"], second["mp.env.removed"], second["mp.env.changed"]) == ([], [], ["APP_MODE"])
        assert "second prod" in result.stdout, "the symptom the attributes explain"
        assert first["mp.forkserver.snapshot"] is True and second["mp.forkserver.snapshot"] is True
        assert first["mp.forkserver.started"] == second["mp.forkserver.started"], "one server, one start"
        assert first["mp.forkserver.snapshot_age"] == 0, "the server started during the first worker's start()"
        assert second["mp.forkserver.snapshot_age"] >= 0
        assert first["mp.forkserver.cwd.differs"] is False
        assert second["mp.forkserver.cwd.differs"] is True, "the server started in the directory the program left"
    for attributes in (first, second):  # names only: values stay private unless captured
        assert not {"mp.env.values", "mp.cwd.parent", "mp.cwd.child", "mp.forkserver.cwd"} & set(attributes)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_mptrace_testing_and_the_tree_name_the_differences(start_method, tmp_path):
    found = recorded(tmp_path, start_method)
    first, second = found["workers"]["first"], found["workers"]["second"]
    assert first["environment_differences"] == NOTHING
    assert found["assertions"]["first"] == [None, None]
    assert first["cwd_differs"] is False and second["cwd_differs"] is False
    tree = "\n".join(found["tree"])
    if start_method == "fork":  # a copy: nothing can differ, and nothing is recorded
        assert second["environment_differences"] == NOTHING
        assert not set(ENV_KEYS) & set(second["run"]), "the fork path records nothing"
        assert found["assertions"]["second"] == [None, None]
        assert "environment differs" not in tree
        assert second["forkserver_snapshot_age"] is None
    elif start_method == "spawn":
        assert second["environment_differences"] == {"added": ["CACHE_DIR"], "removed": ["LEGACY_FLAG"], "changed": []}
        assert found["assertions"]["second"] == [
            "expected second to inherit the environment from its parent (started by spawn), but CACHE_DIR added, "
            "LEGACY_FLAG removed", None]
        assert "environment differs from the parent's at start(): added CACHE_DIR; missing LEGACY_FLAG" in tree
        assert second["forkserver_snapshot_age"] is None
    else:
        assert second["environment_differences"] == {"added": [], "removed": [], "changed": ["APP_MODE"]}
        assert found["assertions"]["second"][1] == (
            "expected second to inherit APP_MODE from its parent (started by forkserver), but APP_MODE changed")
        assert first["forkserver_snapshot_age"] == 0 and second["forkserver_snapshot_age"] >= 0
        assert "environment differs from the parent's at start() (the fork server's, from when it started, " in tree
        assert " before start()): changed APP_MODE" in tree
        assert "the fork server started " in tree
        assert "in another working directory than the parent's at start(): its preloaded modules were imported" in tree


@pytest.mark.parametrize("start_method", WITHOUT_FORK)
def test_values_show_only_when_captured(start_method, tmp_path):
    second = recorded(tmp_path, start_method, "capture")["workers"]["second"]["run"]
    if start_method == "spawn":
        assert second["mp.env.values"] == ["CACHE_DIR: parent unset, child '/var/cache/app'",
                                           "LEGACY_FLAG: parent '1', child unset"]
        assert "mp.forkserver.cwd" not in second
    else:
        assert second["mp.env.values"] == ["APP_MODE: parent 'test', child 'prod'"]
        assert second["mp.forkserver.cwd"] == ROOT, "where the server started, with the first worker"
        assert os.path.basename(second["mp.cwd.parent"]).startswith("env-snapshot-")
    assert second["mp.cwd.differs"] is False and "mp.cwd.child" not in second


@pytest.mark.skipif("forkserver" not in START_METHODS, reason="no forkserver on this platform")
def test_a_fork_server_the_program_started_itself_has_a_known_age(tmp_path):
    program = tmp_path / "early_server.py"
    program.write_text(textwrap.dedent("""\
        import multiprocessing, multiprocessing.forkserver, os

        def work():
            pass

        if __name__ == "__main__":
            multiprocessing.set_forkserver_preload(["json"])
            multiprocessing.forkserver.ensure_running()  # preload early, as the docs suggest
            os.environ["FEATURE_X"] = "on"
            worker = multiprocessing.get_context("forkserver").Process(target=work, name="worker")
            worker.start()
            worker.join()
        """))
    _, spans = run_traced(tmp_path, program)
    run = runs_by_name(spans)["worker"]
    assert run["mp.env.removed"] == ["FEATURE_X"], "set after the server started: the child lacks it"
    assert run["mp.forkserver.snapshot"] is True
    assert run["mp.forkserver.snapshot_age"] >= 0, "ensure_running() is watched, not only start()"
    assert "mp.forkserver.started" in run


def c_environment():
    """``{name: value}`` of this process's C environment (what a spawn child gets), read through libc:
    os.environ does not see what C code set with setenv()."""
    import ctypes

    environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    found, index = {}, 0
    while environ[index]:
        name, _, value = environ[index].partition(b"=")
        found[name] = value
        index += 1
    return found


@pytest.fixture
def c_environment_as_os_environ():
    """The C environment without what only it has, for the test: the tests in this process may have
    loaded readline, which setenv()s LINES and COLUMNS behind os.environ's back, and a spawn child
    started here would rightly report them as added."""
    only_in_c = {name: value for name, value in c_environment().items() if name not in os.environb}
    for name in only_in_c:
        os.unsetenv(name)
    yield
    for name, value in only_in_c.items():
        os.putenv(name, value)


@pytest.mark.usefixtures("c_environment_as_os_environ")
def test_a_long_list_of_differences_is_bounded(traced):
    import multiprocessing

    from mptrace import _envcompare
    from mptrace.testing import Process

    names = ["MPTRACE_TEST_PUTENV_%02d" % i for i in range(_envcompare.MAX_NAMES + 4)]
    for name in names:
        os.putenv(name, "1")  # the C environment only: a spawn child has them, os.environ does not
    try:
        worker = multiprocessing.get_context("spawn").Process(target=os.getpid)
        worker.start()
        worker.join()
    finally:
        for name in names:
            os.unsetenv(name)
    spans = traced.spans()
    run = next(s for s in spans if s.name == "mp.process.run")
    added = list(run.attributes["mp.env.added"])
    assert len(added) == _envcompare.MAX_NAMES
    assert added[-1] == "+%d more" % (len(names) - _envcompare.MAX_NAMES + 1)
    assert added[:-1] == names[:_envcompare.MAX_NAMES - 1]
    launch = next(s for s in spans if s.name == "mp.process")
    assert Process(launch, run).environment_differences["added"] == tuple(added)


def test_a_variable_set_between_two_starts_is_no_difference(traced):
    """The parent's digests follow os.environ from one start to the next (they are reused only while it is
    unchanged): a variable set, then changed, between starts is what each child has, so no child names it."""
    import multiprocessing

    name = "MPTRACE_TEST_BETWEEN_STARTS"
    context = multiprocessing.get_context("spawn")
    try:
        for value in (None, "1", "2"):
            if value is not None:
                os.environ[name] = value
            worker = context.Process(target=os.getpid)
            worker.start()
            worker.join()
    finally:
        os.environ.pop(name, None)
    runs = [s for s in traced.spans() if s.name == "mp.process.run"]
    assert len(runs) == 3
    for run in runs:
        for key in ("mp.env.added", "mp.env.removed", "mp.env.changed"):
            assert name not in list(run.attributes.get(key, ())), (key, run.attributes.get(key))


def test_compare_lists_the_environment_among_what_differs(tmp_path):
    code, out, err = mptrace("compare", PROGRAM, cwd=str(tmp_path))
    assert code == 0, err
    differences = out[out.index("What differs:"):]
    expected = {"fork": "-", "spawn": "added CACHE_DIR; missing LEGACY_FLAG",
                "forkserver": "changed APP_MODE; the fork server's working directory"}
    entry = "second (__main__.work): environment differs: " + "; ".join(
        "%s: %s" % (method, expected[method]) for method in START_METHODS)
    assert entry in " ".join(differences.split()), out
    first = "first (__main__.work): environment differs"
    assert first not in differences, "the first worker got the parent's environment under every method"


def start_spawn_grandchild():
    os.putenv("MPTRACE_TEST_GRANDCHILD_ONLY", "yes")  # the fork child's C environment only
    import multiprocessing

    grandchild = multiprocessing.get_context("spawn").Process(target=os.getpid, name="grandchild")
    grandchild.start()
    grandchild.join()


@pytest.fixture
def traced_capturing():
    from tests.conftest import traced_with

    yield from traced_with(capture_values=True)


@pytest.mark.usefixtures("c_environment_as_os_environ")
def test_a_grandchild_compares_with_the_child_that_started_it(traced_capturing):
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=start_spawn_grandchild, name="child")
    child.start()
    child.join()
    runs = {s.attributes["mp.process.name"]: s.attributes for s in traced_capturing.spans()
            if s.name == "mp.process.run"}
    assert "mp.env.added" not in runs["child"], "a fork child is a copy: nothing compared, nothing recorded"
    grandchild = runs["grandchild"]
    assert list(grandchild["mp.env.added"]) == ["MPTRACE_TEST_GRANDCHILD_ONLY"]
    assert list(grandchild["mp.env.values"]) == ["MPTRACE_TEST_GRANDCHILD_ONLY: parent unset, child 'yes'"], \
        "capture_values reaches a grandchild started by a fork child"


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.dictionaries(st.binary(max_size=40).filter(lambda name: b"\0" not in name),
                                  st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES), max_size=30))
def test_packed_digests_unpack_to_what_was_packed(digests):
    """A child is sent its parent's variables' digests as one bytes object (digests hold any byte, NUL too)."""
    assert unpack_digests(pack_digests(digests)) == digests
