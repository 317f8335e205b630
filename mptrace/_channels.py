"""Pickling on multiprocessing's high-frequency channels: queues and connections.

``Connection.send``/``recv`` (so ``Pipe``, and the pipes under ``Pool``) and
``Queue``/``JoinableQueue``/``SimpleQueue`` pickle through the name
``_ForkingPickler``, which ``multiprocessing.connection`` and
``multiprocessing.queues`` each bind at import. mptrace points each module's
name at a subclass whose ``dumps``/``loads`` know their channel (``connection``
or ``queue``) and call ``ForkingPickler``'s own, so the pickler, the bytes and
the exceptions are exactly multiprocessing's. Knowing the channel from the
name costs nothing per call; finding the caller from its frame would cost
0.15 to 0.35 us, and a wrapt wrapper on a classmethod 0.8 us: the budget for a
small ``dumps`` (2.2 us) is well under 1 us.

Each pickle or unpickle is counted (count, bytes, seconds) on the enclosing
span: the recording OpenTelemetry span current in the calling thread, else the
process's own ``mp.process.run`` (in the root, with no span open, the totals
go to ``mptrace.stats()``). The totals reach the span as attributes when it
ends. Only notable pickles get a span of their own: ``mp.pickle`` (dumps) or
``mp.unpickle`` (loads) when the pickle is at least ``pickle_span_bytes`` or
takes at least ``pickle_span_seconds``, and always when it fails.

``Queue.put`` only buffers; a feeder thread pickles later. Queues created
while mptrace is installed get a buffer that remembers the OpenTelemetry
context of each ``put`` and makes it current in the feeder thread just before
that object is pickled, so the pickle is counted, and spanned, where ``put``
was called.
"""

import collections
import contextvars
import itertools
import sys
import time
from io import BytesIO
from threading import get_ident

from mptrace import _log, _trailer, semconv
from mptrace._state import state

perf_counter = time.perf_counter

STOP = _trailer.STOP  # the last byte of every pickle
DEFAULT_SPAN_BYTES = 1 << 20
DEFAULT_SPAN_SECONDS = 0.001
MAX_TYPES = 8  # classes named on a failed unpickle

# Thresholds for a span of its own (module globals: the hot path reads them). A spawn child loads this module
# only once its code imports a channel module (see _child._instrument_channels): then its process tree's.
span_bytes, span_seconds = (state.tree or {}).get("pk", (DEFAULT_SPAN_BYTES, DEFAULT_SPAN_SECONDS))


# -- tallies -----------------------------------------------------------------
#
# A tally is {"pickle.queue": [count, bytes, seconds], ...}. span_tallies maps
# each recording span that enclosed some traffic to its tally, until it ends;
# its None entry is the process's own tally, for what no recording span
# enclosed. The hot path finds its counters with four C calls:
# span_tallies[current_context().get(SPAN_KEY)][key].


class Tally(dict):
    """{"pickle.queue": [count, bytes, seconds], ...}; a missing key starts at zero."""

    __slots__ = ()

    def __missing__(self, key):
        entry = self[key] = [0, 0, 0.0]
        return entry


class SpanTallies(dict):
    """{span: Tally} for the recording spans that enclosed traffic, until they end.

    Its None entry is the process's own tally. A span seen for the first time
    gets a tally if it is a recording SDK span; any other (the child's run
    context, a pool worker's adopted task context, a remote or a non-recording
    span) counts for the process, and stays here as the one foreign entry
    until another foreign span takes its place: a pool worker's adopted
    context is current for thousands of messages, and a hit costs no Python call.
    """

    __slots__ = ()

    def __missing__(self, span):
        global _foreign_span
        if span is not _run_context_span and _recording_sdk_span(span):
            tally = self[span] = Tally()
            return tally
        if _foreign_span is not None:
            self.pop(_foreign_span, None)
        _foreign_span = span
        self[span] = process_tally
        return process_tally


SPAN_KEY = "no OpenTelemetry here"
process_tally = Tally()
span_tallies = SpanTallies({None: process_tally})
# Returns the current OpenTelemetry Context (a dict); until OpenTelemetry is in
# use here, always the same empty dict.
current_context = itertools.repeat({}).__next__


# In a child with OpenTelemetry: the non-recording span that stands for
# mp.process.run in the context (its traffic is the process's own).
_run_context_span = None
# The one span in span_tallies that is not a recording SDK span (there may be
# one per remote context: only the latest is kept).
_foreign_span = None


def _recording_sdk_span(span):
    module = sys.modules.get("opentelemetry.sdk.trace")
    sdk_span = getattr(module, "Span", None)
    return sdk_span is not None and isinstance(span, sdk_span) and span.is_recording()


def use_opentelemetry(run_context=None):
    """Count on the current OpenTelemetry span from now on (OpenTelemetry is loaded).

    ``run_context``: in a child, the context whose span stands for mp.process.run.
    """
    global SPAN_KEY, current_context, capture_context, _make_current_in_feeder, _run_context_span
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    if run_context is not None:
        _run_context_span = trace.get_current_span(run_context)
    if uses_opentelemetry():
        return  # already (a fork child inherits its parent's setting)
    try:  # the context variable itself: one C call instead of four API calls
        from opentelemetry.trace.propagation import _SPAN_KEY

        variable = runtime_context_variable()
        variable.get().get(_SPAN_KEY)
        SPAN_KEY, current_context = _SPAN_KEY, variable.get
    except Exception:  # another runtime context: through the API
        SPAN_KEY, current_context = "span", lambda: {"span": trace.get_current_span()}
    capture_context = otel_context.get_current
    _make_current_in_feeder = otel_context.attach


def runtime_context_variable():
    """The context variable behind OpenTelemetry's default runtime context, or None (another runtime, or
    OpenTelemetry not loaded): setting and reading it is what the context API does there, in one C call."""
    runtime = getattr(sys.modules.get("opentelemetry.context"), "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    return variable if type(variable) is contextvars.ContextVar else None


def use_run_span(span):
    """A fork child that inherited use_opentelemetry(): ``span`` (its context's) stands for mp.process.run."""
    global _run_context_span
    _run_context_span = span


def uses_opentelemetry():
    """Whether use_opentelemetry() took effect here (a fork child inherits that)."""
    otel_context = sys.modules.get("opentelemetry.context")
    return otel_context is not None and capture_context is otel_context.get_current


def reset(bytes_threshold=DEFAULT_SPAN_BYTES, seconds_threshold=DEFAULT_SPAN_SECONDS):
    """Forget every tally (a new role for this process) and set the thresholds."""
    global span_bytes, span_seconds, SPAN_KEY, current_context, capture_context, _make_current_in_feeder
    global _run_context_span, _foreign_span
    process_tally.clear()
    span_tallies.clear()
    span_tallies[None] = process_tally
    dumps_roles.clear()
    loads_roles.clear()
    span_bytes, span_seconds = bytes_threshold, seconds_threshold
    SPAN_KEY, current_context = "no OpenTelemetry here", itertools.repeat({}).__next__
    capture_context = _no_context
    _make_current_in_feeder = _no_attach
    _run_context_span = _foreign_span = None


def forget_inherited_tallies():
    """In a fork child: the parent's totals are the parent's to report.

    Writes only when there is something to forget: every page a fork child
    writes costs it a copy-on-write fault.
    """
    if process_tally:
        process_tally.clear()
    if dumps_roles or loads_roles:  # the parent's threads' roles: this child has one thread, of its own
        dumps_roles.clear()
        loads_roles.clear()
    if len(span_tallies) > 1:
        span_tallies.clear()
        span_tallies[None] = process_tally


def tally_attributes(tally):
    """Span attributes for a tally: mp.pickle.queue.count, .bytes, .seconds, ..."""
    attributes = {}
    for key, (count, size, seconds) in sorted(tally.items()):
        attributes.update(totals_attributes(key, count, size, seconds))
    return attributes


def totals_attributes(key, count, size, seconds):
    """``mp.<key>.count``, ``.bytes`` and ``.seconds`` (key: pickle.queue, unpickle.task, ...)."""
    names = _totals_names.get(key)
    if names is None:
        names = _totals_names[key] = ("mp.%s.count" % key, "mp.%s.bytes" % key, "mp.%s.seconds" % key)
    return {names[0]: count, names[1]: size, names[2]: round(seconds, 6)}


_totals_names = {}  # key -> its three attribute names (a worker ends a task span per task)


def settle(span):
    """Set the totals counted on ``span`` as its attributes (it is about to end)."""
    tally = span_tallies.pop(span, None) if span is not None else None
    if tally and tally is not process_tally:  # the process's own totals are not the span's
        span.set_attributes(tally_attributes(tally))


def span_end_hook(original_end):
    """A replacement for the SDK's ``Span.end`` that settles the span's tally first."""

    def end(self, end_time=None):
        if self in span_tallies:
            _log.safely("adding pickle totals to a span", settle, self)
        return original_end(self, end_time)

    return end


# -- the channel picklers ----------------------------------------------------


def channel_pickler(base, channel):
    """A ``base`` subclass whose dumps/loads count on ``channel``; see the module docstring.

    The hot path is written out flat: every function call costs about 0.1 us.
    A thread with a role (``dumps_roles``, ``loads_roles``) hands its messages to the role,
    which calls back with ``_role_checked=True`` for those it does not handle.
    """
    pickle_key, unpickle_key = "pickle." + channel, "unpickle." + channel
    base_loads = base.loads

    def dumps(cls, obj, protocol=None, _role_checked=False):
        if dumps_roles and not _role_checked:
            role = dumps_roles.get(get_ident())
            if role is not None:
                return role.dumps(cls, obj, protocol)
        began = perf_counter()
        try:
            stream = BytesIO()  # what ForkingPickler.dumps does, keeping the stream for a trailer
            base(stream, protocol).dump(obj)
        except BaseException as exc:
            _log.safely("recording a failed pickle", _dump_failed, channel, obj, exc, perf_counter() - began)
            raise
        elapsed = perf_counter() - began
        try:
            size = stream.tell()
            if size >= span_bytes or elapsed >= span_seconds:
                _notable_dumps(channel, size, elapsed, obj, stream)
            entry = span_tallies[current_context().get(SPAN_KEY)][pickle_key]
            entry[0] += 1
            entry[1] += size
            entry[2] += elapsed
        except Exception:
            _log.internal_error("counting a pickle")
        return stream.getbuffer()

    def loads(data, *args, _role_checked=False, **kwargs):
        if loads_roles and not _role_checked:
            role = loads_roles.get(get_ident())
            if role is not None:
                return role.loads(loads, data, args, kwargs)
        began = perf_counter()
        try:
            obj = base_loads(data, *args, **kwargs)
        except BaseException as exc:
            _log.safely("recording a failed unpickle", _load_failed, channel, data, exc, perf_counter() - began)
            raise
        elapsed = perf_counter() - began
        try:
            size = len(data)
            if size >= span_bytes or elapsed >= span_seconds or data[-1] != STOP:
                size = _notable_loads(channel, size, elapsed, obj, data)
            entry = span_tallies[current_context().get(SPAN_KEY)][unpickle_key]
            entry[0] += 1
            entry[1] += size
            entry[2] += elapsed
        except Exception:
            _log.internal_error("counting an unpickle")
        return obj

    namespace = {"dumps": classmethod(dumps), "loads": staticmethod(loads), "__module__": base.__module__,
                 "__qualname__": base.__qualname__, "__doc__": base.__doc__, "mptrace_channel": channel}
    return type(base.__name__, (base,), namespace)


# -- thread roles ------------------------------------------------------------
#
# Some threads' messages mean more than "a message": a Pool's task-handler
# thread sends tasks, its result-handler thread receives results, a worker's
# main thread receives tasks and sends results. Such a thread registers a role
# (keyed by thread id) that pickles those messages itself; the check costs
# nothing while no thread has a role. A role that only sends (or only
# receives) is registered for that direction only, so the other costs nothing.

dumps_roles = {}  # thread id -> the role that pickles what the thread sends
loads_roles = {}  # thread id -> the role that unpickles what the thread receives


class ThreadRole:
    """The default role: every message is an ordinary one.

    ``sends``/``receives``: whether the role looks at what its thread pickles
    (``dumps``) and unpickles (``loads``).
    """

    sends = True
    receives = True

    def dumps(self, pickler, obj, protocol):
        return pickler.dumps(obj, protocol, _role_checked=True)

    def loads(self, loads, data, args, kwargs):
        return loads(data, *args, _role_checked=True, **kwargs)


def assume_role(role):
    """Give the calling thread ``role`` until ``drop_role()``."""
    ident = get_ident()
    if role.sends:
        dumps_roles[ident] = role
    if role.receives:
        loads_roles[ident] = role


def drop_role():
    ident = get_ident()
    dumps_roles.pop(ident, None)
    loads_roles.pop(ident, None)


def release_frames(exc):
    """Clear the locals of the finished mptrace frames ``exc`` passed through, below the calling one.

    An exception that leaves a role (a task that cannot be pickled, say) keeps
    in its traceback every frame it passed through. Ours hold a Submission,
    which holds the exception (mp.task reports it) and the futures that hold
    it: a reference cycle that would keep the exception, and CPython's frames
    above ours (the feeder or task-handler thread's, which hold its queue and
    the thread), alive until the cycle collector runs. Untraced, reference
    counting frees them at once. The traceback still shows every line.
    """
    tb = exc.__traceback__
    tb = tb.tb_next if tb is not None else None  # the calling frame is still running: it cannot be cleared
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("mptrace."):
        tb.tb_frame.clear()
        tb = tb.tb_next


def _can_record():
    """Whether this process is traced and has a tracer for mptrace's spans."""
    return state.active() and state.tracer is not None


def _notable_dumps(channel, size, elapsed, obj, stream):
    """A big or slow pickle: an mp.pickle span, and a trailer the receiver links to it with."""
    if _can_record():
        span = _log.safely("recording a notable pickle", _notable_span, semconv.SPAN_PICKLE, channel, size,
                           elapsed, obj, None)
        context = _span_ids(span) if span is not None else None
        if context is not None and context[2]:
            stream.write(_trailer.encode(_trailer.LINK, context[0], context[1], _trailer.SAMPLED))


def _notable_loads(channel, size, elapsed, obj, data):
    """A big or slow unpickle, or one whose sender made a span: an mp.unpickle span.

    Returns the size of the pickle itself (without a trailer).
    """
    trailer = _trailer.read(data)
    link = None
    if trailer is not None:
        size -= _trailer.SIZE
        if trailer[0] == _trailer.LINK:
            link = trailer[1:3]
        elif size < span_bytes and elapsed < span_seconds:
            return size  # a task's context, for a worker's role: nothing notable here
    if _can_record():
        _log.safely("recording a notable unpickle", _notable_span, semconv.SPAN_UNPICKLE, channel, size,
                    elapsed, obj, link)
    return size


def _notable_span(name, channel, size, elapsed, obj, link):
    span = _span(name, channel, size, elapsed, _type_name(obj), link)
    span.end()
    return span


def _span_ids(span):
    """(trace_id, span_id, sampled) of an SDK span or a LiteSpan."""
    if hasattr(span, "span_id"):
        return span.trace_id, span.span_id, span.sampled
    context = span.get_span_context()
    return context.trace_id, context.span_id, bool(context.trace_flags.sampled) and context.is_valid


def _type_name(obj):
    from mptrace._fingerprint import type_name

    return type_name(type(obj))


def _span(name, channel, size, elapsed, message_type, link=None):
    """An mp.pickle/mp.unpickle span that began ``elapsed`` seconds ago, under
    the current span (in a feeder thread: the one current at put()).

    ``link``: (trace_id, span_id) of the producer's span, for a consumer's span.
    """
    attributes = {semconv.PICKLE_CHANNEL: channel}
    if message_type is not None:
        attributes[semconv.PICKLE_TYPE] = message_type
    if size is not None:
        attributes[semconv.PICKLE_BYTES] = size
    start = time.time_ns() - int(elapsed * 1e9)
    if link is None:
        return state.tracer.start_span(name, attributes=attributes, start_time=start)
    return state.tracer.start_span(name, attributes=attributes, start_time=start, links=_links(link))


def _links(link):
    if not state.is_root():
        return [link]  # a child's LiteSpans take (trace_id, span_id)
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    return [Link(SpanContext(link[0], link[1], True, TraceFlags(TraceFlags.SAMPLED)))]


def _dump_failed(channel, obj, exc, elapsed):
    from mptrace import _fingerprint, _pickling

    if not _can_record():
        return
    span = _span(semconv.SPAN_PICKLE, channel, None, elapsed, _type_name(obj))
    found = _fingerprint.find_unpicklable([("message", obj)])
    if found is not None:
        span.set_attribute(semconv.PICKLE_PATH, found[0])
        span.set_attribute(semconv.PICKLE_HINT, found[1])
    where = " at %s" % found[0] if found is not None else ""
    _pickling.end_with_error(span, exc, "pickling a %s message failed%s" % (channel, where))


def _load_failed(channel, data, exc, elapsed):
    from mptrace import _pickling

    if not _can_record():
        return
    span = _span(semconv.SPAN_UNPICKLE, channel, len(data), elapsed, None)
    classes = classes_in_pickle(data)
    if classes:
        span.set_attribute(semconv.PICKLE_CLASSES, classes)
    _pickling.end_with_error(span, exc, "unpickling a %s message failed" % channel)


def classes_in_pickle(data, max_ops=100000):
    """The classes and functions a pickle names (GLOBAL/STACK_GLOBAL), in order, bounded.

    Read from the opcodes, without unpickling anything: for a failed unpickle,
    which classes the message was made of.
    """
    import pickletools

    names, strings, memo = [], [], {}
    try:
        for count, (opcode, argument, _) in enumerate(pickletools.genops(bytes(data))):
            if count >= max_ops or len(names) >= MAX_TYPES:
                break
            _follow(opcode.name, argument, strings, memo, names)
    except Exception:
        pass  # a truncated or corrupt pickle: report what was read
    return names


def _follow(op, argument, strings, memo, names):
    if op in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
        strings.append(argument)
    elif op == "MEMOIZE" and strings:
        memo[len(memo)] = strings[-1]
    elif op in ("BINGET", "LONG_BINGET", "GET") and argument in memo:
        strings.append(memo[argument])
    elif op == "STACK_GLOBAL" and len(strings) >= 2:
        name = "%s.%s" % (strings[-2], strings[-1])
        if name not in names:
            names.append(name)
    elif op == "GLOBAL":
        name = argument.replace(" ", ".")
        if name not in names:
            names.append(name)


# -- queues: the put caller's context in the feeder thread -------------------


def _no_context():
    return None


capture_context = _no_context


class ContextBuffer(collections.deque):
    """A Queue's buffer that carries each put's context to the feeder thread.

    ``Queue.put`` appends under the queue's lock and the feeder thread pops in
    the same order, so the contexts kept alongside stay paired with their objects.
    ``role``: a role for the feeder thread (an executor's call queue has one).
    """

    __slots__ = ("contexts", "role", "current")

    def __init__(self, role=None):
        super().__init__()
        self.contexts = collections.deque()
        self.role = role
        self.current = None  # the context last made current in the feeder thread

    def append(self, obj):
        try:
            context = capture_context()
        except Exception:
            context = None
        collections.deque.append(self, obj)
        self.contexts.append(context)

    def popleft(self):
        obj = collections.deque.popleft(self)
        try:
            context = self.contexts.popleft()
            if context is not None and context is not self.current:  # puts from one place share one
                _make_current_in_feeder(context)
                self.current = context
        except Exception:
            self.contexts.clear()  # out of step: never attribute to the wrong put
            self.contexts.extend([None] * len(self))
        if self.role is not None:
            self._play_role(obj)
        return obj

    def _play_role(self, obj):
        """The feeder thread has this queue's role until it takes the sentinel (and exits)."""
        from multiprocessing.queues import _sentinel

        if obj is _sentinel:
            drop_role()
        else:
            dumps_roles[get_ident()] = self.role  # a sender

    def clear(self):
        collections.deque.clear(self)
        self.contexts.clear()


def _no_attach(context):
    return None


# otel_context.attach once OpenTelemetry is in use. The feeder thread runs only
# multiprocessing's loop, which never reads the context: replacing it for
# each object, without detaching, is safe.
_make_current_in_feeder = _no_attach


def queue_reset_wrapper(wrapped, queue, args, kwargs):
    """``Queue._reset`` (at creation, unpickling and after fork): a ContextBuffer."""
    result = wrapped(*args, **kwargs)
    # Always, not only once OpenTelemetry is in use: a spawn child unpickles
    # its queues before its own code imports OpenTelemetry.
    _log.safely("giving a queue a context buffer", _give_context_buffer, queue)
    return result


def _give_context_buffer(queue):
    if type(queue._buffer) is collections.deque and not queue._buffer:
        executor = sys.modules.get("mptrace._executor")
        queue._buffer = ContextBuffer(executor.sender_for(queue) if executor is not None else None)


# -- patching ----------------------------------------------------------------
#
# Plain replacements, recorded in the registry like every patch: these run on
# every message, and in spawn children, which do not load wrapt.

CHANNEL_MODULES = (("multiprocessing.connection", "connection"), ("multiprocessing.queues", "queue"))


def instrument(patches, import_now):
    """Give both channel modules their picklers, now or right after they are imported.

    ``import_now``: import the modules if they are not loaded yet; a spawn
    child waits for its own code to import them instead, and so does the root
    (see _install.IMPORTED_AT_INSTALL, which patches them itself).
    """
    import importlib

    from mptrace import _importhook

    for module_name, channel in CHANNEL_MODULES:
        module = importlib.import_module(module_name) if import_now else sys.modules.get(module_name)
        if module is not None:
            instrument_module(patches, module, channel)
        else:
            _importhook.call_after_import(
                module_name, lambda module, channel=channel: instrument_module(patches, module, channel))


def instrument_module(patches, module, channel):
    """Give one channel module its pickler (and the queue module's Queue its reset hook)."""
    if patches.is_patched(module, "_ForkingPickler"):
        return
    base = module._ForkingPickler
    pickler = _prebuilt_picklers.get(channel)
    if pickler is None or pickler.__bases__ != (base,):
        pickler = channel_pickler(base, channel)
    patches.replace(module, "_ForkingPickler", pickler)
    queue_class = getattr(module, "Queue", None) if channel == "queue" else None
    if queue_class is not None and not patches.is_patched(queue_class, "_reset"):
        original_reset = vars(queue_class)["_reset"]

        def _reset(self, *args, **kwargs):
            return queue_reset_wrapper(original_reset.__get__(self), self, args, kwargs)

        patches.replace(queue_class, "_reset", _reset)


# In a fork server (see _preload): {channel: its pickler class}, built once for all the children it forks.
# Nothing is patched there: a class no one uses is all the server holds.
_prebuilt_picklers = {}


def prebuild_picklers():
    """In a fork server: the picklers of the channel modules it has loaded, for its children to install.

    Building a class is among the costliest things a forkserver child of a traced parent did before its
    target (every object it allocates or touches is a copy-on-write fault); the class reads this module's
    settings at each call, so one built in the server is the one the child would build.
    """
    for module_name, channel in CHANNEL_MODULES:
        module = sys.modules.get(module_name)
        if module is not None:
            _prebuilt_picklers[channel] = channel_pickler(module._ForkingPickler, channel)


def instrument_span_end(patches):
    """Settle tallies when SDK spans end (OpenTelemetry's SDK is loaded here)."""
    from opentelemetry.sdk.trace import Span

    if not patches.is_patched(Span, "end"):
        patches.replace(Span, "end", span_end_hook(vars(Span)["end"]))
