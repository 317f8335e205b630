"""Many children at once, each with many spans: nothing lost, nothing mixed up."""

from tests import targets
from tests.spans import assert_no_orphans, assert_one_trace, named, parent_of, pid_of

CHILDREN = 6
SPANS_PER_CHILD = 40


def test_concurrent_children_lose_nothing(traced, context):
    with traced.tracer.start_as_current_span("caller"):
        processes = [context.Process(target=many_spans, args=(SPANS_PER_CHILD,)) for _ in range(CHILDREN)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(60)
    assert [p.exitcode for p in processes] == [0] * CHILDREN
    spans = traced.spans()
    assert_no_orphans(spans)
    assert_one_trace(spans)
    assert len(named(spans, "mp.process.run")) == CHILDREN
    work = named(spans, "work")
    assert len(work) == CHILDREN * SPANS_PER_CHILD
    for span in work:
        run = parent_of(spans, span)
        assert run.name == "mp.process.run" and pid_of(run) == pid_of(span)
    assert {pid_of(s) for s in work} == {p.pid for p in processes}


def many_spans(count):
    for i in range(count):
        with targets.tracer.start_as_current_span("work") as span:
            span.set_attribute("i", i)
