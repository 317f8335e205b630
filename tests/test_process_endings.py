"""However a child ends, its spans reach the root, closed and parented."""

import sys

import pytest

from tests import targets
from tests.spans import assert_no_orphans, assert_one_trace, is_error, one, parent_of, pid_of


def run_child(traced, context, target, args=(), after_start=None):
    with traced.tracer.start_as_current_span("caller"):
        process = context.Process(target=target, args=args, name="child-under-test")
        process.start()
        if after_start:
            after_start(process)
        process.join(30)
    assert process.exitcode is not None, "child did not finish"
    return process


def check_tree(traced, process, start_method, work_parent="mp.process.run"):
    """The spans every ending shares: caller -> mp.process -> mp.process.run -> user-work."""
    spans = traced.spans()
    assert_no_orphans(spans)
    assert_one_trace(spans)
    launch = one(spans, "mp.process")
    run = one(spans, "mp.process.run")
    work = one(spans, "user-work")
    assert parent_of(spans, launch).name == "caller"
    assert parent_of(spans, run) is launch
    assert parent_of(spans, work).name == work_parent
    assert launch.attributes["mp.start_method"] == start_method
    assert run.attributes["mp.start_method"] == start_method
    assert launch.attributes["mp.process.name"] == "child-under-test"
    assert run.attributes["mp.process.name"] == "child-under-test"
    assert launch.attributes["mp.child.pid"] == process.pid
    assert launch.attributes["mp.args.pickled"] is (start_method != "fork")
    assert run.attributes["mp.state.inherited"] is (start_method == "fork")
    assert launch.attributes["mp.exitcode"] == process.exitcode
    assert launch.attributes["process.exit.code"] == process.exitcode
    assert pid_of(run) == process.pid and pid_of(work) == process.pid
    assert launch.kind.name == "CLIENT" and run.kind.name == "SERVER"
    return spans, launch, run


def test_normal_return(traced, context, start_method):
    process = run_child(traced, context, targets.succeed)
    spans, launch, run = check_tree(traced, process, start_method)
    assert process.exitcode == 0
    assert not is_error(launch) and not is_error(run)
    assert "mp.exit.signal" not in launch.attributes
    assert launch.attributes["code.function.name"] == "tests.targets.succeed"


def test_exception_in_run(traced, context, start_method):
    process = run_child(traced, context, targets.raise_error)
    spans, launch, run = check_tree(traced, process, start_method)
    assert process.exitcode == 1
    assert is_error(launch) and is_error(run)
    assert "ValueError: boom in child" in run.status.description
    [event] = [e for e in run.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom in child"
    assert "raise_error" in event.attributes["exception.stacktrace"]
    assert run.attributes["error.type"] == "ValueError"


@pytest.mark.parametrize("code", [0, 3])
def test_sys_exit(traced, context, start_method, code):
    process = run_child(traced, context, targets.exit_with, (code,))
    spans, launch, run = check_tree(traced, process, start_method)
    assert process.exitcode == code
    assert is_error(launch) is (code != 0)
    assert is_error(run) is (code != 0)
    assert run.attributes["mp.exitcode"] == code
    assert not any(e.name == "exception" for e in run.events), "sys.exit is not an exception event"


def test_sys_exit_with_a_message_says_why(traced, context, start_method):
    """sys.exit("...") ends the child with exit code 1 and _bootstrap only prints the message: the run span
    says why (error.type, its status and an exception event), not just "exit code 1". On 3.13 and later
    _bootstrap calls nothing while that SystemExit is live (it runs the exit handlers after it returns):
    there the span says "exit code 1", as without mptrace's hook."""
    process = run_child(traced, context, targets.exit_with, ("config missing",))
    spans, launch, run = check_tree(traced, process, start_method)
    assert process.exitcode == 1
    assert is_error(launch) and is_error(run)
    if sys.version_info >= (3, 13):
        assert run.status.description == "exit code 1" and run.attributes["error.type"] == "1"
        return
    assert run.attributes["mp.exitcode"] == 1 and run.attributes["error.type"] == "SystemExit"
    assert run.status.description == "SystemExit: config missing"
    [event] = [e for e in run.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "SystemExit"
    assert event.attributes["exception.message"] == "config missing"
    assert "exit_with" in event.attributes["exception.stacktrace"]


def test_os_exit_inside_target(traced, context, start_method):
    process = run_child(traced, context, targets.os_exit_with, (7,))
    spans, launch, run = check_tree(traced, process, start_method, work_parent="outer-never-ended")
    assert process.exitcode == 7
    # The child never ended its run span or the span around os._exit: the
    # collector ended both on its behalf, so user-work keeps its parents.
    assert run.attributes["mp.span.synthesized"] is True
    assert run.attributes["mp.exitcode"] == 7
    assert is_error(run) and "code 7" in run.status.description
    outer = one(spans, "outer-never-ended")
    assert outer.attributes["mp.span.synthesized"] is True and is_error(outer)
    assert parent_of(spans, outer) is run


@pytest.mark.parametrize("how, signal_name, exitcode", [("terminate", "SIGTERM", -15), ("kill", "SIGKILL", -9)])
def test_killed_by_signal(traced, context, start_method, how, signal_name, exitcode):
    ready = context.Event()

    def stop_when_ready(process):
        assert ready.wait(30), "child never got ready"
        getattr(process, how)()

    process = run_child(traced, context, targets.signal_ready_then_sleep, (ready,), stop_when_ready)
    spans, launch, run = check_tree(traced, process, start_method)
    assert process.exitcode == exitcode
    assert launch.attributes["mp.exit.signal"] == signal_name
    assert launch.attributes["error.type"] == signal_name
    assert is_error(launch)
    assert run.attributes["mp.exit.signal"] == signal_name
    assert run.attributes["mp.span.synthesized"] is True
    assert is_error(run) and signal_name in run.status.description
    # The span the child ended just before it was killed survived the kill.
    assert one(spans, "user-work").end_time is not None


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_a_child_killed_in_its_target_keeps_what_it_compared(traced, pickled_context, how):
    """Compared when run() began, written before the target runs: a child killed later (terminate(), kill(),
    a crash, os._exit) still says what arrived changed, and its random generators' states, not "not known"."""
    from mptrace import semconv

    ready = pickled_context.Event()
    process = pickled_context.Process(target=targets.signal_ready_then_sleep_with, args=(ready, targets.Dropping()))
    process.start()
    assert ready.wait(30)
    getattr(process, how)()
    process.join(30)
    assert process.exitcode in (-15, -9)
    run = one(traced.spans(), "mp.process.run")
    assert run.attributes[semconv.SPAN_SYNTHESIZED] is True
    assert "args[1]" in run.attributes[semconv.ARGS_CHANGED]
    assert semconv.RANDOM_STATES in run.attributes
    assert semconv.STATE_COMPARED in run.attributes
    # What changed, path by path, too: the events that say it were written with the START.
    [changed] = [event for event in run.events if event.name == semconv.EVENT_ARG_CHANGED]
    assert changed.attributes[semconv.ARG] == "args[1]"
    assert changed.attributes[semconv.ARG_DIFFERENCES]


@pytest.mark.parametrize("how, signal_name, who", [("terminate", "SIGTERM", "terminated by its parent"),
                                                  ("kill", "SIGKILL", "killed by its parent")])
def test_a_child_its_parent_stopped_says_so(traced, context, how, signal_name, who):
    """Still an error (the child was killed in its work), and mp.process says who sent the signal."""
    from mptrace import _tree

    ready = context.Event()
    run_child(traced, context, targets.signal_ready_then_sleep, (ready,),
              lambda process: ready.wait(30) and getattr(process, how)())
    spans = traced.spans()
    launch = one(spans, "mp.process")
    assert launch.attributes["mp.exit.signal"] == signal_name
    assert launch.attributes["mp.process.end_reason"] == who
    assert is_error(launch) and who in launch.status.description
    assert any("%s (%s)" % (signal_name, who) in line for line in _tree.summary_lines(spans))


def test_a_child_that_exits_before_the_signal_is_not_said_to_be_stopped(traced, context):
    process = run_child(traced, context, targets.succeed)
    process.terminate()  # too late: it exited already (multiprocessing sends nothing then)
    launch = one(traced.spans(), "mp.process")
    assert launch.attributes["mp.exitcode"] == 0
    assert "mp.process.end_reason" not in launch.attributes
