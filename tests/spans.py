"""Small helpers to look at finished spans in assertions."""

from opentelemetry.trace import StatusCode


def named(spans, name):
    return [s for s in spans if s.name == name]


def one(spans, name, **attributes):
    found = [s for s in named(spans, name) if all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, "expected one %r span with %r, found %d among %s" % (
        name, attributes, len(found), describe(spans))
    return found[0]


def parent_of(spans, span):
    if span.parent is None:
        return None
    matches = [s for s in spans if s.context.span_id == span.parent.span_id]
    assert matches, "parent of %s is missing from %s" % (span.name, describe(spans))
    return matches[0]


def assert_no_orphans(spans):
    ids = {s.context.span_id for s in spans}
    orphans = [s for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert not orphans, "spans whose parent never arrived: %s\nall: %s" % (describe(orphans), describe(spans))


def assert_one_trace(spans):
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1, "spans are spread over %d traces: %s" % (len(trace_ids), describe(spans))


def pid_of(span):
    return span.resource.attributes.get("process.pid")


def is_error(span):
    return span.status.status_code is StatusCode.ERROR


def describe(spans):
    return "\n  " + "\n  ".join(
        "%s (pid %s, %s) %s" % (s.name, pid_of(s), s.status.status_code.name, dict(s.attributes)) for s in spans)


DETAIL_SPANS = ("mp.pickle", "mp.unpickle", "mp.import")  # depend on the start method and on sizes


def process_span_names(spans):
    """Sorted span names, leaving out the detail spans that depend on the start method."""
    names = (s.name if hasattr(s, "name") else s for s in spans)
    return sorted(n for n in names if n not in DETAIL_SPANS)
