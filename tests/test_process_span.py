"""mp.process in the root: started as the SDK's tracer starts a span, handed to the processors at its end.

An SDK span's start and end wrote some 200 pages per child in a forking
parent (every one a copy-on-write fault); mp.process is a RootSpan instead
(see mptrace/_rootspan.py). These tests hold it to what the SDK's tracer
would have done: the provider's sampler, id generator and trace state, and
the caller's span as its parent, under every start method.
"""

import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, TraceState

import mptrace
from tests.programs import TEST_RESOURCE
from tests.spans import one, parent_of
from tests.targets import succeed


class Processor(SpanProcessor):
    def force_flush(self, timeout_millis=30000):
        return True  # the base class's answer (None) makes a provider's flush fail in SDKs before 1.4x


class SeenAtStart(Processor):
    def __init__(self):
        self.started = []

    def on_start(self, span, parent_context=None):
        self.started.append(span.name)


class Marking(Sampler):
    """Samples a span only under a parent, adding an attribute and a trace-state entry."""

    def __init__(self, decision=Decision.RECORD_AND_SAMPLE):
        self.decision = decision
        self.asked = []
        self.parents = []  # (name, the span id of the parent it was asked under)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        self.asked.append((name, kind))
        parent = trace.get_current_span(parent_context).get_span_context()
        self.parents.append((name, parent.span_id))
        if not parent.is_valid:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(self.decision, dict(attributes or {}, marked=name),
                              TraceState([("mark", "yes")]))

    def get_description(self):
        return "Marking"


class Counting(IdGenerator):
    def __init__(self):
        self.next = 0x1000

    def generate_span_id(self):
        self.next += 1
        return self.next

    def generate_trace_id(self):
        return 0xABC0000000000000000000000000DEF


@pytest.fixture
def installed():
    """install() on a provider whose pieces the tests choose; yields (provider, exporter, seen)."""
    made = []

    def install(**provider_options):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=TEST_RESOURCE, **provider_options)
        seen = SeenAtStart()
        provider.add_span_processor(seen)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider)
        made.append(provider)
        return provider, exporter, seen

    yield install
    mptrace.uninstall()
    for provider in made:
        provider.shutdown()


def _start_one(context, tracer):
    with tracer.start_as_current_span("caller"):
        process = context.Process(target=succeed)
        process.start()
        process.join(60)
    assert process.exitcode == 0
    assert mptrace.flush()


def test_mp_process_uses_the_providers_sampler_ids_and_trace_state(installed, context):
    sampler = Marking()
    provider, exporter, _ = installed(sampler=sampler, id_generator=Counting())
    _start_one(context, provider.get_tracer("tests"))
    spans = exporter.get_finished_spans()
    process = one(spans, "mp.process")
    caller = one(spans, "caller")
    assert ("mp.process", SpanKind.CLIENT) in sampler.asked
    assert parent_of(spans, process) is caller
    assert process.context.trace_id == 0xABC0000000000000000000000000DEF
    assert process.context.span_id > 0x1000, "not an id of the provider's id generator"
    assert process.kind is SpanKind.CLIENT
    assert process.attributes["marked"] == "mp.process", "the sampler's attributes are lost"
    assert process.context.trace_state.get("mark") == "yes", "the sampler's trace state is lost"
    assert process.instrumentation_scope.name == "mptrace"
    assert process.resource is provider.resource
    run = one(spans, "mp.process.run")
    assert run.parent.span_id == process.context.span_id and run.context.trace_id == process.context.trace_id


def test_with_the_sdks_default_sampler_mp_process_draws_the_ids_the_sdk_would(installed, context):
    """The default sampler and id generator are decided inline at each start (_rootspan.start_sampled): the
    ids must be the SDK tracer's own, from the same draws of ``random`` in the same order, for a root span
    and for a child of the caller's span."""
    provider, exporter, _ = installed()  # ParentBased(ALWAYS_ON), RandomIdGenerator: the SDK's defaults
    tracer = provider.get_tracer("tests")
    random.seed(19)
    trace_id, span_id = random.getrandbits(128), random.getrandbits(64)
    random.seed(19)
    process = context.Process(target=succeed)
    process.start()
    process.join(60)
    random.seed(20)
    caller_ids = random.getrandbits(128), random.getrandbits(64)
    child_span_id = random.getrandbits(64)
    random.seed(20)
    _start_one(context, tracer)
    assert process.exitcode == 0 and mptrace.flush()
    spans = exporter.get_finished_spans()
    root, child = sorted((span for span in spans if span.name == "mp.process"), key=lambda span: span.start_time)
    assert (root.context.trace_id, root.context.span_id, root.parent) == (trace_id, span_id, None)
    assert root.context.trace_flags.sampled
    caller = one(spans, "caller")
    assert (caller.context.trace_id, caller.context.span_id) == caller_ids
    assert (child.context.trace_id, child.context.span_id) == (caller_ids[0], child_span_id)
    assert child.parent.span_id == caller.context.span_id


def test_mp_pickle_goes_through_the_providers_sampler_and_id_generator(installed, pickled_context):
    """mp.pickle is started under mp.process as the SDK's tracer would start it: another sampler than the
    default is asked, with mp.process as the parent, and the provider's id generator makes its id."""
    context = pickled_context
    sampler = Marking()
    provider, exporter, _ = installed(sampler=sampler, id_generator=Counting())
    _start_one(context, provider.get_tracer("tests"))
    spans = exporter.get_finished_spans()
    process = one(spans, "mp.process")
    pickles = [span for span in spans if span.name == "mp.pickle"]
    assert sorted(span.attributes["mp.pickle.channel"] for span in pickles) == ["preparation", "process"]
    assert ("mp.pickle", SpanKind.INTERNAL) in sampler.asked
    assert [parent for name, parent in sampler.parents if name == "mp.pickle"] == [process.context.span_id] * 2, \
        "the sampler was not asked under mp.process"
    for span in pickles:
        assert span.parent.span_id == process.context.span_id
        assert span.context.trace_id == process.context.trace_id
        assert span.attributes["marked"] == "mp.pickle", "the sampler's attributes are lost"
        assert span.context.trace_state.get("mark") == "yes", "the sampler's trace state is lost"
        assert 0x1000 < span.context.span_id < 0x2000, "not an id of the provider's id generator"
        assert span.kind is SpanKind.INTERNAL and span.instrumentation_scope.name == "mptrace"


def test_with_the_sdks_default_sampler_mp_pickle_draws_the_ids_the_sdk_would(installed, pickled_context):
    """With the default sampler, mp.pickle is decided inline too: its ids come from the same draws of
    ``random``, in the same order, as the SDK tracer's, after mp.process's."""
    context = pickled_context
    provider, exporter, _ = installed()
    random.seed(21)
    trace_id, process_id = random.getrandbits(128), random.getrandbits(64)
    pickle_ids = [random.getrandbits(64), random.getrandbits(64)]
    random.seed(21)
    process = context.Process(target=succeed)
    process.start()
    process.join(60)
    assert process.exitcode == 0 and mptrace.flush()
    spans = exporter.get_finished_spans()
    parent = one(spans, "mp.process")
    assert (parent.context.trace_id, parent.context.span_id) == (trace_id, process_id)
    pickles = sorted((span for span in spans if span.name == "mp.pickle"), key=lambda span: span.start_time)
    assert [span.context.span_id for span in pickles] == pickle_ids
    for span in pickles:
        assert span.context.trace_id == trace_id and span.parent.span_id == process_id
        assert span.context.trace_flags.sampled and span.resource is provider.resource


def test_with_the_sdks_default_sampler_a_child_of_an_unsampled_span_is_not_traced(installed, context):
    """ParentBased(ALWAYS_ON) follows the parent: under an unsampled caller nothing is recorded."""
    provider, exporter, _ = installed()
    unsampled = trace.NonRecordingSpan(trace.SpanContext(0x1234, 0x5678, is_remote=False,
                                                         trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT)))
    with trace.use_span(unsampled):
        process = context.Process(target=succeed)
        process.start()
        process.join(60)
    assert process.exitcode == 0 and mptrace.flush()
    assert exporter.get_finished_spans() == ()


def test_mp_process_reaches_the_processors_at_its_end_only(installed, context):
    provider, exporter, seen = installed()
    _start_one(context, provider.get_tracer("tests"))
    assert "caller" in seen.started
    assert "mp.process" not in seen.started, "mp.process went through on_start: it is an SDK span again"
    assert one(exporter.get_finished_spans(), "mp.process").attributes["mp.exitcode"] == 0


def test_a_recorded_but_unsampled_mp_process_reaches_the_processors_unsampled(installed, context):
    provider, _, _ = installed(sampler=Marking(Decision.RECORD_ONLY))
    ended = []

    class Recording(Processor):
        def on_end(self, span):
            ended.append(span)

    provider.add_span_processor(Recording())
    _start_one(context, provider.get_tracer("tests"))
    process = [span for span in ended if span.name == "mp.process"]
    assert len(process) == 1, "a recording mp.process must reach on_end, as the SDK's own span would"
    assert not process[0].context.trace_flags.sampled
    assert not [span for span in ended if span.name == "mp.process.run"], "an unsampled child records nothing"


def test_a_dropped_mp_process_reaches_no_processor(installed, context):
    provider, exporter, _ = installed(sampler=Marking(Decision.DROP))
    _start_one(context, provider.get_tracer("tests"))
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["caller"]


def test_uninstall_hands_over_the_mp_process_spans_of_children_it_saw_exit(context):
    """mp.process goes to the processors with the collector's next batch: uninstall() (like flush() and the
    exit) makes that batch, so nothing is left behind when no collection came after the exit."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=TEST_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mptrace.install(tracer_provider=provider)
    try:
        processes = [context.Process(target=succeed) for _ in range(3)]
        for process in processes:
            process.start()
            process.join(60)
            assert process.exitcode == 0
    finally:
        mptrace.uninstall()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("mp.process") == 3 and names.count("mp.process.run") == 3
