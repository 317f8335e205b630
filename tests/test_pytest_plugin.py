"""The pytest plugin, tested the way users meet it: pytest runs in a subprocess (pytester)."""

import pytest

from mptrace.testing import start_methods

pytest_plugins = ["pytester"]

CHILDREN = '''
import multiprocessing


def work(config):
    return None


class Config:
    def __init__(self):
        self.token = "secret"
        self.retries = 3

    def __getstate__(self):
        state = dict(self.__dict__)
        state["retries"] = 0
        return state
'''


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--timeout", "60", *args, timeout=300)


def test_a_test_runs_once_per_start_method_and_asserts_on_its_children(pytester):
    pytester.makepyfile(test_children=CHILDREN + '''

def test_children(mptrace_spans, mptrace_context, mptrace_start_method):
    child = mptrace_context.Process(target=work, args=(Config(),))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert mptrace_spans.process().start_method == mptrace_start_method
    if mptrace_start_method == "fork":
        mptrace_spans.assert_not_pickled()
        mptrace_spans.assert_args_unchanged()
    else:
        mptrace_spans.assert_pickled()
        mptrace_spans.assert_hook_ran("Config.__getstate__")
        mptrace_spans.assert_arg_changed("args[0]")
    mptrace_spans.assert_no_errors()
''')
    result = run(pytester, "-v")
    result.assert_outcomes(passed=len(start_methods()))
    for method in start_methods():
        result.stdout.fnmatch_lines(["*test_children[[]%s[]] PASSED*" % method])


def test_a_failing_assertion_shows_the_process_tree(pytester):
    pytester.makepyfile(test_fails=CHILDREN + '''
import pytest


@pytest.mark.mptrace_start_methods("spawn")
def test_must_not_pickle(mptrace_spans, mptrace_context):
    child = mptrace_context.Process(target=work, args=(Config(),))
    child.start()
    child.join()
    mptrace_spans.assert_not_pickled()
''')
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: expected SpawnProcess-1's arguments not to be pickled, but spawn pickled them "
        "(hooks: test_fails.Config.__getstate__)*",
        "*process tree:*",
        "*SpawnProcess-1 * test_fails.work * spawn * pid *",
        "*args[[]0[]] arrived changed: args[[]0[]].retries: was 3, arrived 0*",
    ])
    output = result.stdout.str()
    assert "ReadableSpan" not in output and "<opentelemetry" not in output
    assert "mptrace/testing.py" not in output, "pytest showed mptrace's own frames"


def test_nothing_leaks_into_the_next_test_even_after_a_failure(pytester):
    pytester.makepyfile(test_isolation='''
import multiprocessing
import time

import pytest


def linger():
    time.sleep(1)


def test_first_fails_with_a_child_still_running(mptrace_spans):
    child = multiprocessing.get_context("spawn").Process(target=linger)
    child.start()
    raise RuntimeError("the test fails while its child runs")


def test_then_mptrace_is_gone():
    from multiprocessing.process import BaseProcess

    from mptrace._state import state

    assert state.role is None
    assert not hasattr(vars(BaseProcess)["start"], "__wrapped__"), "a patch outlived its test"


def test_and_a_new_recorder_starts_empty(mptrace_spans):
    time.sleep(1.5)  # the first test's child has exited by now
    assert mptrace_spans.spans == []


def test_clear_forgets(mptrace_spans):
    child = multiprocessing.get_context("fork").Process(target=linger)
    child.start()
    child.join()
    assert mptrace_spans.named("mp.process")
    mptrace_spans.clear()
    assert mptrace_spans.spans == []
''')
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_first_fails_with_a_child_still_running FAILED*",
                                 "*test_then_mptrace_is_gone PASSED*",
                                 "*test_and_a_new_recorder_starts_empty PASSED*"])


def test_the_marker_narrows_the_start_methods(pytester):
    pytester.makepyfile(test_marked='''
import pytest


@pytest.mark.mptrace_start_methods("spawn", "forkserver")
def test_fresh_interpreters_only(mptrace_start_method):
    assert mptrace_start_method in ("spawn", "forkserver")


@pytest.mark.mptrace_start_methods("teleport")
def test_unknown(mptrace_start_method):
    pass
''')
    result = run(pytester, "-v")
    assert "unknown start method 'teleport'" in result.stderr.str() + result.stdout.str()
    pytester.makepyfile(test_marked='''
import pytest


@pytest.mark.mptrace_start_methods("spawn", "forkserver")
def test_fresh_interpreters_only(mptrace_start_method):
    assert mptrace_start_method in ("spawn", "forkserver")
''')
    result = run(pytester, "-v")
    expected = [m for m in ("spawn", "forkserver") if m in start_methods()]
    result.assert_outcomes(passed=len(expected))
    assert "[fork]" not in result.stdout.str()


def test_parallel_workers_each_trace_their_own_tests(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_parallel=CHILDREN + '''
import pytest


@pytest.mark.parametrize("n", range(4))
def test_spawn_child(mptrace_spans, n):
    child = multiprocessing.get_context("spawn").Process(target=work, args=(Config(),))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert len(mptrace_spans.processes()) == 1
    mptrace_spans.assert_hook_ran("Config.__getstate__")
''')
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=4)


def test_without_pytest_the_recorder_is_a_context_manager(pytester):
    pytester.makepyfile(program='''
import multiprocessing

from mptrace.testing import SpanRecorder


def work():
    pass


if __name__ == "__main__":
    with SpanRecorder() as recorder:
        child = multiprocessing.get_context("spawn").Process(target=work)
        child.start()
        child.join()
        [process] = recorder.processes()
        print("child", process.name, process.start_method, process.exitcode, process.pickled)
        try:
            recorder.assert_state_diverged("program.nothing")
        except AssertionError as error:
            print("message", str(error).splitlines()[0])
''')
    result = pytester.run(__import__("sys").executable, "program.py", timeout=120)
    assert result.ret == 0, result.stderr.str()
    # the spawn child re-imported program.py without running its main block: no `recorder` there
    result.stdout.fnmatch_lines(["child SpawnProcess-1 spawn 0 True",
                                 "message expected SpawnProcess-1 to see a different program.nothing than its "
                                 "parent; diverged: __main__.recorder"])


def test_state_and_errors_across_the_process_tree(pytester):
    pytester.makepyfile(settings_module='''
DEBUG = False


def show():
    import sys

    sys.exit(0 if DEBUG else 7)


def start_grandchild(method):
    import multiprocessing

    grandchild = multiprocessing.get_context(method).Process(target=show, name="grandchild")
    grandchild.start()
    grandchild.join()
''')
    pytester.makepyfile(test_state='''
import pytest


def test_debug_reaches_the_children(mptrace_spans, mptrace_context, mptrace_start_method):
    import settings_module  # imported after install(): its import-time state is known

    settings_module.DEBUG = True
    child = mptrace_context.Process(target=settings_module.start_grandchild, args=(mptrace_start_method,),
                                    name="child")
    child.start()
    child.join()
    [child_process, grandchild] = mptrace_spans.processes()
    assert grandchild.parent is child_process and child_process.children == [grandchild]
    assert mptrace_spans.process("grandchild").start_method == mptrace_start_method
    if mptrace_start_method == "fork":
        mptrace_spans.assert_state_inherited("settings_module.DEBUG", process="child")
        mptrace_spans.assert_no_errors()
    else:
        mptrace_spans.assert_state_diverged("settings_module.DEBUG", process="child")
        assert grandchild.exitcode == 7
        with pytest.raises(AssertionError, match="expected no errors"):
            mptrace_spans.assert_no_errors()
        mptrace_spans.assert_state_inherited("settings_module.DEBUG", process="grandchild")


def test_which_process_must_be_said_when_there_are_several(mptrace_spans):
    import multiprocessing
    import settings_module

    for name in ("a", "b"):
        child = multiprocessing.get_context("fork").Process(target=settings_module.start_grandchild,
                                                            args=("fork",), name=name)
        child.start()
        child.join()
    with pytest.raises(AssertionError, match="expected one child process to assert on, found 4"):
        mptrace_spans.assert_not_pickled()
    with pytest.raises(AssertionError, match="expected one child process named 'c', found 0"):
        mptrace_spans.assert_not_pickled(process="c")
    mptrace_spans.assert_not_pickled(process="a")
''')
    result = run(pytester, "-v")
    result.assert_outcomes(passed=len(start_methods()) + 1)
