"""RootSpan: a span of the root's that becomes an SDK span only when it ends.

A Pool task is one of tens of thousands per second. An SDK span costs about
20 us to start and end (ids, sampler, locks, processors twice); this one costs
a few: it is a LiteSpan that, instead of writing to a spool file, is handed to
the root provider's span processors as a ``ReadableSpan`` when it ends, the
way the collector hands over children's spans. Processors see it at its end
only, as they see every child's span.
"""

import time

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from mptrace import __version__, _litespan
from mptrace._state import state

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("mptrace", __version__)


class RootSpan(_litespan.LiteSpan):
    __slots__ = ()

    def __init__(self, name, trace_id, parent_id, kind=_litespan.KIND_INTERNAL, attributes=None, sampled=True):
        super().__init__(None, name, trace_id, parent_id, kind, attributes, sampled, begin=False)

    def begin(self, start_time=None):
        self.start_time = start_time or time.time_ns()

    def end(self, end_time=None):
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        if self.sampled and state.is_root():
            state.root.emit(self._readable())

    def _readable(self):
        trace_id = self.trace_id
        parent = SpanContext(trace_id, self.parent_id, False, _SAMPLED) if self.parent_id else None
        code = self.status_code
        return ReadableSpan(
            name=self.name,
            context=SpanContext(trace_id, self.span_id, False, _SAMPLED),
            parent=parent,
            resource=state.root.provider.resource,
            attributes={k: tuple(v) if type(v) is list else v for k, v in self.attributes.items()},
            events=[Event(name, attributes, timestamp) for name, timestamp, attributes in self.events],
            links=[Link(SpanContext(int(t, 16), int(s, 16), True, _SAMPLED), a) for t, s, a in self.links or ()],
            kind=SpanKind(self.kind),
            status=Status(StatusCode(code), self.status_description if code == _litespan.STATUS_ERROR else None),
            start_time=self.start_time,
            end_time=self.end_time,
            instrumentation_scope=_SCOPE,
        )
