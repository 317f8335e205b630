"""concurrent.futures.ProcessPoolExecutor: workers in the creator's trace, tasks from caller to worker.

An executor hands work to its manager thread, which queues ``_CallItem``s on
the call queue; that queue's feeder thread pickles them; the manager thread
unpickles ``_ResultItem``s and completes the futures. Both threads start with
an empty context. mptrace finds an executor's ``PoolTrace`` by its call queue,
which each of them holds.

Patches (wrapt unless noted):

* ``ProcessPoolExecutor.__init__``: opens mp.pool;
* ``_spawn_process``: every worker starts under mp.pool, whether ``submit``
  or, after ``max_tasks_per_child``, the manager thread starts it;
* ``submit`` and ``map``: open a Submission in the caller's thread (a map is
  one Submission for all its chunks); ``_WorkItem.__init__`` (plain) ties the
  work item to it before the manager thread can see it;
* the call queue's buffer (``_channels.ContextBuffer``) gives the feeder
  thread a role that pickles call items with the trailer;
* ``_ExecutorManagerThread.run``: the manager thread's role reads results and
  ends each ``mp.task`` before its future is set; when the thread ends, so does
  mp.pool; ``terminate_broken`` ends the waiting tasks as ERROR
  (BrokenProcessPool) and ``flag_executor_shutting_down`` the cancelled ones.
"""

import threading
import weakref

from mptrace import _channels, _log, _spanparent, _tasks, semconv
from mptrace._state import state

POOL_TYPE = "concurrent.futures.ProcessPoolExecutor"

traces = weakref.WeakKeyDictionary()  # an executor's call queue -> its PoolTrace
_submitting = threading.local()  # .submission: the Submission a work item being made belongs to


def has_pools():
    return bool(traces)


def forget():
    """A fork child: the executors it inherited are its parent's."""
    traces.clear()


def _trace_of(executor):
    queue = getattr(executor, "_call_queue", None)
    return traces.get(queue) if queue is not None and traces else None


# -- the executor and its workers --------------------------------------------


def init_wrapper(wrapped, executor, args, kwargs):
    result = wrapped(*args, **kwargs)
    if state.active():
        _log.safely("opening mp.pool", _open_pool, executor)
    return result


def _open_pool(executor):
    trace = _tasks.PoolTrace(POOL_TYPE)
    trace.set_processes(executor._max_workers)
    attributes = {}
    max_tasks = getattr(executor, "_max_tasks_per_child", None)
    if max_tasks is not None:
        attributes[semconv.POOL_MAX_TASKS] = max_tasks
    method = _log.safely("reading an executor's start method", executor._mp_context.get_start_method)
    if method:
        attributes[semconv.START_METHOD] = method
    trace.span.set_attributes(attributes)
    queue = executor._call_queue
    traces[queue] = trace
    role = getattr(queue._buffer, "role", None)  # the feeder's role, made before the pool was known
    if role is not None:
        role.pool = trace


def spawn_process_wrapper(wrapped, executor, args, kwargs):
    trace = _trace_of(executor)
    if trace is None:
        return wrapped(*args, **kwargs)
    result = _spanparent.run_in(trace.context, wrapped, *args, **kwargs)
    trace.workers_started(1, replacing=trace.started >= executor._max_workers)
    return result


def shutdown_wrapper(wrapped, executor, args, kwargs):
    trace = _trace_of(executor)
    manager_running = getattr(executor, "_executor_manager_thread", None) is not None
    result = wrapped(*args, **kwargs)
    if trace is not None and not manager_running:  # else the manager thread ends mp.pool when it is done
        _log.safely("ending mp.pool", _end_pool, trace, "shutdown")
    return result


# -- submissions -------------------------------------------------------------


def submit_wrapper(wrapped, executor, args, kwargs):
    trace = _trace_of(executor) if state.active() else None
    if trace is None:
        return wrapped(*args, **kwargs)
    in_map = getattr(_submitting, "map", None)
    submission = in_map or _log.safely("opening mp.task", _tasks.submit, trace, "ProcessPoolExecutor.submit")
    _submitting.submission = submission
    try:
        future = wrapped(*args, **kwargs)
    except BaseException as exc:
        if type(submission) is _tasks.Submission and in_map is None:
            _log.safely("ending a task that was never submitted", submission.abandon,
                        "submit() raised %s" % type(exc).__name__, type(exc).__name__)
        raise
    finally:
        _submitting.submission = None
    if in_map is not None:
        _submitting.map_chunks += 1
    return future


def map_wrapper(wrapped, executor, args, kwargs):
    """Executor.map submits every chunk before it returns (3.14's ``buffersize`` excepted)."""
    trace = _trace_of(executor) if state.active() else None
    if trace is None or getattr(_submitting, "map", None) is not None:
        return wrapped(*args, **kwargs)
    submission = _log.safely("opening mp.task", _tasks.Submission, trace, "ProcessPoolExecutor.map", None)
    chunks = _log.safely("counting a map's chunks ahead", _chunks_ahead, args, kwargs)
    if submission is not None and chunks is not None:
        submission.planned(chunks)
    _submitting.map, _submitting.map_chunks = submission, 0
    try:
        return wrapped(*args, **kwargs)
    finally:
        _submitting.map = None
        if submission is not None:
            _log.safely("counting a map's chunks", submission.expect, _submitting.map_chunks)


_SIZED = (list, tuple, range, str, bytes, dict, set, frozenset)


def _chunks_ahead(args, kwargs):
    """How many chunks ``map(fn, *iterables, chunksize=1)`` will submit, where its iterables' sizes are known
    without running user code (built-in containers); else None."""
    iterables, chunksize = args[1:], kwargs.get("chunksize", 1)
    if not iterables or type(chunksize) is not int or chunksize < 1 or any(type(i) not in _SIZED for i in iterables):
        return None
    return -(-min(len(i) for i in iterables) // chunksize)


def work_item_init(original):
    """``_WorkItem.__init__(future, fn, args, kwargs)``: tie the work item to its Submission."""

    def __init__(self, future, *args, **kwargs):
        original(self, future, *args, **kwargs)
        submission = getattr(_submitting, "submission", None)
        if submission is not None:
            self._mptrace = submission
            if type(submission) is _tasks.Submission:
                submission.futures = (submission.futures or []) + [future]

    return __init__


# -- the feeder thread: call items out ---------------------------------------


def sender_for(queue):
    """The feeder-thread role of an executor's call queue, or None for other queues."""
    if type(queue).__name__ != "_SafeQueue" or not hasattr(queue, "pending_work_items"):
        return None
    work_items = queue.pending_work_items

    def submission_of(obj):
        if type(obj).__name__ != "_CallItem":
            return None
        return getattr(work_items.get(obj.work_id), "_mptrace", None)

    return _tasks.TaskSender(None, submission_of, describe_call, arguments=call_arguments)  # pool: _open_pool


def describe_call(call_item):
    """(the user's function, items in the chunk or None) of a _CallItem."""
    function = call_item.fn
    inner = getattr(function, "func", None)  # map: partial(_process_chunk, fn)
    if getattr(inner, "__name__", None) == "_process_chunk" and getattr(function, "args", None):
        chunk = call_item.args[0] if call_item.args else ()
        return function.args[0], len(chunk)
    return function, None


def call_arguments(call_item, api, chunk_size, index):
    """(path, value) of what a call item hands its worker, named as the caller passed them: for one that
    failed to pickle. ``fn``, ``args[0]``, ``kwargs['x']``; a map's items as ``iterable[7]`` (one iterable)
    or ``iterables[1][7]``; ``index``: how many of the submission's call items went before this one."""
    user_function, items = describe_call(call_item)
    if items is None:
        return [("fn", call_item.fn)] + [("args[%d]" % i, a) for i, a in enumerate(call_item.args)] + \
            [("kwargs[%r]" % (key,), value) for key, value in dict(call_item.kwargs).items()]
    found = [("fn", user_function)]
    for position, arguments in enumerate(call_item.args[0]):  # one tuple per item: its value from each iterable
        item = _tasks.item_index(index, chunk_size, position)
        if len(arguments) == 1:
            found.append(("iterable[%s]" % item, arguments[0]))
        else:
            found += [("iterables[%d][%s]" % (i, item), a) for i, a in enumerate(arguments)]
    return found


# -- the manager thread: results in, the end ---------------------------------


def manager_run_wrapper(wrapped, manager, args, kwargs):
    trace = traces.get(getattr(manager, "call_queue", None)) if traces else None
    if trace is None:
        return wrapped(*args, **kwargs)

    def outcome(obj):
        if type(obj).__name__ != "_ResultItem":
            return None, None
        work_item = manager.pending_work_items.get(obj.work_id)
        return getattr(work_item, "_mptrace", None), obj.exception

    _log.safely("giving the manager thread its role", _channels.assume_role, _tasks.ResultReceiver(outcome, trace))
    try:
        return _spanparent.run_in(trace.context, wrapped, *args, **kwargs)
    finally:
        _log.safely("taking the manager thread's role", _channels.drop_role)
        _log.safely("ending mp.pool", _end_pool, trace, "broken" if getattr(manager, "_mptrace_broken", False)
                    else "shutdown")


def terminate_broken_wrapper(wrapped, manager, args, kwargs):
    _log.safely("ending tasks a broken pool loses", _abandon_waiting, manager)
    return wrapped(*args, **kwargs)


def _abandon_waiting(manager):
    manager._mptrace_broken = True
    for work_item in list(manager.pending_work_items.values()):
        submission = getattr(work_item, "_mptrace", None)
        if submission is not None:
            submission.abandon("a process in the pool was terminated abruptly while the task was running or "
                               "pending", "concurrent.futures.process.BrokenProcessPool")


def _end_pool(trace, how):
    for submission in list(trace.pending):
        if any(future.cancelled() for future in submission.futures or ()):
            submission.cancel()
    trace.end(how)


# -- patching ----------------------------------------------------------------

WRAPPED = (
    ("ProcessPoolExecutor", "__init__", init_wrapper),
    ("ProcessPoolExecutor", "_spawn_process", spawn_process_wrapper),
    ("ProcessPoolExecutor", "submit", submit_wrapper),
    ("ProcessPoolExecutor", "map", map_wrapper),
    ("ProcessPoolExecutor", "shutdown", shutdown_wrapper),
    ("_ExecutorManagerThread", "run", manager_run_wrapper),
    ("_ExecutorManagerThread", "terminate_broken", terminate_broken_wrapper),
)


def instrument(patches):
    import concurrent.futures.process as cfp

    for class_name, attribute, wrapper in WRAPPED:
        owner = getattr(cfp, class_name, None)
        if owner is not None and attribute in vars(owner) and not patches.is_patched(owner, attribute):
            patches.wrap(owner, attribute, wrapper)
    if not patches.is_patched(cfp._WorkItem, "__init__"):
        patches.replace(cfp._WorkItem, "__init__", work_item_init(vars(cfp._WorkItem)["__init__"]))
