"""Where mptrace's parent-side spans nest, captured now and used later.

Pool and executor helper threads start workers and send tasks later than,
and in other threads than, the call that asked for them; those threads have
an empty context. mptrace captures the caller's context when it calls, and
makes it current again where the work is done. A captured context is:

* in the root, an OpenTelemetry ``Context``;
* in a traced child, a ``Parent`` (the ids of its current span), since a child
  may not have OpenTelemetry loaded at all.
"""

import threading
from collections import namedtuple
from contextlib import contextmanager

from mptrace import _litespan
from mptrace._state import state

Parent = namedtuple("Parent", "trace_id span_id sampled")

# In a child: the parent made current by ``current()`` in this thread.
_overrides = threading.local()


def override():
    """The Parent made current in this thread of a child, or None."""
    return _overrides.__dict__.get("parent")


def capture():
    """The current context of this thread, to start spans under later (None when untraced)."""
    if state.is_root():
        from opentelemetry import context

        return context.get_current()
    if state.child is not None:
        return Parent(*state.child.current_parent())
    return None


def ids(captured):
    """The Parent (trace id, span id, sampled) of a captured context, or None if it has no span."""
    if captured is None or isinstance(captured, Parent):
        return captured
    from opentelemetry import trace

    span_context = trace.get_current_span(captured).get_span_context()
    if not span_context.is_valid:
        return None
    return Parent(span_context.trace_id, span_context.span_id, bool(span_context.trace_flags.sampled))


def of_span(span):
    """The captured context in which ``span`` (an SDK span, a LiteSpan or a RootSpan) is current."""
    lite = isinstance(span, _litespan.LiteSpan)
    if lite and not state.is_root():
        return Parent(span.trace_id, span.span_id, span.sampled)
    from opentelemetry import trace

    if lite:  # a RootSpan: the root's SDK spans nest under its ids
        span = trace.NonRecordingSpan(span.get_span_context())
    return trace.set_span_in_context(span)


@contextmanager
def current(captured):
    """Make ``captured`` current in this thread for mptrace's spans (processes started here)."""
    if captured is None:
        yield
    elif isinstance(captured, Parent):
        outer = override()
        _overrides.parent = captured
        try:
            yield
        finally:
            _overrides.parent = outer
    else:
        from opentelemetry import context

        token = context.attach(captured)
        try:
            yield
        finally:
            context.detach(token)


def start_span(name, captured, kind=_litespan.KIND_INTERNAL, attributes=None):
    """An mptrace span under ``captured``: an SDK span in the root, a LiteSpan in a child."""
    if state.is_root():
        from opentelemetry.trace import SpanKind

        return state.tracer.start_span(name, context=captured, kind=SpanKind(kind), attributes=attributes)
    return state.tracer.start_span(name, kind=kind, attributes=attributes, parent=ids(captured))


def run_in(captured, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with ``captured`` current; mptrace's own failures never reach it."""
    from mptrace import _log

    manager = _log.safely("entering a captured context", _enter, captured)
    try:
        return function(*args, **kwargs)
    finally:
        if manager is not None:
            _log.safely("leaving a captured context", manager.__exit__, None, None, None)


def _enter(captured):
    manager = current(captured)
    manager.__enter__()
    return manager
