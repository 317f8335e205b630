"""multiprocessing.Pool: workers in the creator's trace, tasks from caller to worker.

A Pool's three helper threads run with an empty context: the worker handler
starts replacement workers, the task handler pickles tasks, the result
handler unpickles results. mptrace finds a pool's ``PoolTrace`` from any of
them by the pool's result queue (``outqueue``), which every one receives.

Patches (wrapt unless noted):

* ``Pool._repopulate_pool``: opens mp.pool once ``__init__`` has checked its
  arguments (so a refused ``Pool()`` leaves nothing behind), and ends it as
  failed if the first workers cannot start (ThreadPool inherits it: thread
  pools are not traced);
* ``Pool._repopulate_pool_static``: starts workers under mp.pool, initial ones
  and replacements alike, and counts them;
* ``Pool._handle_workers``: the worker handler thread runs in the pool's
  context (what it reads from the pool's change notifier is counted on mp.pool,
  never a span in a trace of its own);
* ``Pool._handle_tasks`` / ``_handle_results``: the helper threads get the
  pool's context, and stand-ins for the ``put`` and ``get`` they are started
  with, which pickle tasks (with the trailer) and read results (ending
  ``mp.task`` before the caller can see the last result); a role does the
  same should CPython pass something else;
* ``Pool._terminate_pool`` and ``Pool.join``: end mp.pool; tasks without a
  result end as ERROR; workers that the pool itself terminates are marked so;
* ``ApplyResult.__init__``, ``MapResult.__init__``, ``IMapIterator.__init__``
  and ``IMapIterator._set_length`` (plain functions: once per submission):
  open a Submission in the caller's thread and learn how many results it waits for.
"""

import sys

from mptrace import _log, _spanparent, _tasks, semconv
from mptrace._state import state

POOL_TYPE = "multiprocessing.pool.Pool"

pools = {}  # a pool's outqueue -> its PoolTrace, until the pool ends
submissions = {}  # job id -> Submission, until its last result arrives
_api_codes = {}  # code object of a Pool method -> "Pool.<method>"


def _argument(args, kwargs, index, name):
    return args[index] if len(args) > index else kwargs.get(name)


def has_pools():
    return bool(pools or submissions)


def forget():
    """A fork child: the pools it inherited are its parent's."""
    pools.clear()
    submissions.clear()


# -- the pool and its workers ------------------------------------------------


def repopulate_pool_wrapper(wrapped, pool, args, kwargs):
    """``Pool._repopulate_pool``: ``__init__`` has checked its arguments and starts the first workers.

    mp.pool opens here, not before, so that a ``Pool()`` whose arguments are
    refused registers nothing; one whose workers cannot start ends it as failed.
    """
    trace = _log.safely("opening mp.pool", _open_pool, pool) if state.active() else None
    if trace is None:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        _log.safely("ending the mp.pool of a Pool() that raised", _pool_failed, pool, exc)
        raise


def _open_pool(pool):
    import multiprocessing.pool as mp_pool

    if isinstance(pool, mp_pool.ThreadPool):  # it inherits _repopulate_pool; its workers are threads
        return None
    trace = _tasks.PoolTrace(POOL_TYPE)
    method = _log.safely("reading a pool's start method", pool._ctx.get_start_method)
    if method:
        trace.span.set_attribute(semconv.START_METHOD, method)
    pools[pool._outqueue] = trace
    return trace


def _pool_failed(pool, exc):
    trace = pools.pop(pool._outqueue, None)
    if trace is not None:
        trace.end("failed", failure=("Pool() could not start its workers", exc))


def repopulate_wrapper(wrapped, instance, args, kwargs):
    """``_repopulate_pool_static(ctx, Process, processes, pool, inqueue, outqueue, ...)``."""
    trace = pools.get(_argument(args, kwargs, 5, "outqueue")) if pools else None
    if trace is None:
        return wrapped(*args, **kwargs)
    workers = _argument(args, kwargs, 3, "pool")
    before = len(workers)
    try:
        return _spanparent.run_in(trace.context, wrapped, *args, **kwargs)
    finally:
        _log.safely("counting workers", _count_workers, trace, len(workers) - before, args, kwargs)


def _count_workers(trace, started, args, kwargs):
    if trace.started == 0:
        trace.set_processes(_argument(args, kwargs, 2, "processes"))
        max_tasks = _argument(args, kwargs, 8, "maxtasksperchild")
        if max_tasks is not None:
            trace.span.set_attribute(semconv.POOL_MAX_TASKS, max_tasks)
    trace.workers_started(started, replacing=trace.started > 0)


def handle_workers_wrapper(wrapped, instance, args, kwargs):
    """``_handle_workers(cache, taskqueue, ctx, Process, processes, pool, inqueue, outqueue, ...)``."""
    trace = pools.get(_argument(args, kwargs, 7, "outqueue")) if pools else None
    if trace is None:
        return wrapped(*args, **kwargs)
    return _spanparent.run_in(trace.context, wrapped, *args, **kwargs)


def handle_tasks_wrapper(wrapped, instance, args, kwargs):
    """``_handle_tasks(taskqueue, put, outqueue, pool, cache)``: the task handler thread."""
    trace = pools.get(_argument(args, kwargs, 2, "outqueue")) if pools else None
    if trace is None:
        return wrapped(*args, **kwargs)
    sender = _tasks.TaskSender(trace, _submission_of_task, describe_task, _forget_task, task_arguments)
    args, kwargs = _log.safely("standing in for the task handler's put", _with_argument, args, kwargs, 1, "put",
                               sender.put_for) or (args, kwargs)
    return _in_role(sender, trace, wrapped, args, kwargs)


def handle_results_wrapper(wrapped, instance, args, kwargs):
    """``_handle_results(outqueue, get, cache)``: the result handler thread."""
    trace = pools.get(_argument(args, kwargs, 0, "outqueue")) if pools else None
    if trace is None:
        return wrapped(*args, **kwargs)
    receiver = _tasks.ResultReceiver(_outcome_of_result, trace)
    args, kwargs = _log.safely("standing in for the result handler's get", _with_argument, args, kwargs, 1,
                               "get", receiver.get_for) or (args, kwargs)
    return _in_role(receiver, trace, wrapped, args, kwargs)


def _with_argument(args, kwargs, index, name, stand_in_for):
    """(args, kwargs) with argument ``index`` (or keyword ``name``) replaced by ``stand_in_for(it)``."""
    if len(args) > index:
        return args[:index] + (stand_in_for(args[index]),) + args[index + 1:], kwargs
    if name in kwargs:
        return args, dict(kwargs, **{name: stand_in_for(kwargs[name])})
    return args, kwargs


def _in_role(role, trace, wrapped, args, kwargs):
    from mptrace import _channels

    _log.safely("giving a pool thread its role", _channels.assume_role, role)
    try:
        return _spanparent.run_in(trace.context, wrapped, *args, **kwargs)
    finally:
        _log.safely("taking a pool thread's role", _channels.drop_role)


def terminate_pool_wrapper(wrapped, instance, args, kwargs):
    """``_terminate_pool(taskqueue, inqueue, outqueue, pool, ...)``: terminate(), GC, or exit."""
    trace = pools.get(_argument(args, kwargs, 2, "outqueue")) if pools else None
    if trace is None:
        return wrapped(*args, **kwargs)
    _log.safely("noting workers the pool terminates", _mark_stopped_by_pool, _argument(args, kwargs, 3, "pool"))
    try:
        return wrapped(*args, **kwargs)
    finally:
        _log.safely("ending mp.pool", _end_pool, _argument(args, kwargs, 2, "outqueue"), _how_it_ended())


def _how_it_ended():
    from multiprocessing import util

    return "exit" if getattr(util, "_exiting", False) else "terminate"


def _mark_stopped_by_pool(workers):
    from mptrace import _parent

    for worker in list(workers or ()):
        _parent.stopped_by_pool(worker)


def join_wrapper(wrapped, pool, args, kwargs):
    result = wrapped(*args, **kwargs)  # every worker has exited
    if pools:
        _log.safely("ending mp.pool", _end_pool, getattr(pool, "_outqueue", None), "join")
    return result


def _end_pool(outqueue, how):
    trace = pools.pop(outqueue, None)
    if trace is not None:
        trace.end(how)


# -- submissions -------------------------------------------------------------


def result_init(original):
    """``ApplyResult.__init__`` and ``IMapIterator.__init__``: a Submission in the caller's thread.

    Once per apply_async, so written for speed: no closures, no logging wrapper.
    """

    def __init__(self, pool, *args, **kwargs):
        original(self, pool, *args, **kwargs)
        if pools:
            try:
                trace = pools.get(pool._outqueue)
                if trace is not None and self._job not in submissions:  # MapResult: ApplyResult.__init__ ran first
                    entry = _submission(self, trace, sys._getframe(1))
                    if entry is not None:
                        submissions[self._job] = entry
            except Exception:
                _log.internal_error("opening mp.task")

    return __init__


def _submission(result, trace, frame):
    """A Submission; for an untraced apply, only the Parent its task carries (None: nothing to carry)."""
    if type(result) is _apply_result_class[0]:
        caller = _tasks.caller_parent(trace)
        if caller is None or not caller.sampled or not _tasks.limit.take():
            return caller
        return _tasks.Submission(trace, _api_name(frame), 1, submissions, result._job, caller, True)
    # a map's chunks are counted next (MapResult) or once they are all sent (imap)
    return _tasks.Submission(trace, _api_name(frame), None, submissions, result._job)


_apply_result_class = [None]  # multiprocessing.pool.ApplyResult, once instrumented


def map_result_init(original):
    """``MapResult.__init__``: how many chunk results the map waits for."""

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        submission = submissions.get(getattr(self, "_job", None)) if submissions else None
        if type(submission) is _tasks.Submission:
            _log.safely("counting a map's chunks", _plan, submission, self._number_left)

    return __init__


def _plan(submission, chunks):
    """A map's chunks are counted before the task handler sends the first."""
    submission.planned(chunks)
    submission.expect(chunks)


def set_length(original):
    """``IMapIterator._set_length``: the task handler has sent every chunk of an imap."""

    def _set_length(self, length):
        submission = submissions.get(getattr(self, "_job", None)) if submissions else None
        if type(submission) is _tasks.Submission:
            _log.safely("counting an imap's chunks", submission.expect, length)  # before the caller sees the end
        return original(self, length)

    return _set_length


def _api_name(frame, depth=5):
    """The Pool method the user called: the outermost Pool method among the callers."""
    if not _api_codes:
        _learn_api_codes()
    name = None
    while frame is not None and depth:
        name = _api_codes.get(frame.f_code, name)
        frame, depth = frame.f_back, depth - 1
    return name or "Pool"


def _learn_api_codes():
    import multiprocessing.pool as mp_pool

    for method in ("apply", "apply_async", "map", "map_async", "starmap", "starmap_async", "imap",
                   "imap_unordered"):
        code = getattr(vars(mp_pool.Pool).get(method), "__code__", None)
        if code is not None:
            _api_codes[code] = "Pool." + method


# -- what the messages are ---------------------------------------------------


def _submission_of_task(task):
    """A task is (job, index, func, args, kwds)."""
    if type(task) is tuple and len(task) == 5:
        return submissions.get(task[0])
    return None


def _forget_task(task):
    submissions.pop(task[0], None)


def _outcome_of_result(message):
    """A result is (job, index, (success, value)). An untraced task's entry (a Parent) goes now."""
    if type(message) is not tuple or len(message) != 3:
        return None, None
    submission = submissions.get(message[0])
    if type(submission) is _spanparent.Parent:
        del submissions[message[0]]
    outcome = message[2]
    failed = type(outcome) is tuple and len(outcome) == 2 and not outcome[0]
    return submission, (outcome[1] if failed else None)


_CHUNK_RUNNERS = ("mapstar", "starmapstar")


def describe_task(task):
    """(the user's function, items in the chunk or None) of a task (job, index, func, args, kwds)."""
    function, args = task[2], task[3]
    if getattr(function, "__module__", None) == "multiprocessing.pool" and function.__name__ in _CHUNK_RUNNERS:
        user_function, chunk = args[0]
        return user_function, len(chunk)
    return function, None


_ONE_ITEM_APIS = ("Pool.imap", "Pool.imap_unordered")  # with chunksize 1: each item is a task (func, (item,))


def task_arguments(task, api, chunk_size, index):
    """(path, value) of what a task hands its worker, named as the caller passed them: for a task that
    failed to pickle. ``func``, ``args[0]``, ``kwds['x']``; a map's items as ``iterable[7]``."""
    function, args, kwds = task[2], task[3], task[4]
    user_function, items = describe_task(task)
    if items is not None:  # a chunk of a map: ((func, chunk),)
        return [("func", user_function)] + [("iterable[%s]" % _tasks.item_index(task[1], chunk_size, position), item)
                                            for position, item in enumerate(args[0][1])]
    if api in _ONE_ITEM_APIS and type(args) is tuple and len(args) == 1 and not kwds:
        return [("func", function), ("iterable[%d]" % task[1], args[0])]
    return [("func", function)] + [("args[%d]" % i, a) for i, a in enumerate(args)] + \
        [("kwds[%r]" % (key,), value) for key, value in dict(kwds).items()]


# -- patching ----------------------------------------------------------------

# (class, attribute, wrapt wrapper)
WRAPPED = (
    ("Pool", "_repopulate_pool", repopulate_pool_wrapper),
    ("Pool", "_repopulate_pool_static", repopulate_wrapper),
    ("Pool", "_handle_workers", handle_workers_wrapper),
    ("Pool", "_handle_tasks", handle_tasks_wrapper),
    ("Pool", "_handle_results", handle_results_wrapper),
    ("Pool", "_terminate_pool", terminate_pool_wrapper),
    ("Pool", "join", join_wrapper),
)
# (class, attribute, factory of a plain replacement from the original)
REPLACED = (
    ("ApplyResult", "__init__", result_init),
    ("MapResult", "__init__", map_result_init),
    ("IMapIterator", "__init__", result_init),
    ("IMapIterator", "_set_length", set_length),
)


def instrument(patches):
    import multiprocessing.pool as mp_pool

    _apply_result_class[0] = mp_pool.ApplyResult
    for class_name, attribute, wrapper in WRAPPED:
        owner = getattr(mp_pool, class_name)
        if not patches.is_patched(owner, attribute):
            patches.wrap(owner, attribute, wrapper)
    for class_name, attribute, factory in REPLACED:
        owner = getattr(mp_pool, class_name)
        if not patches.is_patched(owner, attribute):
            patches.replace(owner, attribute, factory(vars(owner)[attribute]))
