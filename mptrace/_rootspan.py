"""RootSpan: a span of the root's that becomes an SDK span only when it ends.

A Pool task is one of tens of thousands per second. An SDK span costs about
20 us to start and end (ids, sampler, locks, processors twice); this one costs
a few: it is a LiteSpan that, instead of writing to a spool file, is handed to
the root provider's span processors as a ``ReadableSpan`` when it ends, the
way the collector hands over children's spans. Processors see it at its end
only, as they see every child's span.

``mp.process`` is one too (``start_sampled``): after every fork the parent pays
a copy-on-write fault for each page it writes, and an SDK span's start and end
wrote some 200 of them per child (0.3 ms, a tenth of a fork start+join). It is
started as the SDK's tracer starts a span: the provider's sampler decides with
the caller's context, its id generator makes the ids, the sampler's trace state
and attributes are kept.
"""

import random
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, sampling
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.status import Status

from mptrace import __version__, _channels, _litespan
from mptrace._collector import _SPAN_KINDS, _STATUS_CODES, _STATUSES  # the collector's, for spans alike
from mptrace._state import state

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_TRACE_FLAGS = {flags: TraceFlags(flags) for flags in range(4)}  # TraceFlags(flags) makes a new int each time
_SCOPE = InstrumentationScope("mptrace", __version__)


class RootSpan(_litespan.LiteSpan):
    __slots__ = ()

    def __init__(self, name, trace_id, parent_id, kind=_litespan.KIND_INTERNAL, attributes=None, sampled=True,
                 span_id=None):
        super().__init__(None, name, trace_id, parent_id, kind, attributes, sampled, span_id, begin=False)

    def begin(self, start_time=None):
        self.start_time = start_time or time.time_ns()

    def get_span_context(self):
        return SpanContext(self.trace_id, self.span_id, False, _SAMPLED if self.sampled else _NOT_SAMPLED)

    def end(self, end_time=None):
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        if self.sampled and state.is_root():
            state.root.emit(self._readable())

    def _readable(self, context=None, parent=None):
        """The ReadableSpan; ``context``, ``parent``: its SpanContexts, when not the plain sampled ones."""
        trace_id = self.trace_id
        if parent is None and self.parent_id:
            parent = SpanContext(trace_id, self.parent_id, False, _SAMPLED)
        code = self.status_code
        events, links = self.events, self.links
        return ReadableSpan(
            name=self.name,
            context=context or SpanContext(trace_id, self.span_id, False, _SAMPLED),
            parent=parent,
            resource=state.root.provider.resource,
            attributes={k: tuple(v) if type(v) is list else v for k, v in self.attributes.items()},
            # () when there are none, as the SDK's own default (ReadableSpan.events and .links are tuples)
            events=[Event(name, attributes, timestamp) for name, timestamp, attributes in events] if events else (),
            links=[Link(SpanContext(int(t, 16), int(s, 16), True, _SAMPLED), a) for t, s, a in links] if links else (),
            kind=_SPAN_KINDS[self.kind],
            status=(Status(_STATUS_CODES[code], self.status_description)
                    if code == _litespan.STATUS_ERROR and self.status_description is not None
                    else _STATUSES[_STATUS_CODES[code]]),
            start_time=self.start_time,
            end_time=self.end_time,
            instrumentation_scope=_SCOPE,
        )


class SampledRootSpan(RootSpan):
    """A RootSpan that the provider's sampler decided on (see start_sampled)."""

    __slots__ = ("recording", "trace_flags", "trace_state", "parent_context")
    ends_with_a_collection = True  # handed over with the collector's next batch (see end)

    def get_span_context(self):
        return SpanContext(self.trace_id, self.span_id, False, self.trace_flags, self.trace_state)

    def end(self, end_time=None):
        """Ended now; handed to the processors with the collector's next batch (see Collector.hand_over_later)."""
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        if self.recording and state.is_root():
            state.root.collector.hand_over_later(self)

    def readable(self):
        return self._readable(self.get_span_context(), self.parent_context)


def start_sampled(tracer, provider, name, kind, attributes, parent=False):
    """A SampledRootSpan for a span ``tracer`` would start now, in the caller's context; None when
    ``tracer`` is not the SDK's or decides otherwise than by the sampler (then start it with ``tracer``).

    ``parent``: the SpanContext of the span to start it under instead of the caller's current span; then
    only the SDK's default sampler is decided here (another one is asked with a context: start that span
    with ``tracer``).
    """
    if type(tracer) is not SdkTracer or not getattr(tracer, "_is_enabled", _enabled)():
        return None
    if parent is False:
        parent = _current_parent()
    elif not _is_default_sampler(provider.sampler):
        return None
    id_generator = provider.id_generator
    random_ids = type(id_generator) is RandomIdGenerator
    trace_id = parent.trace_id if parent is not None else (
        (random.getrandbits(128) or _random_bits(128)) if random_ids else id_generator.generate_trace_id())
    sampler = provider.sampler
    if _is_default_sampler(sampler):
        # What ParentBased(ALWAYS_ON) decides, without its five calls: a root span or a sampled
        # parent's child is sampled with the attributes as given and the parent's trace state.
        sampled = parent is None or bool(parent.trace_flags & TraceFlags.SAMPLED)
        recording, trace_state = sampled, parent.trace_state if parent is not None else None
        attributes = attributes if sampled else None
    else:
        result = sampler.should_sample(None, trace_id, name, _SPAN_KINDS[kind], attributes, None)
        sampled, recording = result.decision.is_sampled(), result.decision.is_recording()
        attributes, trace_state = result.attributes, result.trace_state
    flags = TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT
    random_trace_id = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # W3C level 2 (SDK 1.4x): kept as the SDK keeps it
    if random_trace_id and (parent.trace_flags & random_trace_id if parent is not None
                            else random_ids or getattr(id_generator, "is_trace_id_random", _not_random)()):
        flags |= random_trace_id
    span = SampledRootSpan(name, trace_id, parent.span_id if parent is not None else None, kind, attributes, sampled,
                           (random.getrandbits(64) or _random_bits(64)) if random_ids
                           else id_generator.generate_span_id())
    span.recording = recording
    span.trace_flags = _TRACE_FLAGS.get(flags) or TraceFlags(flags)
    span.trace_state = trace_state
    span.parent_context = parent
    return span


def _enabled():
    return True


def _not_random():
    return False


def _random_bits(bits):
    """A random id as the SDK's RandomIdGenerator makes it (the same calls on the same generator), never 0;
    called only when the first draw, made inline, was 0."""
    value = random.getrandbits(bits)
    while not value:
        value = random.getrandbits(bits)
    return value


def _current_parent():
    """The SpanContext of the current span, None if there is no valid one (as the SDK's tracer finds it):
    through the context variable itself where the default runtime is in use, one C call instead of the
    API's four functions (each a page a forking parent writes again)."""
    variable = _channels.runtime_context_variable()
    span = variable.get().get(_SPAN_KEY) if variable is not None else trace.get_current_span()
    if span is None:
        return None
    # isinstance() of an abstract class runs the ABC machinery (and writes its caches): only for a span
    context = span.get_span_context() if isinstance(span, trace.Span) else None
    return context if context is not None and context.is_valid else None


# (sampler, whether it is the SDK's ParentBased(ALWAYS_ON) as the SDK builds it): asked at every start.
_default_sampler = [None, False]


def _is_default_sampler(sampler):
    seen, verdict = _default_sampler
    if seen is not sampler:
        verdict = (type(sampler) is sampling.ParentBased and getattr(sampler, "_root", None) is sampling.ALWAYS_ON
                   and all(getattr(sampler, "_%s_parent_%s" % (where, decision), None) is delegate
                           for where in ("remote", "local")
                           for decision, delegate in (("sampled", sampling.ALWAYS_ON),
                                                      ("not_sampled", sampling.ALWAYS_OFF)))
                   and type(sampling.ALWAYS_ON) is sampling.StaticSampler
                   and sampling.ALWAYS_ON._decision is sampling.Decision.RECORD_AND_SAMPLE
                   and sampling.ALWAYS_OFF._decision is sampling.Decision.DROP)
        _default_sampler[:] = [sampler, verdict]
    return verdict
