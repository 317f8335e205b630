"""A child that ends after its run span began and before it reported what it compared: not known, never "nothing".

The child (see tests/unreported_targets.py) is killed while it hashes its
random generators, after it compared module state, arguments and environment
and before any of that reached its spool: its run span arrives, ended by the
collector, without mp.state.diverged, mp.args.changed, mp.env.* and
mp.random.states. The tree, ``mptrace compare`` and ``mptrace.testing`` must
say that they do not know, and say why; what is off by choice keeps saying so.
"""

import importlib
import os
import sys

import pytest

from mptrace.testing import SpanRecorder
from tests import pool_targets
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, eventually
from tests.test_cli import mptrace as mptrace_command

PROGRAM = os.path.join(ROOT, "tests", "programs", "ends_before_reporting.py")
ENDED = "not known (the child ended before it reported them)"
COMPARED = ("module state", "arguments", "environment")


@pytest.fixture
def targets():
    """tests.unreported_targets, imported for this test only: a fork child of a later test must not find its
    generator (nor hash it)."""
    module = importlib.import_module("tests.unreported_targets")
    yield module
    sys.modules.pop("tests.unreported_targets", None)


def start_one_that_ends_early(context, targets):
    targets.arm()
    child = context.Process(target=targets.target, args=(targets.Arm(),), name="reporter")
    child.start()
    child.join()
    assert child.exitcode == -9  # killed where the test meant: while its generators were hashed


@pytest.mark.parametrize("start_method", START_METHODS)
def test_the_tree_says_what_is_not_known(start_method, tmp_path):
    code, out, err = mptrace_command("run", "--start-method", start_method, "--trace-file", str(tmp_path / "t.json"),
                                     PROGRAM, env={"PYTHONPATH": ROOT})
    assert code == 0, err
    assert "child exit -9" in out
    text = " ".join(err.replace("│", " ").split())  # the tree wraps long lines
    if start_method == "fork":  # a copy of the parent: state and arguments are known from its START
        assert "random state: " + ENDED in text, err
        assert "module state" not in text, err
    else:
        assert "module state, arguments, environment, random state: " + ENDED in text, err


def test_compare_says_not_known_in_the_rows_the_child_never_reported():
    # Two runs: each table column is wide enough for the row texts on one line.
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", PROGRAM, env={"PYTHONPATH": ROOT})
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│")}
    methods = [cell.strip() for cell in next(line for line in out.splitlines() if line.startswith("┃")).split("┃")[2:-1]]
    unknown = "not known (ended before reporting)"
    for method, column in zip(methods, range(len(methods))):
        fresh = method != "fork"
        for row in ("arguments changed", "state diverged", "environment"):
            assert (rows[row][column] == unknown) == fresh, (method, row, out)
        assert rows["random state shared"][column] == unknown, (method, out)


def test_recorder_cannot_tell_and_says_why(context, targets):
    fork = context.get_start_method() == "fork"
    with SpanRecorder() as recorder:
        start_one_that_ends_early(context, targets)
        found = recorder.process()
        assert found.run is not None and found.run.attributes["mp.span.synthesized"] is True
        ended = "cannot tell .* the child ended before it reported"
        with pytest.raises(AssertionError, match=ended + " its random generators' states"):
            recorder.assert_random_independent()
        if fork:  # a copy: nothing to compare, so known
            recorder.assert_state_inherited("tests.unreported_targets.SETTING")
            recorder.assert_args_unchanged()
            return
        with pytest.raises(AssertionError, match=ended + " what it compared"):
            recorder.assert_state_inherited("tests.unreported_targets.SETTING")
        with pytest.raises(AssertionError, match=ended + " what it compared"):
            recorder.assert_args_unchanged()
        with pytest.raises(AssertionError, match=ended + " what it compared"):
            recorder.assert_environment_inherited()
        with pytest.raises(AssertionError, match=ended + " what it compared"):
            recorder.assert_state_diverged("tests.unreported_targets.SETTING")
        with pytest.raises(AssertionError, match=ended + " what it compared"):
            recorder.assert_arg_changed("args[0]")


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_recorder_cannot_tell_for_a_child_that_failed_before_run(start_method, targets):
    import multiprocessing

    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip("no %s here" % start_method)
    with SpanRecorder() as recorder:
        child = multiprocessing.get_context(start_method).Process(target=targets.target, args=(targets.FailsToArrive(),))
        child.start()
        child.join()
        assert child.exitcode == 1
        why = "cannot tell .* it failed before run\\(\\) began, in process-object unpickling"
        with pytest.raises(AssertionError, match=why):
            recorder.assert_args_unchanged()
        with pytest.raises(AssertionError, match=why):
            recorder.assert_state_inherited("tests.unreported_targets.SETTING")
        with pytest.raises(AssertionError, match=why):
            recorder.assert_random_independent()


def test_random_state_off_still_says_off_and_nothing_is_not_known(context):
    """Off by choice: the run span says so, the assert gives that reason, the tree has no "not known" line."""
    with SpanRecorder(random_state=False) as recorder:
        child = context.Process(target=pool_targets.square, args=(3,))
        child.start()
        child.join()
        found = recorder.process()
        assert found.run.attributes["mp.random.off"] is True
        with pytest.raises(AssertionError, match=r"cannot tell .* random_state=False"):
            recorder.assert_random_independent()
        assert not unreported(recorder.tree())


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_killed_pool_worker_keeps_what_it_compared(start_method):
    """A worker killed after its start (by its pool's terminate(), or here by its task) still has its
    comparisons in the trace, even with nothing hashed (random_state=False): its START is written again once
    they are made."""
    import multiprocessing

    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip("no %s here" % start_method)
    with SpanRecorder(random_state=False) as recorder:
        with multiprocessing.get_context(start_method).Pool(1) as pool:
            pid = pool.apply(pool_targets.worker_pid)  # the worker is past its start
            pool.apply_async(pool_targets.kill_self)
            assert eventually(lambda: not _alive(pid))
        worker = recorder.process(pid)
        assert worker.run.attributes.get("mp.span.synthesized") is True, dict(worker.run.attributes)
        assert "mp.state.diverged" in worker.run.attributes
        recorder.assert_args_unchanged(pid)
        # Only the killed worker's lines: the worker its pool starts in its place may be terminated by the
        # pool's exit while it starts, before it reports, and is rightly "not known".
        assert not unreported(_lines_of(recorder.tree(), pid))


def unreported(lines):
    """The tree's lines that say a child did not report something (not those of module state with nothing to
    compare it with: the test runner imported its modules before the test installed mptrace)."""
    return [line for line in lines if "not known" in line and "nothing to compare it with" not in line]


def _lines_of(tree, pid):
    """The tree's line for the process ``pid`` and the lines under it (indented deeper)."""
    def depth(line):
        return next((i for i, char in enumerate(line) if char.isalnum()), len(line))

    start = next(i for i, line in enumerate(tree) if "pid %d " % pid in line)
    under = [tree[start]]
    for line in tree[start + 1:]:
        if depth(line) <= depth(tree[start]):
            break
        under.append(line)
    return under


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_compare_says_not_known_for_a_child_that_sent_no_span():
    """A child killed before it sent any span compared nothing that reached the trace: "-" would read as
    "nothing differs" there."""
    program = os.path.join(ROOT, "tests", "programs", "dies_before_any_span.py")
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", program, env={"PYTHONPATH": ROOT})
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│")}
    methods = [cell.strip() for cell in next(line for line in out.splitlines() if line.startswith("┃")).split("┃")[2:-1]]
    assert methods == ["fork", "spawn"], out
    for row in ("arguments changed", "state diverged", "environment", "random state shared"):
        assert rows[row] == ["-", "not known (the child sent no span)"], (row, out)


SIBLING_PROGRAM = os.path.join(ROOT, "tests", "programs", "sibling_of_one_that_ends_before_reporting.py")


def test_compare_says_a_siblings_sharing_with_a_child_that_did_not_report_is_not_known():
    """Both children hold the same seeded module-level generator; the reporter dies before it reports its
    state. The sibling's row must not read "-" (shares nothing): with the reporter, it is not known."""
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", SIBLING_PROGRAM,
                                     env={"PYTHONPATH": ROOT})
    assert code == 0, err
    tables = {}
    for line in out.splitlines():
        if line.startswith(("sibling ", "reporter ")):
            child = tables.setdefault(line.split()[0], {})
        elif line.startswith("│") and line.split("│")[1].strip():
            child[line.split("│")[1].strip()] = [cell.strip() for cell in line.split("│")[2:-1]]
    # The cells wrap: their first lines are enough.
    assert [cell[:len("not known with reporter")] for cell in tables["sibling"]["random state shared"]] == [
        "not known with reporter"] * 2, out
    assert tables["reporter"]["random state shared"] == ["not known (ended before reporting)"] * 2, out


def test_recorder_cannot_tell_a_siblings_independence_from_a_child_that_did_not_report(context, targets):
    with SpanRecorder() as recorder:
        sibling = context.Process(target=targets.target, args=(None,), name="sibling")
        sibling.start()
        sibling.join()
        start_one_that_ends_early(context, targets)  # "reporter", started after the sibling's fork
        with pytest.raises(AssertionError, match="cannot tell whether sibling's random generators are independent: "
                                                 "reporter ran without reporting"):
            recorder.assert_random_independent("sibling")
