"""Grandchildren, user spans and resources: one trace for the whole tree."""

import os

import pytest

from tests import targets
from tests.conftest import START_METHODS
from tests.programs import TEST_RESOURCE
from tests.subprocesses import ROOT
from tests.spans import assert_no_orphans, assert_one_trace, named, one, parent_of, pid_of, process_span_names


@pytest.mark.parametrize("grandchild_method", START_METHODS)
def test_grandchildren_join_the_trace(traced, context, start_method, grandchild_method):
    if start_method == "fork" and grandchild_method == "forkserver":
        pytest.skip("CPython: a fork child cannot use a forkserver its parent started; "
                    "see test_fork_child_starting_a_forkserver_grandchild")
    with traced.tracer.start_as_current_span("caller"):
        process = context.Process(target=targets.start_grandchild, args=(grandchild_method,))
        process.start()
        process.join(60)
    assert process.exitcode == 0
    spans = traced.spans()
    assert_no_orphans(spans)
    assert_one_trace(spans)
    launches = named(spans, "mp.process")
    runs = named(spans, "mp.process.run")
    assert len(launches) == 2 and len(runs) == 2
    child_run = one(spans, "mp.process.run", **{"mp.start_method": start_method, "mp.parent.pid": os.getpid()}) \
        if start_method != grandchild_method else [r for r in runs if pid_of(r) == process.pid][0]
    child_work = one(spans, "child-work")
    grandchild_launch = one(spans, "mp.process", **{"mp.start_method": grandchild_method, "mp.exitcode": 0}) \
        if start_method != grandchild_method else [s for s in launches if pid_of(s) == process.pid][0]
    grandchild_run = [r for r in runs if r is not child_run][0]
    grandchild_work = one(spans, "grandchild-work")
    # caller -> mp.process -> run(child) -> child-work -> mp.process -> run(grandchild) -> grandchild-work
    assert parent_of(spans, child_work) is child_run
    assert parent_of(spans, grandchild_launch) is child_work
    assert parent_of(spans, grandchild_run) is grandchild_launch
    assert parent_of(spans, grandchild_work) is grandchild_run
    assert grandchild_run.attributes["mp.start_method"] == grandchild_method
    assert grandchild_run.attributes["mp.parent.pid"] == process.pid
    assert pid_of(grandchild_launch) == process.pid
    grandchild_pid = grandchild_launch.attributes["mp.child.pid"]
    assert pid_of(grandchild_run) == pid_of(grandchild_work) == grandchild_pid
    assert len({pid_of(child_run), grandchild_pid, os.getpid()}) == 3


def test_each_process_has_its_own_resource(traced, context):
    processes = [context.Process(target=targets.succeed) for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(30)
    spans = traced.spans()
    runs = named(spans, "mp.process.run")
    assert sorted(pid_of(r) for r in runs) == sorted(p.pid for p in processes)
    root_resource = dict(traced.provider.resource.attributes)
    for run in runs:
        attributes = dict(run.resource.attributes)
        assert attributes["process.parent_pid"] == os.getpid() or run.attributes["mp.start_method"] == "forkserver"
        assert attributes["service.name"] == root_resource["service.name"]
        assert "process.creation.time" in attributes
        assert {k: v for k, v in attributes.items() if not k.startswith("process.")} == {
            k: v for k, v in root_resource.items() if not k.startswith("process.")}


def test_spans_nest_under_the_span_current_at_start(traced, context):
    with traced.tracer.start_as_current_span("first"):
        a = context.Process(target=targets.succeed)
        a.start()
    with traced.tracer.start_as_current_span("second"):
        b = context.Process(target=targets.succeed)
        b.start()
    a.join(30)
    b.join(30)
    spans = traced.spans()
    by_pid = {s.attributes["mp.child.pid"]: s for s in named(spans, "mp.process")}
    assert parent_of(spans, by_pid[a.pid]).name == "first"
    assert parent_of(spans, by_pid[b.pid]).name == "second"


def test_unsampled_trace_records_nothing_in_children(context):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    import mptrace

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF, resource=TEST_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mptrace.install(tracer_provider=provider)
    try:
        process = context.Process(target=targets.succeed)
        process.start()
        process.join(30)
        assert process.exitcode == 0
        assert mptrace.flush()
        assert exporter.get_finished_spans() == ()
    finally:
        mptrace.uninstall()


@pytest.mark.skipif("forkserver" not in START_METHODS, reason="no forkserver on this platform")
def test_fork_child_starting_a_forkserver_grandchild():
    """In a fresh interpreter: the parent never started a forkserver itself."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tests.programs.tree", "fork", "forkserver"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    tree = json.loads(result.stdout)
    assert tree["exitcode"] == 0
    spans = tree["spans"]
    names = process_span_names(s["name"] for s in spans)
    assert names == sorted(["mp.process", "mp.process.run", "child-work"] * 1 + ["mp.process", "mp.process.run",
                                                                               "grandchild-work"])
    ids = {s["span_id"] for s in spans}
    assert all(s["parent"] in ids for s in spans if s["parent"] is not None)
    assert len({s["trace_id"] for s in spans}) == 1
    assert len({s["pid"] for s in spans if s["name"] == "mp.process.run"}) == 2
