"""Work sent to Pool and executor workers, on the caller's side.

``PoolTrace``: one pool or executor. Its ``mp.pool`` span begins where the
pool is created, and every worker starts under it, whichever thread starts it
(the pool's own helper threads have an empty context).

``Submission``: one call that submits work (``apply_async``, ``map``,
``submit``, ...). Its ``mp.task`` span begins in the caller's context and ends
when the last result arrives, before the caller can see that result, so a
``flush()`` right after ``get()`` finds it. Every task message it sends (one
call, or one chunk of a map) carries a trailer (``_trailer``) naming the span
the worker's ``mp.task.run`` nests under. Results and failures arrive on other
threads than the caller's; ``_lock`` keeps their counting consistent.

Task spans are rate-limited (``task_spans_per_second``, per process): a
submission without a token gets no spans, but still sends its caller's context
(so spans the task function makes still land in the caller's trace) and is
still counted on ``mp.pool``.
"""

import io
import threading
import time
from multiprocessing import reduction

from mptrace import _channels, _fingerprint, _litespan, _log, _spanparent, _trailer, semconv
from mptrace._pickling import end_with_error, hooks_of
from mptrace._state import state

perf_counter = time.perf_counter
forking_loads = reduction.ForkingPickler.loads  # pickle.loads, as multiprocessing calls it

DEFAULT_SPANS_PER_SECOND = 100
# How many of a submission's chunks get an mp.task.run (unless there is no rate
# limit): all of a map that has at most as many as map's default chunking makes
# (4 per worker); one per worker of a longer map, or of an imap (whose length is
# known only once it is sent); never more than 32. A chunk's spans cost far more
# than its context does: on Pool(2), tracing 8 of a map's 200 chunks instead of
# 2 made it about 3% slower.
CHUNKS_PER_WORKER = 1
CHUNKS_PER_WORKER_IN_FULL = 4
MAX_TRACED_CHUNKS = 32
MAX_HOOKS = 32

_lock = threading.Lock()


# -- settings ----------------------------------------------------------------


class RateLimit:
    """A token bucket: ``rate`` tokens a second, at most ``rate`` saved up; None: no limit."""

    def __init__(self, rate):
        self.rate = rate
        self.tokens = float(rate or 0)
        self.last = time.monotonic()

    def take(self):
        rate = self.rate
        if rate is None:
            return True
        now = time.monotonic()
        tokens = min(rate, self.tokens + (now - self.last) * rate)
        self.last = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


limit = RateLimit(DEFAULT_SPANS_PER_SECOND)
item_spans = False  # task_spans="item": a span per item of a chunk, in the worker


def configure(settings):
    """``settings``: [task_spans_per_second, task_spans] from the process tree's settings."""
    global limit, item_spans
    rate, spans = settings
    limit = RateLimit(rate)
    item_spans = spans == "item"


# -- pickling ----------------------------------------------------------------

_hooks_by_class = {}


class TaskPickler(reduction.ForkingPickler):
    """Pickles exactly as ForkingPickler does, and notes the custom hooks of what it meets.

    ``reducer_override`` returns NotImplemented, so pickling goes on as usual.
    CPython calls it only for objects that are not plain numbers, strings,
    bytes, lists, tuples, dicts or sets, so plain data costs nothing extra.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hooks = []

    def reducer_override(self, obj):
        cls = type(obj)
        hooks = _hooks_by_class.get(cls)
        if hooks is None:
            hooks = _hooks_by_class[cls] = tuple(hooks_of(cls, self.dispatch_table))
        for hook in hooks:
            if hook not in self.hooks and len(self.hooks) < MAX_HOOKS:
                self.hooks.append(hook)
        return NotImplemented


def pickle_message(obj, protocol, note_hooks):
    """(stream, seconds, hooks): ``obj`` pickled as ForkingPickler.dumps would."""
    stream = io.BytesIO()
    began = perf_counter()
    if note_hooks:
        pickler = TaskPickler(stream, protocol)
        pickler.dump(obj)
        return stream, perf_counter() - began, pickler.hooks
    reduction.ForkingPickler(stream, protocol).dump(obj)
    return stream, perf_counter() - began, ()


# Totals of one kind of message: [count, bytes, seconds]. A pool and each of
# its submissions keep two, "sent" (pickle.task) and "received" (unpickle.result).
TASKS_SENT, RESULTS_RECEIVED = "pickle.task", "unpickle.result"


def new_totals():
    return [0, 0, 0.0]


def add(totals, size, seconds):
    """One more message of ``size`` bytes that took ``seconds`` to (un)pickle."""
    totals[0] += 1
    totals[1] += size
    totals[2] += seconds


def merge(totals, more):
    """Add the totals ``more`` to ``totals``."""
    totals[0] += more[0]
    totals[1] += more[1]
    totals[2] += more[2]


def traffic_attributes(sent, received):
    """Span attributes for a pool's or a submission's sent and received totals (those it had)."""
    return _channels.tally_attributes({key: totals for key, totals in ((TASKS_SENT, sent), (RESULTS_RECEIVED, received))
                                       if totals[0]})


def function_name(function):
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(qualname, str):
        return _litespan.safe_str(type(function).__qualname__)
    module = getattr(function, "__module__", None)
    if module == "__mp_main__":
        module = "__main__"
    return "%s.%s" % (module, qualname) if isinstance(module, str) else qualname


def message_span(name, channel, under, size, seconds, message_type, hooks=None):
    """An mp.pickle/mp.unpickle span for one task or result message, under ``under`` (a captured context)."""
    with _spanparent.current(under):
        span = _channels._span(name, channel, size, seconds, message_type)
    if hooks is not None:
        span.set_attribute(semconv.PICKLE_HOOKS, list(hooks))
    return span


def _culprit(sender, obj, api, chunk_size, index):
    """(path, hint) of what in the task message ``obj`` cannot be pickled, as the caller named it; or None."""
    return _fingerprint.find_unpicklable(sender.arguments(obj, api, chunk_size, index))


def item_index(index, chunk_size, position):
    """The index in a map's input of item ``position`` of chunk ``index``: "?" if the chunk size is unknown."""
    if index == 0 or chunk_size:
        return str(index * (chunk_size or 0) + position)
    return "?"


# -- the pool ----------------------------------------------------------------

open_pools = set()  # PoolTraces not ended yet


def has_pools():
    return bool(open_pools)


def forget():
    """A fork child: the pools it inherited are its parent's to end."""
    open_pools.clear()


def end_open_pools(how):
    """This process is exiting: end the pools that are still open."""
    for pool in list(open_pools):
        _log.safely("ending mp.pool", pool.end, how)


class PoolTrace:
    """One pool or executor: the mp.pool span its workers start under, and its totals."""

    def __init__(self, pool_type):
        attributes = {semconv.POOL_TYPE: pool_type}
        self.span = _spanparent.start_span(semconv.SPAN_POOL, _spanparent.capture(), attributes=attributes)
        self.context = _spanparent.of_span(self.span)  # workers start, and helper threads work, in this
        self.parent = _spanparent.ids(self.context)
        self.span_id = "%016x" % self.parent.span_id if self.parent is not None else None  # named by its tasks
        self.sent, self.received = new_totals(), new_totals()
        self.started = 0
        self.replaced = 0
        self.tasks = 0
        self.traced_tasks = 0
        self.pending = set()  # Submissions still waiting for results
        self.traced_chunks_limit = MAX_TRACED_CHUNKS  # per submission; see set_processes
        self.in_full_limit = MAX_TRACED_CHUNKS  # a submission of at most this many chunks is traced in full
        self.ended = False
        open_pools.add(self)

    def set_processes(self, processes):
        """The number of workers the pool keeps, which sets how many of a map's chunks are traced."""
        self.span.set_attribute(semconv.POOL_PROCESSES, processes)
        if isinstance(processes, int) and processes > 0:
            self.traced_chunks_limit = min(MAX_TRACED_CHUNKS, CHUNKS_PER_WORKER * processes)
            self.in_full_limit = min(MAX_TRACED_CHUNKS, CHUNKS_PER_WORKER_IN_FULL * processes)

    def workers_started(self, count, replacing):
        self.started += count
        if replacing:
            self.replaced += count

    def end(self, how, reason=None, failure=None):
        """The pool is gone (``how``: join, terminate, shutdown, broken, exit, failed); so are unfinished tasks.

        ``failure``: (what failed, the exception) when its creation raised; the span ends as ERROR.
        """
        with _lock:
            if self.ended:
                return
            self.ended = True
            unfinished, self.pending = self.pending, set()
            open_pools.discard(self)
        for submission in unfinished:
            _log.safely("ending an unfinished task", submission.abandon, reason or "the pool ended (%s) before "
                        "the task finished" % how)
        span = self.span
        span.set_attributes({
            semconv.POOL_END: how,
            semconv.POOL_WORKERS_STARTED: self.started,
            semconv.POOL_WORKERS_REPLACED: self.replaced,
            semconv.POOL_TASKS: self.tasks,
            semconv.POOL_TASKS_TRACED: self.traced_tasks,
        })
        span.set_attributes(traffic_attributes(self.sent, self.received))
        if failure is not None:
            end_with_error(span, failure[1], failure[0])
        else:
            span.end()


# -- one submission ----------------------------------------------------------


class Submission:
    """One call that submits work, from the caller's side."""

    __slots__ = ("pool", "span", "parent", "expected", "done", "failure", "sent", "received", "hooks", "chunks",
                 "traced_chunks", "chunk_limit", "function", "ended", "registry", "key", "futures", "context_trailer",
                 "api", "first_chunk", "unsent", "unsent_count")

    def __init__(self, pool, api, expected=1, registry=None, key=None, caller=None, traced=None):
        """``caller``, ``traced``: already decided by ``submit()``; else decided here.

        ``registry[key]`` is this submission until it ends (then it is removed).
        """
        self.pool = pool
        self.api = api
        self.first_chunk = None  # items in the first chunk sent: a map's chunk size, for the path of an item
        self.unsent = None  # (exception, why) of the first task message that could not be pickled
        self.unsent_count = 0
        self.registry = registry
        self.key = key
        self.context_trailer = None
        self.futures = None  # an executor's: the futures of its work items
        if caller is None:
            caller = caller_parent(pool)
        if traced is None:
            traced = caller is not None and caller.sampled and limit.take()
        self.parent = caller  # what task messages carry: the mp.task span, else the caller's span
        self.span = None
        if traced:
            self.span = _task_span(caller, api, pool)
            self.parent = _spanparent.Parent(self.span.trace_id, self.span.span_id, True)
        self.expected = expected  # results to wait for; None until known (imap)
        self.done = 0
        self.failure = None
        self.sent, self.received = new_totals(), new_totals()
        self.hooks = []
        self.chunks = 0
        self.traced_chunks = 0
        self.chunk_limit = pool.traced_chunks_limit if limit.rate is not None else float("inf")
        self.function = None
        self.ended = False
        with _lock:
            pool.pending.add(self)

    # -- sending (a pool's task-handler thread, an executor's feeder thread) --

    def pickle(self, obj, protocol, sender):
        """The task message for ``obj``: its pickle, then the trailer for the worker.

        ``sender.describe(obj)``: (function, items) of the task, for the spans;
        ``sender.arguments``: where each thing the task hands its worker sits,
        for a message that fails to pickle. The pool's totals take this
        submission's when it finishes (``_finish``).
        """
        traced = self.span is not None and (self.chunks == 0 or (  # the first rides on the submission's token
            self.traced_chunks < self.chunk_limit and limit.take()))
        try:
            stream, seconds, hooks = pickle_message(obj, protocol, traced)
        except BaseException as exc:
            _log.safely("recording a task that failed to pickle", self._pickle_failed, obj, exc, sender)
            raise
        try:
            size = stream.tell()
            parent = self.parent
            if parent is not None:
                stream.write(self._trailer(parent, traced))
            self.chunks += 1
            add(self.sent, size, seconds)
            if traced or self.function is None or size >= _channels.span_bytes or seconds >= _channels.span_seconds:
                self._noted(obj, size, seconds, hooks, traced, sender.describe)
        except Exception:
            _log.internal_error("counting a task")
        return stream.getbuffer()

    def _trailer(self, parent, traced):
        """The trailer of a traced chunk; or the one all untraced chunks share, made once."""
        if traced:
            return _trailer.encode(_trailer.TASK, parent.trace_id, parent.span_id, _trailer.SAMPLED
                                   | _trailer.TASK_SPAN | (_trailer.ITEM_SPANS if item_spans else 0))
        trailer = self.context_trailer  # the same for every untraced chunk
        if trailer is None:
            trailer = self.context_trailer = context_trailer(parent)
        return trailer

    def _noted(self, obj, size, seconds, hooks, traced, describe):
        """What only some task messages need: a traced one's hooks, the function's name, a notable pickle."""
        if traced:
            self.traced_chunks += 1
            for hook in hooks:
                if hook not in self.hooks:
                    self.hooks.append(hook)
        if self.function is None:  # the first message: chunk 0 of a map, whose size is the map's chunk size
            function, self.first_chunk = describe(obj)
            self.function = function_name(function) if function is not None else ""
        if self.span is not None and (size >= _channels.span_bytes or seconds >= _channels.span_seconds):
            message_span(semconv.SPAN_PICKLE, "task", _spanparent.of_span(self.span), size, seconds,
                         _channels._type_name(obj), hooks).end()

    def _pickle_failed(self, obj, exc, sender):
        """A task message could not be pickled: where the culprit sits, and why, on mp.pickle and mp.task."""
        index = self.chunks + self.unsent_count  # messages go out in order: how many went before this one
        self.unsent_count += 1
        if self.span is not None:
            function, items = sender.describe(obj)
            if self.function is None:
                self.function = function_name(function) if function is not None else ""
            if self.first_chunk is None:
                self.first_chunk = items
            found = _log.safely("finding what could not be pickled", _culprit, sender, obj, self.api,
                                self.first_chunk, index)
            span = message_span(semconv.SPAN_PICKLE, "task", _spanparent.of_span(self.span), None, 0.0,
                                _channels._type_name(obj))
            if found is not None:
                span.set_attribute(semconv.PICKLE_PATH, found[0])
                span.set_attribute(semconv.PICKLE_HINT, found[1])
            where = " at %s" % found[0] if found is not None else ""
            end_with_error(span, exc, "pickling a task failed%s" % where)
            if self.unsent is None:
                self.unsent = (exc, "could not pickle the task%s" % where)
        self.arrived(exc)  # the pool reports it to the caller as the task's outcome

    # -- results (a pool's result-handler thread, an executor's manager thread) --

    def result(self, failure, size, seconds, obj):
        """One result arrived: count it, and end the span if it was the last."""
        add(self.received, size, seconds)
        if self.span is not None and (size >= _channels.span_bytes or seconds >= _channels.span_seconds):
            message_span(semconv.SPAN_UNPICKLE, "result", _spanparent.of_span(self.span), size, seconds,
                         _channels._type_name(obj)).end()
        self.arrived(failure)

    def arrived(self, failure):
        with _lock:
            self.done += 1
            if failure is not None and self.failure is None:
                self.failure = failure
            complete = self._complete()
        if complete:
            self.end()

    def expect(self, expected):
        """The number of results is known now (a map's chunks, an imap's length)."""
        with _lock:
            self.expected = expected
            complete = self._complete()
        if complete:
            self.end()

    def _complete(self):
        """Whether every result is in (the caller holds _lock); the first to see it ends the span."""
        if self.ended or self.expected is None or self.done < self.expected:
            return False
        self._finish()
        return True

    def planned(self, chunks):
        """The number of chunks is known before any is sent: a map that short is traced in full."""
        if chunks <= self.pool.in_full_limit:
            self.chunk_limit = max(self.chunk_limit, chunks)

    def _finish(self):
        """No more results count (the caller holds _lock); the pool takes this submission's totals."""
        self.ended = True
        pool = self.pool
        pool.pending.discard(self)
        pool.tasks += self.chunks
        pool.traced_tasks += self.traced_chunks
        merge(pool.sent, self.sent)
        merge(pool.received, self.received)
        if self.registry is not None:
            self.registry.pop(self.key, None)

    # -- ending --------------------------------------------------------------

    def end(self):
        span = self.span
        if span is None:
            return
        span.set_attributes(traffic_attributes(self.sent, self.received))
        span.set_attributes({semconv.TASK_CHUNKS: self.chunks, semconv.TASK_CHUNKS_TRACED: self.traced_chunks})
        if self.function:
            span.set_attribute(semconv.OTEL_CODE_FUNCTION_NAME, self.function)
        if self.hooks:
            span.set_attribute(semconv.PICKLE_TASK_HOOKS, list(self.hooks))
        failure = self.failure
        if failure is not None:
            unsent = self.unsent
            if unsent is not None and unsent[0] is failure:  # it never ran: not the task's own exception
                span.set_attribute(semconv.TASK_END_REASON, unsent[1])
                end_with_error(span, failure, unsent[1])
            else:
                end_with_error(span, failure, "the task raised")
        else:
            span.end()

    def abandon(self, reason, error_type=None):
        """End without every result: the pool ended or broke. ``error_type`` names why, if known."""
        with _lock:
            if self.ended:
                return
            self._finish()
        span = self.span
        if span is None:
            return
        span.set_attribute(semconv.TASK_END_REASON, reason)
        if self.failure is None:  # else end() reports the task's own exception
            span.set_attribute(semconv.OTEL_ERROR_TYPE, error_type or "unfinished")
            span.set_status(_litespan.STATUS_ERROR, reason)
        self.end()

    def cancel(self):
        with _lock:
            if self.ended:
                return
            self._finish()
        if self.span is not None:
            self.span.set_attribute(semconv.TASK_CANCELLED, True)
            self.end()


def submit(pool, api):
    """What a new one-result submission's task needs.

    A Submission when it gets a span; else only the Parent its task carries
    (the caller's span, so the task function's spans still land there): no
    span to start or end, so an untraced task costs about a microsecond.
    """
    caller = caller_parent(pool)
    if caller is not None and caller.sampled and limit.take():
        return Submission(pool, api, 1, None, None, caller, True)
    return caller


_last_caller = (None, None)  # (the caller's current span object, its Parent): tight loops share one
_get_current_span = None


def caller_parent(pool):
    """The Parent of the caller's current span, else the pool's (None when neither has one)."""
    global _last_caller, _get_current_span
    if not state.is_root():
        return _spanparent.ids(_spanparent.capture()) or pool.parent
    if _get_current_span is None:
        from opentelemetry.trace import get_current_span as _get_current_span
    span = _get_current_span()
    last = _last_caller
    if last[0] is span:
        return last[1]
    context = span.get_span_context()
    if not context.is_valid:
        return pool.parent
    parent = _spanparent.Parent(context.trace_id, context.span_id, bool(context.trace_flags.sampled))
    _last_caller = (span, parent)
    return parent


def context_trailer(parent):
    """The trailer of a task that gets no span of its own: the worker only adopts ``parent``."""
    return _trailer.encode(_trailer.TASK, parent.trace_id, parent.span_id, _trailer.SAMPLED if parent.sampled else 0)


def _task_span(caller, api, pool):
    attributes = {semconv.TASK_API: api}
    if pool.span_id is not None:
        attributes[semconv.TASK_POOL] = pool.span_id
    if state.is_root():
        from mptrace._rootspan import RootSpan

        span = RootSpan(semconv.SPAN_TASK, caller.trace_id, caller.span_id, _litespan.KIND_PRODUCER, attributes)
        span.begin()
        return span
    return state.tracer.start_span(semconv.SPAN_TASK, kind=_litespan.KIND_PRODUCER, attributes=attributes,
                                   parent=caller)


# -- thread roles on the caller's side ----------------------------------------


class TaskSender(_channels.ThreadRole):
    """A thread that pickles tasks.

    ``find(obj)``: what the message belongs to: a Submission, the Parent of an
    untraced task, or None for other messages. ``forget(obj)``: drop an
    untraced task that failed to pickle from its registry (None: nothing to drop).
    ``arguments(obj, api, chunk_size, index)``: the (path, value) pairs a task
    message hands its worker, named as the caller passed them (``func``,
    ``args[0]``, ``iterable[7]``), for finding what failed to pickle.
    """

    receives = False

    def __init__(self, pool, find, describe, forget=None, arguments=None):
        self.pool = pool
        self.find = find
        self.describe = describe
        self.arguments = arguments or _no_arguments
        self.forget = forget
        self._trailer = (None, None)  # (Parent, its trailer): tight loops share one

    def dumps(self, pickler, obj, protocol):
        entry = self.find(obj)
        if entry is None:
            return pickler.dumps(obj, protocol, _role_checked=True)
        try:
            return self._pickle(obj, protocol, entry)
        except BaseException as exc:
            entry = None  # this frame stays in the traceback: it must not keep the Submission (which keeps exc)
            _log.safely("letting go of a failed task's frames", _channels.release_frames, exc)
            raise

    def _pickle(self, obj, protocol, entry):
        if type(entry) is _spanparent.Parent:
            return self._untraced(obj, protocol, entry)
        return entry.pickle(obj, protocol, self)

    def put_for(self, put):
        """A stand-in for a Pool task handler's ``put`` (its pipe's ``Connection.send``).

        It pickles tasks itself and hands the bytes to the connection's
        ``_send_bytes``, as ``send`` would: a map's thousands of chunks a second
        then skip ``send``'s own checks and this thread's role lookup. Anything
        else (the end-of-work sentinels), and every message once the pipe is
        closed (so the error is ``send``'s own), goes through ``put``.
        """
        connection = getattr(put, "__self__", None)
        if getattr(put, "__name__", None) != "send" or not hasattr(connection, "_send_bytes"):
            return put  # not what this CPython was known to pass: the role sees the tasks instead
        find, pickle = self.find, self._pickle

        def send_task(task):
            entry = find(task)
            if entry is None or connection._handle is None:
                return put(task)
            try:
                message = pickle(task, None, entry)
            except BaseException as exc:
                entry = None  # as in dumps: the traceback keeps this frame, which must not keep the Submission
                _log.safely("letting go of a failed task's frames", _channels.release_frames, exc)
                raise
            connection._send_bytes(message)

        return send_task

    def _untraced(self, obj, protocol, parent):
        """An untraced task: its pickle, the caller's context, and the pool's totals."""
        try:
            stream, seconds, _ = pickle_message(obj, protocol, False)
        except BaseException:
            if self.forget is not None:
                _log.safely("forgetting a task that failed to pickle", self.forget, obj)
            raise
        try:
            size = stream.tell()
            last_parent, trailer = self._trailer
            if last_parent is not parent:
                trailer = context_trailer(parent)
                self._trailer = (parent, trailer)
            stream.write(trailer)
            pool = self.pool
            if pool is not None:
                pool.tasks += 1
                add(pool.sent, size, seconds)
        except Exception:
            _log.internal_error("counting a task")
        return stream.getbuffer()


def _no_arguments(obj, api, chunk_size, index):
    return [("task", obj)]


class ResultReceiver(_channels.ThreadRole):
    """A thread that unpickles results: ``outcome(obj)`` is (Submission or None, exception or None)."""

    sends = False

    def __init__(self, outcome, pool):
        self.outcome = outcome
        self.pool = pool

    def loads(self, loads, data, args, kwargs):
        if args or kwargs:  # not how multiprocessing reads its messages: counted as any other
            return loads(data, *args, _role_checked=True, **kwargs)
        return self.receive(data)

    def get_for(self, get):
        """A stand-in for a Pool result handler's ``get`` (its pipe's ``Connection.recv``).

        Reads the message with the connection's ``_recv_bytes`` and unpickles it
        here, as ``recv`` would, without ``recv``'s checks and this thread's role
        lookup; once the pipe is closed, ``get`` itself raises its own error.
        """
        connection = getattr(get, "__self__", None)
        if getattr(get, "__name__", None) != "recv" or not hasattr(connection, "_recv_bytes"):
            return get  # not what this CPython was known to pass: the role sees the results instead
        receive = self.receive

        def receive_result():
            if connection._handle is None:
                return get()
            return receive(connection._recv_bytes().getbuffer())

        return receive_result

    def receive(self, data):
        """The message in ``data``, unpickled, counted, and given to its Submission."""
        began = perf_counter()
        try:
            obj = forking_loads(data)
        except BaseException as exc:
            _log.safely("recording a result that failed to unpickle", self._failed, data, exc, perf_counter() - began)
            raise
        seconds = perf_counter() - began
        if obj is not None:  # else a sentinel, not a result
            try:
                entry, failure = self.outcome(obj)
                if type(entry) is Submission:
                    entry.result(failure, len(data), seconds, obj)
                else:
                    add(self.pool.received, len(data), seconds)
            except Exception:
                _log.internal_error("counting a result")
        return obj

    def _failed(self, data, exc, seconds):
        with _spanparent.current(self.pool.context):
            _channels._load_failed("result", data, exc, seconds)
