"""Spans from real processes written as Jaeger JSON, and read back."""

import copy
import json
import math
import multiprocessing
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, StatusCode

from mptrace import _jaeger_json
from tests import targets
from tests.conftest import START_METHODS, traced_with
from tests.programs import TEST_RESOURCE, in_memory_pipeline
from tests.spans import named, one, pid_of

# Tests where the start method does not matter run under the fastest one.
ONE_METHOD = multiprocessing.get_context(START_METHODS[0])
SPAN_BYTES = 64 * 1024
BIG = b"x" * (3 * SPAN_BYTES)
# What Jaeger UI reads of every span (jaeger-ui transform-trace-data, model/json Span).
SPAN_FIELDS = {"traceID", "spanID", "operationName", "references", "startTime", "duration", "tags", "logs",
               "processID"}


def run_family(traced, context):
    """Spans of a parent span with an event, a child that succeeds and one that fails."""
    with traced.tracer.start_as_current_span("parent", kind=SpanKind.PRODUCER) as parent:
        parent.set_attribute("work.items", ["a", "b"])
        parent.set_attribute("work.sizes", [1, 2, 3])
        parent.add_event("started", {"children": 2, "ratio": 0.5, "names": ("x", "y")})
        children = [context.Process(target=targets.succeed), context.Process(target=targets.raise_error)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        parent.set_status(StatusCode.OK)
    assert [child.exitcode for child in children] == [0, 1]
    return traced.spans()


def written_and_read(spans, tmp_path):
    """The document ``write`` made for ``spans``, as JSON loads it."""
    path = str(tmp_path / "trace.json")
    assert _jaeger_json.write(spans, path) == path
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def expected(span):
    """What ``parse`` should give back for ``span``: everything, at microsecond precision."""
    scope = span.instrumentation_scope
    return _jaeger_json.ParsedSpan(
        trace_id=span.context.trace_id,
        span_id=span.context.span_id,
        parent_span_id=span.parent.span_id if span.parent is not None else None,
        name=span.name,
        kind=span.kind.name,
        start_time_ns=span.start_time // 1000 * 1000,
        end_time_ns=span.end_time // 1000 * 1000,
        attributes=dict(span.attributes),
        resource=dict(span.resource.attributes),
        status_code=span.status.status_code.name,
        status_description=span.status.description,
        events=[(e.name, e.timestamp // 1000 * 1000, dict(e.attributes)) for e in span.events],
        links=[(link.context.trace_id, link.context.span_id) for link in span.links],
        scope_name=scope.name or None,
        scope_version=scope.version or None,
    )


def all_spans(document):
    return [span for trace in document["data"] for span in trace["spans"]]


def tags_of(jaeger_span):
    return {tag["key"]: tag for tag in jaeger_span["tags"]}


def test_spans_of_every_process_survive_a_round_trip(traced, context, tmp_path):
    spans = run_family(traced, context)
    document = written_and_read(spans, tmp_path)
    assert os.listdir(str(tmp_path)) == ["trace.json"], "write() left a temporary file behind"
    parsed = {span.span_id: span for span in _jaeger_json.parse(document)}
    assert len(parsed) == len(spans)
    for span in spans:
        assert parsed[span.context.span_id] == expected(span)
    # The cases that matter were there to survive: three processes, errors, lists.
    assert len({pid_of(span) for span in spans}) == 3
    assert {span.status.status_code for span in spans} >= {StatusCode.OK, StatusCode.ERROR, StatusCode.UNSET}
    assert one(spans, "parent").attributes["work.items"] == ("a", "b")
    assert all(isinstance(run.attributes["mp.state.diverged"], tuple) for run in named(spans, "mp.process.run"))


def test_each_os_process_is_one_jaeger_process(traced, tmp_path):
    spans = run_family(traced, ONE_METHOD)
    [trace] = written_and_read(spans, tmp_path)["data"]
    pids = {pid_of(span) for span in spans}
    assert len(trace["processes"]) == len(pids) == 3
    assert {process["serviceName"] for process in trace["processes"].values()} == {
        TEST_RESOURCE.attributes["service.name"]}
    by_id = {span.context.span_id: span for span in spans}
    for jaeger_span in trace["spans"]:
        process = trace["processes"][jaeger_span["processID"]]
        process_tags = {tag["key"]: tag["value"] for tag in process["tags"]}
        assert process_tags.get("process.pid") == pid_of(by_id[int(jaeger_span["spanID"], 16)])


def test_the_document_has_the_shape_jaeger_ui_reads(traced, tmp_path):
    spans = run_family(traced, ONE_METHOD)
    document = written_and_read(spans, tmp_path)
    assert document["total"] == document["limit"] == document["offset"] == 0 and document["errors"] is None
    [trace] = document["data"]
    assert re.fullmatch("[0-9a-f]{32}", trace["traceID"])
    for span in trace["spans"]:
        assert SPAN_FIELDS <= span.keys()
        assert span["traceID"] == trace["traceID"]
        assert re.fullmatch("[0-9a-f]{16}", span["spanID"])
        assert isinstance(span["operationName"], str)
        assert type(span["startTime"]) is int and type(span["duration"]) is int and span["duration"] >= 0
        assert span["processID"] in trace["processes"]
        for reference in span["references"]:
            assert reference["refType"] in ("CHILD_OF", "FOLLOWS_FROM")
            assert re.fullmatch("[0-9a-f]{32}", reference["traceID"]) and re.fullmatch("[0-9a-f]{16}",
                                                                                       reference["spanID"])
        for tag in span["tags"] + [field for log in span["logs"] for field in log["fields"]]:
            assert tag["type"] in ("string", "bool", "int64", "float64") and isinstance(tag["key"], str)
        assert all(type(log["timestamp"]) is int for log in span["logs"])
    starts = [span["startTime"] for span in trace["spans"]]
    assert starts == sorted(starts)


def test_the_document_uses_the_collectors_jaeger_conventions(traced, tmp_path):
    spans = run_family(traced, ONE_METHOD)
    document = written_and_read(spans, tmp_path)
    failed_run = one(spans, "mp.process.run", **{"mp.exitcode": 1})
    [jaeger_run] = [s for s in all_spans(document) if int(s["spanID"], 16) == failed_run.context.span_id]
    tags = tags_of(jaeger_run)
    assert tags["error"] == {"key": "error", "type": "bool", "value": True}
    assert tags["otel.status_code"]["value"] == "ERROR"
    assert tags["otel.status_description"]["value"] == failed_run.status.description
    assert tags["span.kind"]["value"] == "server"
    assert tags["otel.scope.name"]["value"] == "mptrace"
    assert tags["mp.exitcode"] == {"key": "mp.exitcode", "type": "int64", "value": 1}
    diverged = tags["mp.state.diverged"]
    assert diverged["type"] == "string" and json.loads(diverged["value"]) == list(
        failed_run.attributes["mp.state.diverged"])
    exception_log = [log for log in jaeger_run["logs"] if log["fields"][0]["value"] == "exception"]
    assert exception_log and exception_log[0]["fields"][0]["key"] == "event"
    [parent_reference] = jaeger_run["references"]
    assert parent_reference["refType"] == "CHILD_OF"
    assert int(parent_reference["spanID"], 16) == failed_run.parent.span_id


@pytest.fixture
def traced_big_pickles():
    """Installed so that a big message gets spans that link its sender and receiver."""
    yield from traced_with(pickle_span_bytes=SPAN_BYTES, pickle_span_seconds=10.0)


def test_links_become_follows_from_references(traced_big_pickles, tmp_path):
    with traced_big_pickles.tracer.start_as_current_span("receive"):
        reader, writer = ONE_METHOD.Pipe(duplex=False)
        child = ONE_METHOD.Process(target=targets.send_over, args=(writer, [BIG]))
        child.start()
        writer.close()
        assert reader.recv() == BIG
        child.join(60)
    spans = traced_big_pickles.spans()
    receiving = one(spans, "mp.unpickle", **{"mp.pickle.channel": "connection"})
    sending = one(spans, "mp.pickle", **{"mp.pickle.channel": "connection"})
    [link] = receiving.links
    assert link.context.span_id == sending.context.span_id and pid_of(sending) != pid_of(receiving)

    document = written_and_read(spans, tmp_path)
    [jaeger_receiving] = [s for s in all_spans(document) if s["operationName"] == "mp.unpickle"]
    assert jaeger_receiving["references"] == [
        {"refType": "CHILD_OF", "traceID": "%032x" % receiving.context.trace_id,
         "spanID": "%016x" % receiving.parent.span_id},
        {"refType": "FOLLOWS_FROM", "traceID": "%032x" % sending.context.trace_id,
         "spanID": "%016x" % sending.context.span_id},
    ]
    [parsed] = [s for s in _jaeger_json.parse(document) if s.span_id == receiving.context.span_id]
    assert parsed.links == [(sending.context.trace_id, sending.context.span_id)]
    assert parsed.parent_span_id == receiving.parent.span_id


# -- documents without processes: a plain SDK pipeline ------------------------

PROVIDER, EXPORTER = in_memory_pipeline()
TRACER = PROVIDER.get_tracer("tests.jaeger_json", "1.0")


def plain_spans(**attributes):
    """Spans of a plain SDK provider (real spans, no processes): a parent and a linked child,
    and a span in a trace of its own linked to the parent."""
    EXPORTER.clear()
    with TRACER.start_as_current_span("outer") as outer:
        outer.add_event("note", {"n": 1})
        with TRACER.start_as_current_span("inner", attributes=attributes, links=[Link(outer.get_span_context())]):
            pass
    # A root of its own trace, linked to the first: a link, never a parent.
    with TRACER.start_as_current_span("detached", context=Context(), links=[Link(outer.get_span_context())]):
        pass
    return list(EXPORTER.get_finished_spans())


@pytest.fixture
def document():
    return json.loads(json.dumps(_jaeger_json.to_document(plain_spans(items=["a"])), allow_nan=False))


def first_span(document):
    return document["data"][0]["spans"][0]


def inner_span(document):
    return document["data"][0]["spans"][1]


def attribute_tag(document):
    """The inner span's first tag: its "items" attribute."""
    return inner_span(document)["tags"][0]


def replace(mapping, **fields):
    mapping.update(fields)


def drop(mapping, key):
    del mapping[key]


# (spoil the document in place, or return a new one; what the error must say)
BAD_DOCUMENTS = [
    (lambda d: [], "the document is not a JSON object: []"),
    (lambda d: {"traces": d["data"]}, "the document: data is missing"),
    (lambda d: replace(d["data"][0], traceID="12"), 'trace 0: traceID "12" is not 16 or 32 hex digits'),
    (lambda d: replace(first_span(d), spanID="xyz"), 'span 0 of trace {trace}: spanID "xyz" is not 16 hex digits'),
    (lambda d: replace(first_span(d), spanID="0x" + "1" * 14), 'spanID "0x11111111111111" is not 16 hex digits'),
    (lambda d: replace(first_span(d), traceID="ab" * 16), 'traceID "{ab}" is not its trace\'s'),
    (lambda d: drop(first_span(d), "operationName"), "span 0 of trace {trace}: operationName is missing"),
    (lambda d: replace(first_span(d), startTime="17"), 'startTime "17" is not a whole number of microseconds'),
    (lambda d: replace(first_span(d), duration=-5), "duration -5 is not a whole number of microseconds"),
    (lambda d: replace(first_span(d), duration=1.5), "duration 1.5 is not a whole number of microseconds"),
    (lambda d: replace(first_span(d), processID="p9"), 'processID "p9" is not in the trace\'s processes'),
    (lambda d: replace(inner_span(d)["references"][1], refType="PARENT_OF"),
     'reference 1 of span 1 of trace {trace}: refType "PARENT_OF" is not CHILD_OF or FOLLOWS_FROM'),
    (lambda d: replace(attribute_tag(d), type="array"), 'has type "array", not one of string, bool, int64'),
    (lambda d: replace(attribute_tag(d), type="int64", value="abc"), 'value "abc" is not int64'),
    (lambda d: replace(attribute_tag(d), type="bool", value="true"), 'value "true" is not bool'),
    (lambda d: replace(attribute_tag(d), mptraceArray=True, value="{}"), 'but "{{}}" is not a JSON list'),
    (lambda d: drop(first_span(d)["logs"][0], "timestamp"), "log 0 of span 0 of trace {trace}: timestamp is missing"),
    (lambda d: first_span(d)["tags"].append({"key": "span.kind", "type": "string", "value": "sideways"}),
     'span.kind "sideways" is not one of internal, server'),
    (lambda d: drop(d["data"][0]["processes"]["p1"], "serviceName"),
     "process p1 of trace {trace}: serviceName is missing"),
]


@pytest.mark.parametrize("spoil, message", BAD_DOCUMENTS, ids=[message for _, message in BAD_DOCUMENTS])
def test_bad_documents_are_refused_naming_the_bad_value(document, spoil, message):
    bad = copy.deepcopy(document)
    replaced = spoil(bad)
    if replaced is not None:
        bad = replaced
    message = message.format(trace=document["data"][0]["traceID"], ab="ab" * 16)
    with pytest.raises(ValueError, match=re.escape(message)):
        _jaeger_json.parse(bad)


def test_the_unspoiled_document_parses(document):
    """The baseline the bad documents spoil: it is valid, so each refusal is the spoiling's doing."""
    outer, inner, detached = _jaeger_json.parse(document)
    assert (outer.name, inner.name, detached.name) == ("outer", "inner", "detached")
    assert inner.attributes == {"items": ("a",)} and inner.links == [(outer.trace_id, outer.span_id)]
    assert detached.parent_span_id is None and detached.links == [(outer.trace_id, outer.span_id)]
    assert inner.scope_version == "1.0" and outer.events[0][0] == "note"


def test_only_a_child_of_reference_makes_a_parent(document):
    """Jaeger UI draws a lone same-trace FOLLOWS_FROM as the parent; to parse() it stays a link."""
    drop(inner_span(document)["references"], 0)
    outer, inner, _ = _jaeger_json.parse(document)
    assert inner.parent_span_id is None and inner.links == [(outer.trace_id, outer.span_id)]


# -- attribute values: every kind the SDK accepts ----------------------------

any_text = st.text(alphabet=st.characters(exclude_categories=()))  # lone surrogates too: os.fsdecode makes them
int64 = st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)
any_float = st.floats()  # NaN and infinities too
scalars = st.one_of(any_text, st.booleans(), int64, any_float)
homogeneous_lists = st.one_of(*(st.lists(values, max_size=4) for values in (any_text, st.booleans(), int64, any_float)))
attribute_key = any_text.filter(lambda key: key and key not in _jaeger_json.RESERVED_TAGS)


def integers_in(value):
    """Every integer anywhere in a JSON value (floats are doubles in JavaScript too)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [number for item in value for number in integers_in(item)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def same(a, b):
    """Equal, with NaN equal to NaN and lists compared to the tuples the SDK stores."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(attribute_key, st.one_of(scalars, homogeneous_lists), max_size=4))
def test_attribute_values_round_trip(attributes):
    spans = plain_spans(**attributes)
    text = json.dumps(_jaeger_json.to_document(spans), allow_nan=False)  # what JSON.parse accepts
    # ... and reads exactly: a JavaScript number holds integers up to 2**53 - 1.
    assert all(abs(number) < 2 ** 53 for number in integers_in(json.loads(text)))
    [inner] = [s for s in _jaeger_json.parse(json.loads(text)) if s.name == "inner"]
    original = dict(one(spans, "inner").attributes)
    assert inner.attributes.keys() == original.keys()
    for key, value in original.items():
        assert same(inner.attributes[key], value), (key, value, inner.attributes[key])
