"""OpenTelemetry in a traced child: the user's spans go to the spool.

Loaded only in children whose code uses OpenTelemetry (fork children always
have it, as a copy of the parent). Three things happen here:

* the global tracer provider sends every span to this child's spool file: if
  the application set an SDK provider (inherited through fork, or set again by
  a re-imported main module), its span processors are replaced, in this child
  only, so it neither exports on its own nor duplicates; if none is set,
  mptrace sets one;
* the same is done for the root's provider, which fork children inherit;
* the child's mp.process.run span becomes the current span, so the user's
  spans nest under it.
"""

import sys
import threading

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.trace.propagation import _SPAN_KEY

from mptrace import _bounded, _log, _spool
from mptrace._state import state


def _status(span):
    status = span.status
    code = int(status.status_code.value)
    return [code, status.description if code == 2 else None]


def _scope(span):
    scope = getattr(span, "instrumentation_scope", None)
    return [scope.name, scope.version] if scope is not None else [None, None]


def _attributes(attributes):
    return dict(attributes) if attributes else {}


def span_record(span, record_type):
    """The spool record of an SDK span."""
    context = span.get_span_context()
    parent = span.parent
    record = {
        "t": record_type,
        "n": span.name,
        "tid": "%032x" % context.trace_id,
        "sid": "%016x" % context.span_id,
        "psid": "%016x" % parent.span_id if parent is not None else None,
        "pr": bool(parent.is_remote) if parent is not None else False,
        "k": int(span.kind.value),
        "st": span.start_time,
        "a": _attributes(span.attributes),
        "sc": _scope(span),
    }
    if record_type == _spool.END:
        record["et"] = span.end_time
        record["ev"] = [[e.name, e.timestamp, _attributes(e.attributes)] for e in span.events]
        record["ln"] = [
            ["%032x" % link.context.trace_id, "%016x" % link.context.span_id, _attributes(link.attributes)]
            for link in span.links
        ]
        record["s"] = _status(span)
    return record


class SpoolSpanProcessor(SpanProcessor):
    """Writes each sampled span to this process's own spool file, at start and end.

    The file is looked up per span, not bound at creation: a fork child of this
    process, which inherits the processor, writes to its own file.
    """

    @staticmethod
    def _target(span):
        if not span.get_span_context().trace_flags.sampled or not _in_child():
            return None
        return state.child.writer

    def on_start(self, span, parent_context=None):
        writer = self._target(span)
        if writer is not None:
            _log.safely("spooling a span start", writer.write, span_record(span, _spool.START))

    def on_end(self, span):
        writer = self._target(span)
        if writer is not None:
            _log.safely("spooling a span", writer.write, span_record(span, _spool.END))

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True  # every write is already on disk


_to_own_spool = SpoolSpanProcessor()


def _in_child():
    """Whether this is a traced child, or a copy of one made by a plain ``os.fork()``
    (its writer then opens a file of its own: see _spool.SpoolWriter)."""
    return state.role == "child" and state.child is not None


def multi_on_start(original):
    """``on_start`` of the SDK's multi-processors: in a fork child, to its spool, not to the processors (and
    exporters) inherited from the parent.

    A plain function, not a wrapt wrapper: it runs for every span the program
    makes, and in the root it is one check and the original call.
    """

    def on_start(self, span, parent_context=None):
        if state.role == "child" and state.child is not None:  # _in_child(), inlined: it runs per span
            return _to_own_spool.on_start(span, parent_context)
        return original(self, span, parent_context=parent_context)

    return on_start


def multi_on_end(original):
    """``on_end`` of the SDK's multi-processors (see multi_on_start); in the root, a span that ends while
    mptrace waits with a deadline is handed over with that deadline."""

    def on_end(self, span):
        if state.role == "child" and state.child is not None:
            return _to_own_spool.on_end(span)
        if _bounded.active() and state.is_root():
            return state.root.collector.hand_over_own(lambda: original(self, span), ())
        return original(self, span)

    return on_end


def _redirect(provider, processor):
    """Make an inherited SDK provider send its spans to ``processor`` only.

    Tracers hold the provider's multi-processor object itself, so its list is
    replaced in place rather than the object swapped.
    """
    multi = getattr(provider, "_active_span_processor", None)
    if multi is None or not hasattr(multi, "_span_processors"):
        _log.debug("cannot redirect tracer provider %r in a child", provider)
        return
    lock = getattr(multi, "_lock", None)
    if lock is not None:
        with lock:
            multi._span_processors = (processor,)
    else:
        multi._span_processors = (processor,)


def run_context(trace_id, span_id, sampled):
    """The OpenTelemetry context in which the child's run span is current."""
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
    span_context = trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


_FLAGS = (trace.TraceFlags(trace.TraceFlags.DEFAULT), trace.TraceFlags(trace.TraceFlags.SAMPLED))


def fork_child_context(trace_id, span_id, sampled):
    """(``run_context(...)``, the span that stands for the run in it when a fork child would find nothing to
    wire, else None), as a parent builds them before each fork.

    The context is made as set_span_in_context makes it, from the current one, but through the context
    variable itself where the default runtime is in use: each function a forking parent runs at every start
    costs it the pages it writes again (see _rootspan._current_parent).
    """
    span = trace.NonRecordingSpan(trace.SpanContext(trace_id, span_id, False, _FLAGS[bool(sampled)]))
    variable = sys.modules["mptrace._channels"].runtime_context_variable()
    if variable is None:
        context = trace.set_span_in_context(span)
    else:
        values = dict(variable.get())
        values[_SPAN_KEY] = span
        context = otel_context.Context(values)
    return context, span if _nothing_to_wire() else None


def _nothing_to_wire():
    """Whether a fork child of this process would find nothing to do in ``wire``: it inherits every patch
    and setting. Asked by the parent before the fork, so that the child runs none of it."""
    return (isinstance(trace.get_tracer_provider(), TracerProvider) and _routed_by_patches()
            and sys.modules["mptrace._channels"].uses_opentelemetry() and state.patches.is_patched(Span, "end"))


class ChildTracerProvider(TracerProvider):
    """The global provider mptrace gives a spawn or forkserver child.

    opentelemetry-sdk 1.4x re-detects resources on a thread pool in every
    fork child of a TracerProvider (``_handle_fork``); this provider's spans
    get their resource from the spool header instead, so it skips that and
    adds neither threads nor entry-point scans to the child's own children.
    """

    def _handle_fork(self):
        self._tracers_lock = threading.Lock()


def _routed_by_patches():
    """Whether the SDK's multi-processors here already send spans to the spool
    (the root's patches, inherited by a fork child or loaded by a spawn child
    that starts processes itself)."""
    return state.patches.is_patched(SynchronousMultiSpanProcessor, "on_end")


def wire(run, inherited_provider):
    """Route this child's OpenTelemetry spans to its spool; nest them under run.

    ``inherited_provider``: in a fork child of the root, the root's provider;
    it becomes the global provider if the application set none, so no new
    provider (and no new at-fork handler) is created in fork children.
    Processors added here write to whichever process is running them
    (``_to_own_spool``), so this process's own fork children stay correct.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, trace.ProxyTracerProvider):
        if isinstance(inherited_provider, TracerProvider):
            trace.set_tracer_provider(inherited_provider)
        else:
            provider = ChildTracerProvider(resource=Resource(run.resource), shutdown_on_exit=False)
            provider.add_span_processor(_to_own_spool)
            trace.set_tracer_provider(provider)
    elif isinstance(current, TracerProvider):
        if not _routed_by_patches():
            _redirect(current, _to_own_spool)
    else:
        _log.debug("global tracer provider %r is not the SDK's; its spans stay where it sends them", current)
    span = run.run_span
    if run.prebuilt_context is None:
        run.prebuilt_context = run_context(span.trace_id, span.span_id, span.sampled)
    if not run.context_attached:
        otel_context.attach(run.prebuilt_context)
        run.context_attached = True
    run.otel_wired = True
    _channels = sys.modules.get("mptrace._channels")
    if _channels is not None:
        _count_channels_on_spans(_channels, run.prebuilt_context)
    else:  # a spawn child whose code has used no queue or connection yet: when it loads what counts them
        from mptrace import _importhook

        context = run.prebuilt_context
        _importhook.call_after_import("mptrace._channels", lambda module: _count_channels_on_spans(module, context),
                                      key="opentelemetry")


def _count_channels_on_spans(_channels, run_context):
    """Pickles on queues and connections count on the current span, the run span standing for the run.

    Not before ``_channels`` is loaded: a spawn child loads it only when its code first imports a channel
    module (and its import costs some 0.4 ms); no pickle is counted before that, so nothing is missed.
    """
    _channels.use_opentelemetry(run_context)
    _channels.instrument_span_end(state.patches)
