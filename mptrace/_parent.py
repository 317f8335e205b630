"""The parent side: one mp.process span per child, from start() to its exit.

Wrappers (wrapt convention: wrapped, instance, args, kwargs):

* ``BaseProcess.start``: opens mp.process in the caller's context and prepares
  the carrier (trace id, span ids, spool directory) the child needs;
* ``popen_fork.Popen.__init__`` (the spawn and forkserver Popens call it too):
  learns the real start method before the child is launched;
* ``spawn.get_preparation_data``: adds the Stowaway for spawn/forkserver;
* ``popen_fork.Popen.__setattr__`` (inherited by the spawn and forkserver
  Popens): ends mp.process when ``poll()`` stores the exit code, which is how
  ``join``, ``is_alive``, ``exitcode`` and ``close`` all learn of the exit.

Children that never get observed are ended when this process exits (a
multiprocessing finalizer that runs after multiprocessing joins its children).
"""

import importlib
import os
import signal
import sys
import threading
import time

from mptrace import _channels, _fds, _grpcfork, _litespan, _log, _prerun, _spool, semconv
from mptrace._state import launching, state


class Launch:
    """One child between start() and its exit, as its parent tracks it."""

    __slots__ = ("process", "span", "carrier", "popen", "child_run", "module_state", "stopped_by", "stop_signal",
                 "inherited_fds", "pending")

    def __init__(self, process, span, carrier):
        self.process = process
        self.span = span
        self.carrier = carrier
        self.popen = None
        self.child_run = None  # fork only: the child's state, built before the fork
        self.module_state = None  # watched module state at start(), for spawn/forkserver children
        self.stopped_by = None  # who stopped the child on purpose (its pool, its parent...), if anyone (semconv.END_*)
        self.stop_signal = None  # with which signal (a name): the child ended so only if it died of that one
        self.inherited_fds = None  # fork only: the descriptors it inherits (an _fds.Inherited)
        # Attributes found before the child is launched, set on the span in one call (see set_pending).
        self.pending = {}

    def set_pending(self):
        """Set the attributes gathered so far on mp.process: one call, so the SDK takes its lock and
        checks its limits once (right before a fork, and at the end of start())."""
        if self.pending:
            pending, self.pending = self.pending, {}
            self.span.set_attributes(pending)


# -- start() -----------------------------------------------------------------


def start_wrapper(wrapped, process, args, kwargs):
    launch = _log.safely("opening mp.process", _begin_launch, process) if state.active() else None
    if launch is None:
        return wrapped(*args, **kwargs)
    outer = launching.__dict__.get("launch")
    launching.launch = launch
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        launching.launch = outer
        _log.safely("recording a failed start()", _launch_failed, launch, exc)
        raise
    launching.launch = outer
    _log.safely("recording a started child", _launched, launch)
    return result


def _begin_launch(process):
    name = process.name  # once: BaseProcess.name is a property of mptrace's (see _child._watch_for_failure)
    span = _start_process_span(_launch_attributes(process, name))
    span_context = _span_context(span)
    if span_context is None:  # tracing is disabled (no-op provider): leave the child alone
        return None
    trace_id, span_id, sampled = span_context
    carrier = {
        "v": _spool.VERSION,
        "tree": state.tree,
        "tid": trace_id,
        "psid": span_id,
        "rsid": _litespan.new_span_id(),
        "sampled": sampled,
        "method": None,  # known once the Popen is chosen
        "ppid": os.getpid(),
        "name": name,
    }
    _ensure_exit_finalizer()
    launch = Launch(process, span, carrier)
    if state.is_root():
        state.root.collector.collect_if_due()
    _log.safely("recording module state", _record_module_state, launch)
    return launch


def _module_watch():
    """The ModuleWatch of this process: the root's, or a child's own (for grandchildren)."""
    if state.is_root():
        return state.root.watch
    return state.child.module_watch() if state.child is not None else None


def _record_module_state(launch):
    """mp.state.not_portable: globals changed since import, which a spawned child will not see."""
    watch = _module_watch()
    if watch is None:
        return
    module_state, not_portable, no_baseline, unknown = watch.state_at_start(fork=_starts_by_fork(launch.process))
    launch.pending[semconv.STATE_NOT_PORTABLE] = not_portable
    if no_baseline:
        launch.pending[semconv.STATE_NO_BASELINE] = no_baseline
    if unknown:
        launch.pending[semconv.STATE_UNKNOWN] = unknown
    launch.module_state = module_state
    for name in not_portable:  # a loop, not any() of a generator: no function object made per start
        if name.count(".") > 1:  # perhaps a class attribute: look at the arguments
            _record_argument_classes(launch, module_state, not_portable)
            break


def _starts_by_fork(process):
    """Whether ``process`` will certainly start by fork (its context's, or the default already chosen)."""
    method = getattr(type(process), "_start_method", None)
    if method is None:
        import multiprocessing.context as mp_context

        default = mp_context._default_context
        chosen = getattr(default, "_actual_context", None)  # None: not chosen yet (get_start_method would)
        method = getattr(chosen, "_name", None)
    return method == "fork"


def _record_argument_classes(launch, module_state, not_portable):
    """mp.args.class_state_not_portable: arguments whose class carries class-level state changed since import."""
    from mptrace import _fingerprint, _modstate

    classes = _modstate.changed_classes(module_state, not_portable)
    if not classes:
        return
    process = launch.process
    items = [("process", type(process))]  # a Process subclass: the process object itself is pickled
    items += _fingerprint.process_items(process._target, process._args, process._kwargs)
    found = _modstate.arguments_with_changed_classes(items, classes)
    if found:
        launch.pending[semconv.ARGS_CLASS_STATE_NOT_PORTABLE] = found


def _start_process_span(attributes):
    """mp.process: in the root a RootSpan that the provider's sampler decided on, handed to the processors
    when it ends (see _rootspan); in a child a LiteSpan; an SDK span where the tracer decides otherwise."""
    if state.is_root():
        # Not "from mptrace import": importlib's Python code would run at every start (see _loaded).
        _rootspan = _loaded("mptrace._rootspan")
        span = _rootspan.start_sampled(state.tracer, state.root.provider, semconv.SPAN_PROCESS,
                                       _litespan.KIND_CLIENT, attributes)
        if span is not None:
            return span
    return state.tracer.start_span(semconv.SPAN_PROCESS, kind=_client_kind(), attributes=attributes)


def _loaded(name):
    """Module ``name``, imported if need be. A ``from mptrace import x`` statement runs importlib's
    ``_handle_fromlist`` (Python) each time: after a fork, pages the parent writes again at every start."""
    module = sys.modules.get(name)
    return module if module is not None else importlib.import_module(name)


def _client_kind():
    if state.is_root():
        from opentelemetry.trace import SpanKind

        return SpanKind.CLIENT
    return _litespan.KIND_CLIENT


def _span_context(span):
    if isinstance(span, _litespan.LiteSpan):
        return span.trace_id, span.span_id, span.sampled
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return context.trace_id, context.span_id, bool(context.trace_flags.sampled)


def _launch_attributes(process, name):
    attributes = {
        semconv.PROCESS_NAME: name,
        semconv.START_METHOD_SOURCE: _start_method_source(process),
    }
    target = getattr(process, "_target", None)
    function_name = _function_name(target) if target is not None else None
    if function_name:
        attributes[semconv.OTEL_CODE_FUNCTION_NAME] = function_name
    return attributes


def _function_name(target):
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(qualname, str):
        return type(target).__qualname__
    module = getattr(target, "__module__", None)
    return "%s.%s" % (module, qualname) if isinstance(module, str) else qualname


def _start_method_source(process):
    """Where the start method came from: a context, set_start_method, or the default."""
    if getattr(type(process), "_start_method", None) is not None:
        return semconv.SOURCE_CONTEXT
    import multiprocessing.context as mp_context

    default = mp_context._default_context
    actual = getattr(default, "_actual_context", None)
    if actual is not None and actual is not getattr(default, "_default_context", None):
        return semconv.SOURCE_SET_START_METHOD
    return semconv.SOURCE_DEFAULT


def _launch_failed(launch, exc):
    launch.set_pending()
    span = launch.span
    span.record_exception(exc, escaped=True)
    span.set_attribute(semconv.OTEL_ERROR_TYPE, type(exc).__qualname__)
    _set_error(span, "start() raised %s" % type(exc).__name__)
    span.end()


def _launched(launch):
    # As little as possible after the fork: every page the parent writes while
    # the child shares it costs a copy-on-write fault. The pid goes on the span
    # when it ends.
    launch.popen = launch.process._popen
    state.children[id(launch.popen)] = launch
    launch.set_pending()  # a Popen that is not popen_fork's (see popen_init_wrapper) comes here with them


# -- Popen.__init__ and the preparation data ----------------------------------


def popen_init_wrapper(wrapped, popen, args, kwargs):
    _log.safely("noting a Popen's pipes", _fds.remember_popen, popen)  # every Popen's: multiprocessing's own
    launch = launching.__dict__.get("launch")
    if launch is None or not args or args[0] is not launch.process:
        return wrapped(*args, **kwargs)
    token = _log.safely("recording the start method", _record_method, launch, popen)
    _log.safely("setting mp.process's attributes", launch.set_pending)
    try:
        return wrapped(*args, **kwargs)  # a fork child never returns from here
    finally:
        if token is not None:
            _log.safely("restoring the context after fork", _detach, token)


# Values that pickling returns unchanged (a target is pickled by name).
_UNCHANGEABLE = (type(None), bool, int, float, complex, str, bytes)


def _fingerprint_arguments(launch):
    """What the parent passes, before pickling: the child compares what arrives.

    Arguments that are all plain numbers, strings and bytes cannot change, so
    then nothing is sent and the child skips the comparison (and its import).
    """
    process = launch.process
    args, kwargs = process._args, process._kwargs
    if all(type(v) in _UNCHANGEABLE for v in tuple(args) + tuple(dict.values(kwargs))):
        return
    from mptrace import _fingerprint

    capture = _capture_values()  # the root's option, also in a child starting a grandchild
    launch.carrier["capture"] = capture
    launch.carrier["fp"] = _fingerprint.fingerprint(_fingerprint.process_items(process._target, args, kwargs), capture,
                                                    key=_digest_key())


def _library_files_for_a_fresh_child():
    """The library modules this process found by their files, for a spawn or forkserver child that will run
    the main module again (a file or a module, not ``-c``): what that imports is where a child meets libraries
    it must tell from the application's (see _modstate.library_files_to_carry). Else None: a ``-c`` program's
    child would only pay for unpickling them (some 7 pages of a forkserver child)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) is None and getattr(main, "__file__", None) is None:
        return None  # as multiprocessing.spawn.get_preparation_data decides what the child re-imports
    _modstate = sys.modules.get("mptrace._modstate")  # loaded wherever a module watch decided anything
    return _modstate.library_files_to_carry() if _modstate is not None else None


def _record_environment(launch, method):
    """What the child compares its environment and working directory with (see _envdiff); not under fork."""
    from mptrace import _envdiff

    forkserver = _envdiff.forkserver_before_launch() if method == "forkserver" else None
    launch.carrier["env"] = _envdiff.parent_side(_digest_key(), _capture_values(), forkserver)


def _capture_values():
    """Whether values may go on spans: the root's option, which the process tree's settings carry."""
    return bool((state.tree or {}).get("cap"))


def _digest_key():
    """The process tree's key for digests in fingerprints (see _fingerprint), as bytes."""
    key = (state.tree or {}).get("dk")
    return bytes.fromhex(key) if key else None


MAX_THREAD_NAMES = 16


def _thread_attributes():
    """The other threads alive at fork: their locks are copied, held or not."""
    current = threading.current_thread()
    known = threading.enumerate()
    others = []
    for thread in known:  # a loop, not a comprehension: no function object made at each start (3.11)
        if thread is not current:
            others.append(thread.name)
    attributes = {semconv.FORK_THREADS: len(others)}
    if others:
        others.sort()
        attributes[semconv.FORK_THREAD_NAMES] = others[:MAX_THREAD_NAMES] if len(others) > MAX_THREAD_NAMES else others
    attributes.update(_native_threads(known))
    return attributes


TASK_DIRECTORY = "/proc/self/task"  # Linux: one entry per operating-system thread of this process
NATIVE_UNKNOWN = "this platform has no /proc/self/task: only threads the threading module knows are counted"
_NO_NATIVE_THREADS = {semconv.FORK_THREADS_NATIVE: 0}  # _native_threads' common answer: its caller only reads it


def _native_threads(known):
    """The operating system's threads that threading did not start (a C extension's pool, a driver's thread),
    as attributes; ``known``: threading.enumerate().

    Such a thread does not exist in the child either, but any lock it held at
    the fork stays held there forever. Counted just before the fork, before
    the C libraries' own at-fork handlers run: a library that stops its pool
    in one (OpenBLAS does) is counted though its thread is gone by the fork.
    """
    own_id = getattr(threading, "get_native_id", None)
    try:
        # Linux counts a process's threads in its task directory's link count (2 + threads): one stat
        # tells whether there is any thread beyond those threading knows, before listing them. Not
        # when threading knows a foreign thread (a _DummyThread), which may have ended and so not count.
        if own_id is not None and os.stat(TASK_DIRECTORY).st_nlink == 2 + len(known):
            dummy = threading._DummyThread
            for thread in known:  # a loop, not any() of a generator: no function object made at each start
                if isinstance(thread, dummy):
                    break
            else:
                return _NO_NATIVE_THREADS
        tids = os.listdir(TASK_DIRECTORY) if own_id is not None else None
    except OSError:
        tids = None
    if tids is None:
        return {semconv.FORK_THREADS_NATIVE_UNKNOWN: NATIVE_UNKNOWN}
    # The calling thread counts as known even if threading has not met it.
    known_ids = {getattr(t, "native_id", None) for t in known} | {own_id()}
    native = sorted(int(tid) for tid in tids if tid.isdigit() and int(tid) not in known_ids)
    attributes = {semconv.FORK_THREADS_NATIVE: len(native)}
    if native:
        attributes[semconv.FORK_NATIVE_THREAD_NAMES] = [
            "%s (tid %d)" % (_thread_name(tid), tid) for tid in native[:MAX_THREAD_NAMES]]
    return attributes


def _thread_name(tid):
    """The thread's name as the operating system knows it (what pthread_setname_np set, else the program's)."""
    try:
        with open("%s/%d/comm" % (TASK_DIRECTORY, tid), "rb") as comm:
            return comm.read().decode("utf-8", "replace").strip() or "?"
    except OSError:  # it ended meanwhile
        return "?"


def _record_inherited_fds(launch):
    """mp.fork.fds: the sockets, files and pipes the child gets; mp.fork.fds.shared: those a sibling
    still running (its exit not yet seen) holds too, on both children's spans."""
    found = launch.inherited_fds = _fds.inherited(_module_watch(), state.tree.get("dir"))
    launch.pending[semconv.FORK_FDS] = list(found.found.values())
    if found.unlisted:
        launch.pending[semconv.FORK_FDS_UNLISTED] = found.unlisted
    for sibling in list(state.children.values()):
        theirs = sibling.inherited_fds
        common = found.shared_by(theirs) if theirs is not None else ()
        if common:
            found.share(common, sibling.process.name)
            theirs.share(common, launch.process.name)
            sibling.span.set_attributes(_shared_attributes(theirs))
    if found.shared:
        launch.pending.update(_shared_attributes(found))


def _shared_attributes(found):
    return {semconv.FORK_FDS_SHARED: list(found.shared), semconv.FORK_FDS_SHARED_WITH: list(found.shared_with)}


def _detach(token):
    variable, token = token
    if variable is not None:
        variable.reset(token)
    else:
        from opentelemetry import context

        context.detach(token)


def _record_method(launch, popen):
    """Learn the start method; for fork, prepare the child. Returns a context
    token to detach after the fork, or None."""
    method = popen.method
    launch.carrier["method"] = method
    launch.pending.update({semconv.START_METHOD: method, semconv.ARGS_PICKLED: method != "fork"})
    if method == "forkserver":
        launch.carrier["fsp"] = _forkserver_preload()
    if method != "fork":
        _grpcfork.warn_if_exposed()  # a program that loaded gRPC after install()
        _log.safely("recording the environment", _record_environment, launch, method)
        _fingerprint_arguments(launch)
        if launch.module_state:
            launch.carrier["state"] = launch.module_state
        library_files = _library_files_for_a_fresh_child()
        if library_files:
            launch.carrier["libf"] = library_files
        from mptrace._child import prebuild_records

        _log.safely("encoding the child's first records", prebuild_records, launch.carrier)
        return None
    launch.module_state = None  # only sent to spawn and forkserver children; freed before the fork, not after
    launch.pending.update(_thread_attributes())
    if state.tree.get("fds", True):
        _log.safely("listing the descriptors a fork child inherits", _record_inherited_fds, launch)
    from mptrace._child import prepare_fork_child

    places = _log.safely("finding the random generators", _random_generators) if state.tree.get("rs", True) else None
    run = launch.child_run = prepare_fork_child(launch.carrier, places)
    if run.prebuilt_context is None:
        return None
    # Make the child's run span current for the instant of the fork: the fork
    # child inherits this thread's context, and so starts with its run span
    # current without doing anything (nothing else runs here meanwhile).
    # Through the context variable itself where the default runtime is in use: right after a fork
    # every Python function the parent runs (four for context.attach and detach) costs it page faults.
    variable = _channels.runtime_context_variable()
    if variable is not None:
        token = (variable, variable.set(run.prebuilt_context))
    else:
        from opentelemetry import context

        token = (None, context.attach(run.prebuilt_context))
    run.context_attached = True
    return token


def _random_generators():
    """Where the fork child's random generators are: found here, where memory is warm; hashed in the child."""
    watch = _module_watch()
    return _loaded("mptrace._randomstate").generators(watch.watched_modules() if watch is not None else (), fork=True)


def _forkserver_preload():
    """The modules the fork server imports once, before it forks any child."""
    import multiprocessing.forkserver as mp_forkserver

    server = getattr(mp_forkserver, "_forkserver", None)
    preload = getattr(server, "_preload_modules", None) or []
    return [name for name in preload if isinstance(name, str)]


def preparation_data_wrapper(wrapped, instance, args, kwargs):
    data = wrapped(*args, **kwargs)
    launch = launching.__dict__.get("launch")
    if launch is not None and isinstance(data, dict):
        from mptrace._stowaway import Stowaway, child_reads_this_bytecode, server_prepared_the_loader

        method = launch.carrier.get("method")
        same = _log.safely("telling the child's interpreter", child_reads_this_bytecode, method)
        prepared = same and method == "forkserver" and _log.safely(
            "telling whether the fork server prepared the loader", server_prepared_the_loader)
        data["mptrace"] = Stowaway(launch.carrier, same_interpreter=bool(same), server_has_loader=bool(prepared))
    return data


# -- observing the exit ------------------------------------------------------


def returncode_observer(original_setattr):
    """``Popen.__setattr__``: ends mp.process when ``poll()`` stores the child's exit code.

    Every way of learning a child's exit (``join``, ``is_alive``, ``exitcode``,
    ``close``, forkserver's own ``poll``) ends in ``poll()`` setting
    ``returncode``, exactly once. Watching that assignment rather than wrapping
    ``poll`` keeps ``poll`` itself untouched: a Pool's worker-handler thread
    polls every worker each time its wait returns, and during a busy map it
    spins, taking the GIL from the pool's other threads; a wrapt wrapper
    around ``poll`` cost 3% of a map's wall time, and a plain function still
    one Python call per worker per turn. A Popen sets its attributes only a
    handful of times in its life.
    """

    def __setattr__(self, name, value):
        original_setattr(self, name, value)
        if name == "returncode" and value is not None and state.children:
            _observed_exit(self, value)

    return __setattr__


def _observed_exit(popen, returncode):
    launch = state.children.pop(id(popen), None)
    if launch is None or launch.popen is not popen or not state.active():
        return
    if getattr(launch.span, "ends_with_a_collection", False) and state.is_root():
        # A root's mp.process reaches the processors with the collector's next batch anyway (see
        # _rootspan.SampledRootSpan): its attributes, its end and the exit's report wait for that
        # batch too (see Collector.at_next_collection). The caller's join() returns the sooner, having
        # written the fewest pages the fork left shared; the span ends when the exit was observed: now.
        # The launch waits for it without the Process and its Popen: they (and the Popen's descriptors)
        # must live and die as they do untraced, not until the next collection.
        try:
            pid = popen.pid
            launch.process = launch.popen = None
            state.root.collector.at_next_collection("ending mp.process", _child_exited,
                                                    (launch, returncode, pid, time.time_ns()))
        except Exception:
            _log.internal_error("noting a child's exit")
    else:
        _log.safely("ending mp.process", _child_exited, launch, returncode, popen.pid)


def _child_exited(launch, returncode, pid, observed_at=None):
    """End mp.process and report the exit; ``observed_at``: when the exit was observed, in ns (None: now)."""
    signal_name = _signal_name(returncode)
    span = launch.span
    attributes = {semconv.CHILD_PID: pid, semconv.EXITCODE: returncode,
                  semconv.OTEL_PROCESS_EXIT_CODE: returncode}
    if signal_name:
        attributes[semconv.EXIT_SIGNAL] = signal_name
    span.set_attributes(attributes)  # one call: the SDK takes its lock once
    _log.safely("checking that the child reported", _note_if_untraced, launch)
    stopped = launch.stopped_by if signal_name is not None and signal_name == launch.stop_signal else None
    if stopped:
        span.set_attribute(semconv.END_REASON, stopped)
    on_purpose = stopped in semconv.ENDED_AS_EXPECTED  # its pool's terminate(): how a pool ends
    if returncode != 0 and not on_purpose:
        failure = _log.safely("reading a failure before run()", _failure_before_run, launch, returncode)
        if failure:
            span.set_attributes(failure)
            _set_error(span, _prerun.status_description(failure))
        else:
            span.set_attribute(semconv.OTEL_ERROR_TYPE, signal_name or str(returncode))
            if signal_name:
                _set_error(span, "killed by %s" % signal_name + (" (%s)" % stopped if stopped else ""))
            else:
                _set_error(span, "exit code %d" % returncode)
    span.end(observed_at)
    _report_exit(launch.carrier["rsid"], returncode, signal_name, stopped if on_purpose else None, observed_at)


# mp.child.untraced_reason when the child left no note (see _stowaway).
NO_SPAN_REASON = "the child sent no span: it ended before mptrace recorded anything in it"


def _note_if_untraced(launch):
    """A spawn/forkserver child that sent no span ran untraced: mp.process says so, and why if it told."""
    carrier = launch.carrier
    if carrier.get("method") not in ("spawn", "forkserver") or not carrier["sampled"]:
        return
    directory = carrier["tree"]["dir"]
    if os.path.exists(os.path.join(directory, _spool.file_name(carrier["rsid"]))):
        return
    from mptrace import _stowaway

    reason = _stowaway.take_note(directory, carrier["rsid"]) or NO_SPAN_REASON
    launch.span.set_attributes({semconv.CHILD_TRACED: False, semconv.CHILD_UNTRACED_REASON: reason})


def _failure_before_run(launch, returncode):
    """What a spawn/forkserver child that exited with 1 recorded, if it died before run()."""
    carrier = launch.carrier
    if returncode != 1 or carrier.get("method") not in ("spawn", "forkserver"):
        return None
    return _prerun.read_failure(carrier["tree"]["dir"], carrier["rsid"])


def _report_exit(run_span_id, returncode, signal_name, stopped_by=None, observed_at=None):
    """Tell whoever collects this child's spans that it exited (``stopped_by``: on purpose, by whom;
    ``observed_at``: when, in ns, None: now)."""
    if state.is_root():
        state.root.collector.process_exited(run_span_id, returncode, signal_name, stopped_by, observed_at)
    else:
        state.child.writer.write({
            "t": _spool.EXIT, "rsid": "%016x" % run_span_id, "code": returncode,
            "sig": signal_name, "time": observed_at or time.time_ns(), "by": stopped_by,
        })


def stopped_by_pool(process):
    """``process`` is a worker its pool is about to terminate: that is not a failure."""
    launch = state.children.get(id(getattr(process, "_popen", None)))
    if launch is not None:
        launch.stopped_by, launch.stop_signal = semconv.END_BY_POOL, "SIGTERM"


def send_signal_wrapper(wrapped, instance, args, kwargs):
    """``Popen._send_signal(sig)``: terminate() and kill(), and what multiprocessing sends its daemon children at
    exit. The child is stopped on purpose: its mp.process says by whom (see semconv.END_BY_POOL and after)."""
    _log.safely("noting who stops a child", _note_stopped, instance, args[0] if args else kwargs.get("sig"))
    return wrapped(*args, **kwargs)


def _note_stopped(popen, sig):
    launch = state.children.get(id(popen))
    if launch is None or launch.stopped_by is not None or getattr(popen, "returncode", None) is not None:
        return  # not traced, its pool's (see stopped_by_pool), or over already
    import multiprocessing.util as mp_util

    name = signal.Signals(sig).name
    if name == "SIGTERM" and _on_an_executors_thread():
        launch.stopped_by = semconv.END_BY_EXECUTOR
    elif name == "SIGTERM" and getattr(mp_util, "_exiting", False):
        launch.stopped_by = semconv.END_AT_EXIT
    else:
        launch.stopped_by = semconv.STOPPED_BY_PARENT.get(name, "sent %s by its parent" % name)
    launch.stop_signal = name


def _on_an_executors_thread():
    """Whether a ProcessPoolExecutor's own thread is running (it terminates the workers of a broken one)."""
    executor_module = sys.modules.get("concurrent.futures.process")
    manager_thread = getattr(executor_module, "_ExecutorManagerThread", None)  # 3.9+
    return isinstance(manager_thread, type) and isinstance(threading.current_thread(), manager_thread)


def _signal_name(returncode):
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return "signal %d" % -returncode


def _set_error(span, description):
    if isinstance(span, _litespan.LiteSpan):
        span.set_status(_litespan.STATUS_ERROR, description)
    else:
        from opentelemetry.trace.status import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))


# -- children whose exit this process never observed ---------------------------


def poll_children():
    """Notice children that exited since anyone last looked (non-blocking).

    This is what multiprocessing's own ``active_children()`` does; the exit
    code stays stored on the Popen, so behaviour does not change.
    """
    for launch in list(state.children.values()):
        try:
            launch.popen.poll()
        except Exception:
            _log.internal_error("polling a child")


def end_unobserved(reason):
    """End mp.process for every child whose exit was never observed."""
    while state.children:
        _, launch = state.children.popitem()
        span = launch.span
        span.set_attribute(semconv.CHILD_PID, launch.popen.pid)
        span.set_attribute(semconv.END_REASON, reason)
        span.end()


def _at_parent_exit():
    if state.active():
        poll_children()
        end_unobserved("parent exited before observing the child's exit")


_finalizer_lock = threading.Lock()


def _ensure_exit_finalizer():
    """Register, once per process, a finalizer that runs after children are joined.

    multiprocessing's exit routine joins children and then runs finalizers with
    a priority; -100 puts ours after all of multiprocessing's own.
    """
    pid = os.getpid()
    if state.finalizer_pid == pid:
        return
    with _finalizer_lock:
        if state.finalizer_pid != pid:
            from multiprocessing import util

            util.Finalize(None, _at_parent_exit, exitpriority=-100)
            state.finalizer_pid = pid
