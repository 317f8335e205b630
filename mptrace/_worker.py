"""The worker's side of Pool and executor tasks: mp.task.run and mp.pool.initializer.

A Pool worker (``multiprocessing.pool.worker``) and an executor worker
(``concurrent.futures.process._process_worker``) loop in their main thread:
get a task, call it, put the result. mptrace gives that thread a role (see
``_channels.loads_roles``), and a Pool worker's task queue a stand-in for its
``get`` that hands each task to the role directly:

* a task message that arrives with a trailer (``_trailer``) begins an
  ``mp.task.run`` span under the caller's ``mp.task`` (the START record is on
  disk at once, so a worker that dies mid-task leaves a span the root ends as
  ERROR), and, where OpenTelemetry is in use, the span becomes current: the
  task function's own spans nest under it;
* pickling that task's result ends the span, before the result is sent
  (the role sees what the thread pickles only while a traced task runs).

Nothing wraps the task function, so tracebacks stay as they were. The pool's
initializer runs inside ``mp.pool.initializer``, from the worker's start to
its first request for a task.

Standard library only: spawn workers load this on their start-up path.
"""

import time
from threading import get_ident

from mptrace import _channels, _litespan, _log, _tasks, _trailer, semconv
from mptrace._state import state

perf_counter = time.perf_counter
forking_loads = _tasks.forking_loads  # pickle.loads, as multiprocessing calls it
_TRAILER_SIZE = _trailer.SIZE


class PoolShapes:
    """Pool messages: task (job, index, func, args, kwds); result (job, index, (success, value))."""

    @staticmethod
    def task_key(obj):
        return (obj[0], obj[1]) if type(obj) is tuple and len(obj) == 5 else None

    @staticmethod
    def result_key(obj):
        return (obj[0], obj[1]) if type(obj) is tuple and len(obj) == 3 else None

    @staticmethod
    def failure(result):
        outcome = result[2]
        return outcome[1] if type(outcome) is tuple and len(outcome) == 2 and not outcome[0] else None

    @staticmethod
    def describe(task):
        function, items = _pool_describe_task(task)
        return function, items, task[1]

    @staticmethod
    def with_item_spans(task, spans_for):
        """The task, its chunk's function replaced by ``spans_for(function)``: a new tuple."""
        job, index, runner, args, kwds = task
        if PoolShapes.describe(task)[1] is None:  # not a chunk
            return task
        function, chunk = args[0]
        return job, index, runner, ((spans_for(function), chunk),) + tuple(args[1:]), kwds


def _pool_describe_task(task):
    from mptrace._pool import describe_task  # not at import: spawn workers of executors never need _pool

    global _pool_describe_task
    _pool_describe_task = describe_task
    return describe_task(task)


class ExecutorShapes:
    """Executor messages: task _CallItem(work_id, fn, args, kwargs); result _ResultItem(work_id, ...)."""

    @staticmethod
    def task_key(obj):
        return obj.work_id if type(obj).__name__ == "_CallItem" else None

    @staticmethod
    def result_key(obj):
        return obj.work_id if type(obj).__name__ == "_ResultItem" else None

    @staticmethod
    def failure(result):
        return result.exception

    @staticmethod
    def describe(task):
        from mptrace._executor import describe_call

        function, items = describe_call(task)
        return function, items, None

    @staticmethod
    def with_item_spans(task, spans_for):
        """The call item, its chunk's function replaced by ``spans_for(function)``."""
        if ExecutorShapes.describe(task)[1] is None:  # not a chunk
            return task
        import functools

        chunk_runner = task.fn
        task.fn = functools.partial(chunk_runner.func, spans_for(chunk_runner.args[0]), *chunk_runner.args[1:],
                                    **chunk_runner.keywords)
        return task


WORKERS = {
    ("multiprocessing.pool", "worker"): PoolShapes,
    ("concurrent.futures.process", "_process_worker"): ExecutorShapes,
}


def recognise(run, process):
    """If ``process`` is a pool or executor worker, trace its tasks (in its main thread)."""
    target = getattr(process, "_target", None)
    shapes = WORKERS.get((getattr(target, "__module__", None), getattr(target, "__qualname__", None)))
    if shapes is None:
        return
    role = WorkerRole(run, shapes)
    if run.tree.get("carry", True):
        from mptrace._carryover import Carryover

        watch = run.module_watch()
        role.carry = Carryover(watch, watch.key)
    _channels.assume_role(role)
    run.closers.append(role.close)
    run.on_late_wiring.append(role.opentelemetry_arrived)
    args = tuple(getattr(process, "_args", ()))
    if shapes is PoolShapes and args:
        _log.safely("standing in for a pool worker's get", role.stand_in_for_get, args[0])
    if len(args) > 2 and args[2] is not None:
        role.start_initializer(args[2], args[0])


class TaskRun:
    """The task a worker is running: its key and its span (if traced)."""

    __slots__ = ("key", "span", "unpickled")

    def __init__(self, key, span, unpickled):
        self.key = key
        self.span = span
        self.unpickled = unpickled  # (bytes, seconds)


class WorkerRole(_channels.ThreadRole):
    sends = False  # only while a task with a span runs: see _running

    def __init__(self, run, shapes):
        self.run = run
        self.shapes = shapes
        self.task = None
        self.initializer = None
        self.adopted = None  # (trace_id, span_id, sampled) made current for tasks
        self.adopted_trailer = None  # the bytes of the untraced tasks' trailer that set ``adopted``
        self.get_stand_in = None  # a Pool worker's inqueue.get, once stood in for
        self.carry = None  # a Carryover: what tasks leave changed for the next ones (None: not looked for)

    # -- a task arrives ----------------------------------------------------

    def loads(self, loads, data, args, kwargs):
        if args or kwargs:  # not how multiprocessing reads its messages
            return loads(data, *args, _role_checked=True, **kwargs)
        return self.receive(data, loads)

    def stand_in_for_get(self, queue):
        """A Pool worker's ``inqueue.get``: SimpleQueue.get's own lock and pipe, the task read by ``receive``.

        The worker binds ``get = inqueue.get`` before its loop, so an attribute
        of the queue object is what every task comes through. It spares each of
        a map's chunks the channel pickler's lookup of this thread's role. It
        also ends mp.pool.initializer at the worker's first request for a task.
        """
        from multiprocessing import queues

        other = queues._ForkingPickler
        if type(queue) is not queues.SimpleQueue or getattr(other, "mptrace_channel", None) is None:
            return  # not what CPython 3.9 to 3.14 passes: the role sees the tasks instead
        lock, reader, other_loads, receive, role = queue._rlock, queue._reader, other.loads, self.receive, self

        def get():
            if role.initializer is not None:
                _log.safely("ending mp.pool.initializer", role._end_initializer)
            with lock:
                data = reader.recv_bytes()
            return receive(data, other_loads)

        state.patches.replace(queue, "get", get)
        self.get_stand_in = get

    def receive(self, data, other_loads):
        """The message in ``data``: a task (its trailer read) or, through ``other_loads``, anything else."""
        if (self.adopted_trailer is not None and self.task is None and self.initializer is None
                and data[-_TRAILER_SIZE:] == self.adopted_trailer):
            # The hot path: another chunk of the same map, nothing new to read or adopt.
            try:
                task = forking_loads(data)
            except BaseException as exc:
                _log.safely("recording a task that failed to unpickle", _channels._load_failed, "task", data, exc,
                            0.0)
                raise
            if self.carry is not None:
                self._look_between_tasks()
            return task
        trailer = _trailer.read(data)
        if trailer is None or trailer[0] != _trailer.TASK:
            return other_loads(data, _role_checked=True)
        if not trailer[3] & _trailer.TASK_SPAN:
            return self._untraced(data, trailer)
        began = perf_counter()
        try:
            obj = forking_loads(data)
        except BaseException as exc:
            _log.safely("recording a task that failed to unpickle", _channels._load_failed, "task", data, exc,
                        perf_counter() - began)
            raise
        seconds = perf_counter() - began
        begun = _log.safely("starting mp.task.run", self._begin, obj, trailer, len(data) - _trailer.SIZE, seconds)
        return obj if begun is None else begun

    def _untraced(self, data, trailer):
        """A task without a span of its own: only its caller's context is adopted."""
        try:
            task = forking_loads(data)
        except BaseException as exc:
            _log.safely("recording a task that failed to unpickle", _channels._load_failed, "task", data, exc, 0.0)
            raise
        try:
            self._next_task()
            self._adopt((trailer[1], trailer[2], bool(trailer[3] & _trailer.SAMPLED)))
            self.adopted_trailer = bytes(data[-_TRAILER_SIZE:])
        except Exception:
            _log.internal_error("adopting a task's context")
        if self.carry is not None:
            self._look_between_tasks()
        return task

    def _look_between_tasks(self, traced=False):
        """A task arrived: count what the previous one left changed (see _carryover)."""
        try:
            if self.carry.task_arrived(traced) and self.carry.progress_due():
                self._write_carried()
        except Exception:
            _log.internal_error("looking for state the previous task left changed")
            self._stop_looking()

    def _stop_looking(self):
        """The look failed: it stops (logged once), and the run span claims nothing it cannot tell."""
        self.carry = None
        for key in (semconv.WORKER_CARRIED, semconv.WORKER_CARRIED_TASKS, semconv.WORKER_TASKS_CHECKED,
                    semconv.WORKER_TASKS_CHECKED_IN_FULL):
            self.run.run_span.attributes.pop(key, None)

    def _write_carried(self):
        """What the tasks were seen changing, on the run span now: a worker its pool terminates never ends it."""
        span = self.run.run_span
        span.set_attributes(self.carry.attributes(semconv))
        span.rewrite_start()

    def _next_task(self):
        """A task arrived: the initializer has returned, and the previous task has no result coming."""
        if self.initializer is not None:
            self._end_initializer()
        if self.task is not None:
            self._abandon_task("the next task arrived before this one's result")

    def _begin(self, task, trailer, size, seconds):
        """Begin the task's span; returns the task to run (with item spans, if asked for)."""
        key = self.shapes.task_key(task)
        if key is None:
            return task
        self._next_task()
        _, trace_id, parent_id, flags = trailer
        if self.carry is not None and flags & _trailer.TASK_SPAN:
            self._look_between_tasks(traced=True)  # the task's own changes are looked for when it ends
        sampled = bool(flags & _trailer.SAMPLED)
        span = None
        if flags & _trailer.TASK_SPAN:
            function, items, index = self.shapes.describe(task)
            attributes = {semconv.OTEL_CODE_FUNCTION_NAME: _tasks.function_name(function)}
            if index is not None:
                attributes[semconv.TASK_INDEX] = index
            if items is not None:
                attributes[semconv.TASK_ITEMS] = items
            span = _litespan.LiteSpan(self.run.writer, semconv.SPAN_TASK_RUN, trace_id, parent_id,
                                      _litespan.KIND_CONSUMER, attributes, sampled, parent_remote=True)
            parent_id = span.span_id
        self._adopt((trace_id, parent_id, sampled))
        self._running(TaskRun(key, span, (size, seconds)))
        if span is not None and flags & _trailer.ITEM_SPANS:
            return self.shapes.with_item_spans(task, lambda function: ItemSpans(function, self.run, span))
        return task

    def _adopt(self, ids):
        """Make the task's span (or its caller's) current for the task function's own spans.

        Nothing of the user's runs between tasks, so it stays current until the
        next task; untraced tasks from one caller share it, and pay nothing here.
        """
        if ids != self.adopted:
            _make_current(self.run, *ids)
            self.adopted = ids
            self.adopted_trailer = None

    def opentelemetry_arrived(self):
        """The task (or the initializer) imported OpenTelemetry: its span becomes current only now."""
        run = self.run
        if self.initializer is not None:
            span, _ = self.initializer
            self.initializer = (span, _make_current(run, span.trace_id, span.span_id, span.sampled))
        elif self.adopted is not None:
            _make_current(run, *self.adopted)

    # -- its result leaves -------------------------------------------------

    def dumps(self, pickler, obj, protocol):
        task = self.task
        if task is None or self.shapes.result_key(obj) != task.key:
            return pickler.dumps(obj, protocol, _role_checked=True)
        try:
            stream, seconds, hooks = _tasks.pickle_message(obj, protocol, task.span is not None)
        except BaseException as exc:
            _log.safely("recording a result that failed to pickle", self._result_failed, obj, exc)
            raise  # the worker sends the error as the result instead
        _log.safely("ending mp.task.run", self._end, obj, stream.tell(), seconds, hooks)
        return stream.getbuffer()

    def _running(self, task):
        """``task`` (a TaskRun, or None) is running: while one is, this role pickles what the thread sends."""
        self.task = task
        if task is None:
            _channels.dumps_roles.pop(get_ident(), None)
        else:
            _channels.dumps_roles[get_ident()] = self

    def _take_task(self):
        """The running TaskRun (or None); from now on nothing runs."""
        task = self.task
        self._running(None)
        return task

    def _end(self, result, size, seconds, hooks):
        task = self._take_task()
        span = task.span
        if span is None:
            return
        attributes = _channels.totals_attributes("unpickle.task", 1, *task.unpickled)
        attributes.update(_channels.totals_attributes("pickle.result", 1, size, seconds))
        if hooks:
            attributes[semconv.PICKLE_RESULT_HOOKS] = list(hooks)
        if self.carry is not None:
            looked = _log.safely("looking for state the task changed", self.carry.task_ended)
            changed = looked[0] if looked is not None else None
            if changed is not None:  # else it could not tell: no "nothing changed"
                attributes[semconv.TASK_CHANGED] = changed
                attributes[semconv.TASK_CHANGED_LOOK] = "full" if looked[1] else "shallow"
            else:
                self._stop_looking()
            if changed:  # a traced task: rate-limited already, so its findings are written at once
                _log.safely("writing the state the tasks left changed", self._write_carried)
        span.set_attributes(attributes)
        if size >= _channels.span_bytes or seconds >= _channels.span_seconds:
            self._message_span(semconv.SPAN_PICKLE, span, size, seconds, result).end()
        failure = self.shapes.failure(result)
        if failure is not None:
            _record_failure(span, failure)
        span.end()

    def _result_failed(self, result, exc):
        task = self.task
        if task.span is None:
            return
        from mptrace import _fingerprint, _pickling

        span = self._message_span(semconv.SPAN_PICKLE, task.span, None, 0.0, result)
        found = _fingerprint.find_unpicklable([("result", result)])
        if found is not None:
            span.set_attribute(semconv.PICKLE_PATH, found[0])
            span.set_attribute(semconv.PICKLE_HINT, found[1])
        where = " at %s" % found[0] if found is not None else ""
        _pickling.end_with_error(span, exc, "pickling the result failed%s" % where)

    def _message_span(self, name, under, size, seconds, obj):
        span = _litespan.LiteSpan(self.run.writer, name, under.trace_id, under.span_id,
                                  attributes={semconv.PICKLE_CHANNEL: "result"}, sampled=under.sampled, begin=False)
        span.set_attribute(semconv.PICKLE_TYPE, _channels._type_name(obj))
        if size is not None:
            span.set_attribute(semconv.PICKLE_BYTES, size)
        span.begin(time.time_ns() - int(seconds * 1e9))
        return span

    # -- the initializer ---------------------------------------------------

    def start_initializer(self, initializer, task_queue):
        """mp.pool.initializer from now until the worker first asks ``task_queue`` for a task."""
        run = self.run
        span = _litespan.LiteSpan(run.writer, semconv.SPAN_POOL_INITIALIZER, run.run_span.trace_id,
                                  run.run_span.span_id, attributes={
                                      semconv.OTEL_CODE_FUNCTION_NAME: _tasks.function_name(initializer)},
                                  sampled=run.run_span.sampled)
        outer = _make_current(run, span.trace_id, span.span_id, span.sampled)
        self.initializer = (span, outer)
        if self.get_stand_in is not None:
            return  # it ends the initializer's span itself
        original_get = task_queue.get
        role = self

        def get(*args, **kwargs):  # the worker's first request for a task: the initializer has returned
            if role.initializer is not None:
                role._end_initializer()
            if vars(task_queue).get("get") is get and role.shapes is ExecutorShapes:
                del task_queue.get  # looked up per call: back to the class's own
            return original_get(*args, **kwargs)

        task_queue.get = get  # a Pool worker binds inqueue.get before calling the initializer

    def _end_initializer(self, failure=None):
        if self.initializer is None:
            return
        (span, outer), self.initializer = self.initializer, None
        _restore(self.run, outer)
        if failure is not None:
            _record_failure(span, failure, "the initializer did not finish")
        else:
            from mptrace import _child

            _child.record_random_states(self.run)  # what the tasks start from: an initializer may reseed
        span.end()

    # -- the worker ends ---------------------------------------------------

    def close(self, exitcode, exception):
        """The worker is exiting: what is still open ended with it."""
        if self.initializer is not None:
            self._end_initializer(exception or "the worker exited (code %s) before its first task" % exitcode)
        task = self._take_task()
        if self.carry is not None:
            try:
                self._close_carried()
            except Exception:
                _log.internal_error("recording the state the tasks left changed")
                _log.safely("forgetting the state the tasks left changed", self._stop_looking)
        if task is not None and task.span is not None:
            task.span.set_attribute(semconv.TASK_END_REASON, "the worker exited (code %s) during the task" % exitcode)
            _record_failure(task.span, exception or "the worker exited during the task")
            task.span.end()

    def _close_carried(self):
        carry = self.carry
        if not carry.looked and not carry.checked:
            return  # no task ran here: nothing to say
        carry.task_arrived()  # what the last task left
        self.run.run_span.set_attributes(carry.attributes(semconv))
        self.run.end_template = None  # a fork worker's prebuilt END lacks these attributes

    def _abandon_task(self, reason):
        task = self._take_task()
        if task is not None and task.span is not None:
            task.span.set_attribute(semconv.TASK_END_REASON, reason)
            task.span.set_status(_litespan.STATUS_ERROR, reason)
            task.span.end()


class ItemSpans:
    """task_spans="item": calls the chunk's function, each call in an mp.task.item span.

    Unlike the rest of the worker's tracing, this puts one frame of mptrace's
    in the traceback of an item that raises: the price of asking for item spans.
    """

    def __init__(self, function, run, chunk_span):
        self.function = function
        self.run = run
        self.chunk_span = chunk_span
        self.index = 0

    def __call__(self, *args, **kwargs):
        chunk_span = self.chunk_span
        span = _litespan.LiteSpan(self.run.writer, semconv.SPAN_TASK_ITEM, chunk_span.trace_id, chunk_span.span_id,
                                  attributes={semconv.TASK_INDEX: self.index}, sampled=chunk_span.sampled)
        self.index += 1
        outer = _make_current(self.run, span.trace_id, span.span_id, span.sampled)
        try:
            return self.function(*args, **kwargs)
        except BaseException as exc:
            _record_failure(span, exc)
            raise
        finally:
            _restore(self.run, outer)
            span.end()


def _record_failure(span, failure, what="the task raised"):
    """An exception (or the worker's wrapper of one, or a description) on a worker-side span."""
    if isinstance(failure, str):
        span.set_status(_litespan.STATUS_ERROR, failure)
        return
    original, remote_traceback = _unwrap(failure)
    attributes = {"exception.stacktrace": remote_traceback} if remote_traceback else None
    span.record_exception(original, attributes, escaped=True)
    from mptrace._fingerprint import type_name

    span.set_attribute(semconv.OTEL_ERROR_TYPE, type_name(type(original)))
    span.set_status(_litespan.STATUS_ERROR, "%s: %s: %s" % (what, type(original).__name__,
                                                            _litespan.safe_str(original)))


def _unwrap(failure):
    """(exception, traceback text): multiprocessing sends an exception wrapped with its traceback."""
    original, text = getattr(failure, "exc", None), getattr(failure, "tb", None)
    if isinstance(original, BaseException) and isinstance(text, str):
        return original, text.strip().strip('"').strip()
    return failure, None


_otel = None  # (opentelemetry.context, _otel_child.run_context) once a worker uses them


def _make_current(run, trace_id, span_id, sampled):
    """Make this span current for the user's OpenTelemetry spans; returns what to restore."""
    global _otel
    if not run.otel_wired:
        return None
    if _otel is None:
        from opentelemetry import context

        from mptrace._otel_child import run_context

        _otel = (context, run_context)
    context, run_context = _otel
    outer = context.get_current()
    context.attach(run_context(trace_id, span_id, sampled))
    return outer


def _restore(run, outer):
    if outer is not None:
        _otel[0].attach(outer)
