"""A long life of children leaves nothing behind in the root once each is reaped and collected.

What mptrace fills per child (the children whose exit is not seen yet, the
collector's open files, exits, lost markers and pending hand-overs) is empty
again, no spool file or note is left in the spool directory, and the root
holds no more descriptors than before. benchmarks/memory_children.py measures
the same over 10,000 children.
"""

import gc
import os
import signal
import time

import pytest

import mptrace
from mptrace import _bundle
from mptrace._state import state
from tests import targets

# Fork children are cheap: a few hundred; spawn and forkserver children each start an interpreter.
CHILDREN = {"fork": 300, "forkserver": 30, "spawn": 30}


def per_child_structures():
    """{name: size} of everything the root fills per child and empties when the child is done."""
    collector = state.root.collector
    return {
        "children not seen to exit": len(state.children),
        "spool files being read": len(collector._files),
        "exits waiting for their file": len(collector._exited),
        "lost markers": len(collector._lost_marked),
        "pending hand-overs": len(collector._pending),
        # The start-up bundle stays: one file per interpreter in the tree, whatever the number of children.
        "entries in the spool directory": len([name for name in os.listdir(state.tree["dir"])
                                               if not name.endswith(_bundle.SUFFIX)]),
    }


EMPTY = dict.fromkeys(["children not seen to exit", "spool files being read", "exits waiting for their file",
                       "lost markers", "pending hand-overs", "entries in the spool directory"], 0)


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def start_all(context, target, count, alive):
    """``count`` children of ``target``, ``alive`` at a time, each joined; returns their exit codes."""
    running, codes = [], []
    for _ in range(count):
        if len(running) >= alive:
            codes.append(join(running.pop(0)))
        process = context.Process(target=target)
        process.start()
        running.append(process)
    codes.extend(join(process) for process in running)
    return codes


def join(process):
    process.join(60)
    return process.exitcode


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_reaped_children_leave_nothing_in_the_root(traced, context, start_method):
    count = CHILDREN[start_method]
    start_all(context, targets.succeed, 1, 1)  # the fork server (and its descriptors) starts here
    assert mptrace.flush()
    gc.collect()  # an earlier test's unreachable Popens close their pipes now, not while this one counts
    fds_before = open_fds()
    codes = start_all(context, targets.succeed, count, 1) + start_all(context, targets.succeed, count, 4)
    assert codes == [0] * (2 * count)
    assert mptrace.flush()
    assert per_child_structures() == EMPTY
    assert open_fds() == fds_before
    runs = [s for s in traced.exporter.get_finished_spans() if s.name == "mp.process.run"]
    assert len(runs) == 2 * count + 1


@pytest.fixture
def unsampled():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from tests.programs import TEST_RESOURCE

    mptrace.install(tracer_provider=TracerProvider(sampler=ALWAYS_OFF, resource=TEST_RESOURCE))
    yield
    mptrace.uninstall()


def test_children_of_an_unsampled_trace_leave_nothing_in_the_root(unsampled, context, start_method):
    """They write no spool file, so nothing ever collects them: their exits must not wait for one."""
    count = CHILDREN[start_method]
    codes = start_all(context, targets.succeed, count, 1) + start_all(context, targets.succeed, count, 4)
    assert codes == [0] * (2 * count)
    assert mptrace.flush()
    assert per_child_structures() == EMPTY


def test_children_killed_at_once_leave_nothing_in_the_root(traced, context):
    """Killed before they wrote anything (or just after): either way nothing of theirs stays."""
    processes = []
    for _ in range(20):
        process = context.Process(target=sleep_forever)
        process.start()
        os.kill(process.pid, signal.SIGKILL)
        processes.append(process)
    assert [join(process) for process in processes] == [-signal.SIGKILL] * 20
    assert mptrace.flush()
    assert per_child_structures() == EMPTY


def sleep_forever():
    time.sleep(600)
