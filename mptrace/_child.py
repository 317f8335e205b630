"""The child side: the first mptrace code that runs in a traced child.

How a child finds out it is traced:

* fork: the child is a copy of the parent, patches included. The patched
  ``BaseProcess._bootstrap`` finds the launch that the parent's ``start()``
  left in this thread (``_state.current_launch``).
* spawn and forkserver: the parent adds a ``Stowaway`` to the preparation data,
  which the child unpickles before it re-imports the main module or unpickles
  the process object (the pattern coverage.py uses). Unpickling it loads the
  parent's mptrace, wherever the parent found it (see ``_stowaway``), and calls
  ``_activate``, which patches ``_bootstrap`` here, before any user code runs.

In spawn and forkserver children nothing here imports OpenTelemetry or wrapt:
the run span is a ``LiteSpan``, ``_bootstrap`` is patched with a plain
function, and the full parent-side machinery is loaded only if the child starts
processes of its own (see ``_start_trampoline``). When the child's own code
imports OpenTelemetry, the SDK is wired to the spool then (``_otel_child``).
"""

import importlib
import os
import sys
import time

from mptrace import _litespan, _log, _prerun, _spool, semconv
from mptrace._state import current_launch, state

# (pid, carrier): the carrier that arrived in this spawn/forkserver child's
# preparation data. The pid keeps a fork grandchild from taking it for its own.
_activated = None
# The start-up import timings of this spawn/forkserver child (an ImportClock).
_clock = None


def _activate(carrier, began_with=None):
    """Runs while the child unpickles its preparation data (see _stowaway). Never raises.

    ``began_with``: how many modules the child had before the stowaway loaded mptrace.
    """
    global _activated
    try:
        _activated = (os.getpid(), carrier)
        if carrier.get("method") == "forkserver" and not _server_prepared:
            from mptrace import _envcompare

            _envcompare.note_server_cwd()  # before spawn.prepare() chdir()s to the parent's directory
        _prerun.watch(lambda exception: _record_failure_before_run(carrier, exception))
        _time_start_up(_inherited_modules(began_with))
        if not _server_prepared:
            _patch_for_children()
    except Exception:
        _log.internal_error("activating mptrace in a spawned child")
    return None


# Whether this process is a fork server's child, the server having made the patches of _patch_for_children.
_server_prepared = False


def prepare_server():
    """In a fork server started under mptrace (see _preload), once for all its children: the patches
    every child would make at activation, its working directory (the one they begin in).

    A forkserver child begins as a copy of the server: what the server did, the child need not (each
    class attribute a child sets writes the pages of the class and of its subclasses, a copy-on-write
    fault each). The patches do nothing until a child is activated: a child that is not (its parent
    called uninstall(), say) runs as without mptrace. Raises what fails: the server then preloads nothing.
    """
    global _server_prepared
    from mptrace import _envcompare

    _envcompare.note_server_cwd()
    _envcompare.note_server_environment()
    _patch_for_children()
    _watch_for_failure(None)
    _collect_young_objects_before_each_fork(os.getpid())
    _compile_otel_child_in_server()
    _server_prepared = True


OTEL_CHILD = "mptrace._otel_child"
# In a fork server (see prepare_server): (spec, code) of _otel_child, which needs OpenTelemetry and so cannot
# run in the server, found, read and unmarshalled there once for all its children. None elsewhere.
_server_compiled_otel_child = None


def _compile_otel_child_in_server():
    global _server_compiled_otel_child
    try:
        from importlib.util import find_spec

        spec = find_spec(OTEL_CHILD)
        code = spec.loader.get_code(OTEL_CHILD) if spec is not None and hasattr(spec.loader, "get_code") else None
        if code is not None:
            _server_compiled_otel_child = (spec, code)
    except Exception:  # its children import it as usual
        _log.internal_error("preparing mptrace's OpenTelemetry wiring in the fork server")


def _load_otel_child():
    """``mptrace._otel_child``: loaded already, else run from the code the fork server prepared, else imported.

    Importing it cost a forkserver child some 240 us (finding its file, reading and unmarshalling its code, every
    object a page copied from the server); running the prepared code, some 95. Loaded as the import system
    loads a module: in ``sys.modules`` while its code runs, removed if that raises, then bound in its package.
    """
    global _server_compiled_otel_child
    module = sys.modules.get(OTEL_CHILD)
    if module is not None:
        return module
    prepared, _server_compiled_otel_child = _server_compiled_otel_child, None
    if prepared is None:
        return importlib.import_module(OTEL_CHILD)
    from importlib.util import module_from_spec

    spec, code = prepared
    module = module_from_spec(spec)
    sys.modules[OTEL_CHILD] = module
    spec._initializing = True  # importlib's flag for a module whose code is running (see _half_imported)
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(OTEL_CHILD, None)
        raise
    finally:
        spec._initializing = False
    module = sys.modules[OTEL_CHILD]  # as import does: what the module's code left there
    setattr(sys.modules["mptrace"], "_otel_child", module)
    return module


def _collect_young_objects_before_each_fork(server_pid):
    """In the fork server: collect the young generation just before each fork, so that a child begins with
    an empty one and its own first collection (if it makes one) walks only objects it made.

    A child inherits the server's young objects and its allocation count. A traced child allocates a few
    hundred objects before run(); starting from the server's count, about one in four reached the threshold,
    and its collection wrote to every page that holds one of the server's young objects, a copy-on-write
    fault each (some 40 more per child on average). Only the server's own forks, only while the program has
    the collector enabled: the timing of a collection is all that changes, as it would with any allocation.
    """
    import gc

    def before_fork():
        if os.getpid() == server_pid and gc.isenabled():
            gc.collect(0)

    os.register_at_fork(before=before_fork)


def _patch_for_children():
    """``_bootstrap`` and ``spawn.prepare`` (inert in a process that is not an activated child), the
    channel modules' picklers."""
    import multiprocessing.process as mp_process
    import multiprocessing.spawn as mp_spawn

    base = mp_process.BaseProcess
    if not state.patches.is_patched(base, "_bootstrap"):
        original = vars(base)["_bootstrap"]

        def _bootstrap(self, *args, **kwargs):
            return bootstrap_wrapper(original.__get__(self), self, args, kwargs)

        state.patches.replace(base, "_bootstrap", _bootstrap)
    if not state.patches.is_patched(mp_spawn, "prepare"):
        state.patches.replace(mp_spawn, "prepare", _timed_prepare(vars(mp_spawn)["prepare"]))
    _instrument_channels()


# The modules whose picklers count pickles, with their channel: _channels.CHANNEL_MODULES, named here so
# that a child whose code uses no queue or connection need not load _channels.
CHANNEL_MODULES = (("multiprocessing.connection", "connection"), ("multiprocessing.queues", "queue"))


def _instrument_channels():
    """The channel modules' picklers now if the child has one loaded, else when its code imports each."""
    if any(name in sys.modules for name, _ in CHANNEL_MODULES):
        from mptrace import _channels

        _channels.instrument(state.patches, import_now=False)
        return
    from mptrace import _importhook

    for name, channel in CHANNEL_MODULES:
        _importhook.call_after_import(name, lambda module, channel=channel: _channel_module_imported(module, channel))


def _channel_module_imported(module, channel):
    from mptrace import _channels

    _channels.instrument_module(state.patches, module, channel)


def is_traced_child():
    """Whether this process is a traced child: activated by a stowaway, or given the child role."""
    activated = _activated
    return (activated is not None and activated[0] == os.getpid()) or (state.role == "child" and state.active())


def _inherited_modules(began_with):
    """How many modules this child began with, leaving out those mptrace loaded: here (the stowaway) or in
    the fork server (its preload, see _preload)."""
    if began_with is None:
        began_with = len(sys.modules)
    preload = sys.modules.get("mptrace._preload")
    return began_with - len(getattr(preload, "LOADED", ()))


def _time_start_up(inherited):
    """From now on, time the main module's re-import (spawn.prepare) and what unpickling imports."""
    global _clock
    from mptrace._childimports import ImportClock

    _clock = ImportClock(inherited)


def _timed_prepare(original):
    """``spawn.prepare``, timed as the phase "main" of this child's start-up (see _time_start_up)."""

    def prepare(data):
        clock = _clock
        if clock is None:  # not an activated child (see prepare_server)
            return original(data)
        main_before = sys.modules.get("__mp_main__")
        try:
            return clock.measure("main", original, data)
        finally:
            # prepare() re-runs the main module as a new __mp_main__ unless
            # it is loaded already (a fork server that preloaded it).
            clock.main_reran = sys.modules.get("__mp_main__") is not main_before
            clock.open_phase("unpickle")  # until _bootstrap begins

    return prepare


def _record_failure_before_run(carrier, exception):
    """The child dies before run(): its run span, from activation to now, names the failure.

    Runs inside ``sys.excepthook``: it needs only what activation loaded.
    """
    run = ChildRun(carrier)
    run.build_run_span()
    span = run.run_span
    span.begin(_clock.activated if _clock is not None else None)
    attributes = _prerun.failure_attributes(exception)
    span.set_attributes(attributes)
    if isinstance(exception, Exception):  # spawn's interpreter and forkserver's child both exit with 1
        span.set_attributes({semconv.EXITCODE: 1, semconv.OTEL_PROCESS_EXIT_CODE: 1})
    span.add_event("exception", _prerun.exception_event(exception))
    span.set_status(_litespan.STATUS_ERROR, _prerun.status_description(attributes))
    span.end()


def _install_trampolines():
    """In a spawn/forkserver child, once ``_bootstrap`` begins: ``start`` and pool creation load the
    full instrumentation on first use.

    Not earlier: while the main module is re-imported, a process it starts at
    its top level (no ``if __name__ == "__main__":``) must fail exactly as
    without mptrace, with no frame of ours in the traceback it prints.
    """
    import multiprocessing.process as mp_process

    base = mp_process.BaseProcess
    if not state.patches.is_patched(base, "start"):
        state.patches.replace(base, "start", _start_trampoline)
    from mptrace import _importhook

    for module_name, class_name in POOL_CLASSES:
        module = sys.modules.get(module_name)
        if module is not None:
            _pool_trampoline(module, class_name)
        else:
            _importhook.call_after_import(module_name, lambda module, name=class_name: _pool_trampoline(module, name))


def _start_trampoline(self, *args, **kwargs):
    """``BaseProcess.start`` in a spawn child until it starts a process itself.

    The first call loads the full parent-side instrumentation (wrapt and the
    OpenTelemetry API), which replaces this trampoline, then starts the process
    through it. Children that never start processes never pay for that.
    """
    import multiprocessing.process as mp_process

    base = mp_process.BaseProcess
    try:
        from mptrace import _install

        _install.upgrade_child_to_parent()
    except Exception:
        _log.internal_error("instrumenting a child that starts processes")
        if vars(base).get("start") is _start_trampoline:
            state.patches.undo(base, "start")
    return base.start(self, *args, **kwargs)


# Classes whose creation, in a spawn child, loads the parent-side instrumentation.
POOL_CLASSES = (("multiprocessing.pool", "Pool"), ("concurrent.futures.process", "ProcessPoolExecutor"))


def _pool_trampoline(module, class_name):
    """Until this spawn child creates a pool, ``__init__`` is a trampoline (like ``start``).

    A pool starts processes at once, so its creation is when the full
    instrumentation is worth loading, and it must be loaded before the pool
    sets up its queues and threads.
    """
    owner = getattr(module, class_name, None)
    if owner is None or state.patches.is_patched(owner, "__init__"):
        return

    def __init__(self, *args, **kwargs):
        try:
            from mptrace import _install

            _install.upgrade_child_to_parent()
        except Exception:
            _log.internal_error("instrumenting a child that creates a pool")
        if vars(owner).get("__init__") is __init__:
            state.patches.undo(owner, "__init__")
        return owner.__init__(self, *args, **kwargs)

    __init__.mptrace_trampoline = True
    state.patches.replace(owner, "__init__", __init__)


def _take_run(process):
    """The ChildRun for this process, or None if it is not traced."""
    global _activated
    launch = current_launch()
    if launch is not None and launch.process is process:  # fork: the parent's launch
        return launch.child_run or ChildRun(launch.carrier)
    activated, _activated = _activated, None
    if activated is not None and activated[0] == os.getpid():
        return ChildRun(activated[1])
    return None


def prebuild_records(carrier):
    """In the parent of a spawn or forkserver child, as it starts it: the child's resource values of its
    own, its spool header and its run span's START (start time a %d field), into the carrier (``pre``).

    Encoding them is the same work in either process; in the parent, whose code and encoder are warm, it
    costs a fraction of what it costs a fresh child, where every function run for the first time costs
    page faults (a forkserver child shares its server's pages until it writes them).
    """
    inherited = carrier["tree"]["res"]
    own = _own_resource(inherited)
    span = _run_span(None, carrier)
    span.start_time = _spool.PLACEHOLDERS[0]
    carrier["pre"] = [own, _spool.header_template(inherited, own), _spool.template_of(span.encode_start())]


def prepare_fork_child(carrier, random_places=None):
    """Build, in the parent, what a fork child needs, so the child need not.

    ``random_places``: where the child's random generators are (see
    _randomstate), or None to let the child find them.

    Every object a fork child allocates or touches first costs it a
    copy-on-write page fault; objects built before the fork are already there.
    """
    run = ChildRun(carrier)
    run.build_run_span()
    final_attributes = dict(_CLEAN_EXIT)
    if run.tree.get("rs", True):
        run.random_places = random_places
        if random_places == []:  # nothing to hash: the child's states are known now
            run.random_attributes = {semconv.RANDOM_STATES: []}
            run.run_span.set_attributes(run.random_attributes)
        else:  # filled in when the child ends (see end_template_filled)
            final_attributes[semconv.RANDOM_STATES] = _RANDOM_STATES_FIELD
    run.end_template = run.run_span.prebuild(final_attributes)
    run.parent_has_pools = parent_has_pools()
    if "opentelemetry.trace" in sys.modules:
        _otel_child = _load_otel_child()
        span = run.run_span
        run.prebuilt_context, run.wired_by_inheritance = _otel_child.fork_child_context(
            span.trace_id, span.span_id, span.sampled)
    return run


# -- the run span ------------------------------------------------------------


class ChildTracer:
    """Starts mptrace's parent-side spans in a child, as LiteSpans."""

    def __init__(self, child):
        self._child = child

    def start_span(self, name, kind=_litespan.KIND_INTERNAL, attributes=None, parent=None, start_time=None,
                   links=()):
        """``parent``: anything with trace_id, span_id and sampled; ``links``: (trace_id, span_id) pairs."""
        if parent is not None:
            trace_id, parent_id, sampled = parent.trace_id, parent.span_id, parent.sampled
        else:
            trace_id, parent_id, sampled = self._child.current_parent()
        span = _litespan.LiteSpan(self._child.writer, name, trace_id, parent_id, kind, attributes, sampled,
                                  begin=False)
        for linked_trace_id, linked_span_id in links:
            span.add_link(linked_trace_id, linked_span_id)
        span.begin(start_time)
        return span


class ChildRun:
    """This process as a traced child: its spool writer and its run span."""

    def __init__(self, carrier):
        self.carrier = carrier
        self.tree = carrier["tree"]
        inherited = self.tree["res"]
        prebuilt = carrier.get("pre")  # a spawn or forkserver child's, from its parent (see prebuild_records)
        own, header = (prebuilt[0], prebuilt[1]) if prebuilt else (_own_resource(inherited), None)
        self._own_resource = own
        self.writer = _spool.SpoolWriter(self.tree["dir"], _spool.file_name(carrier["rsid"]), inherited, own,
                                         header=header)
        self.otel_wired = False
        self.run_span = None
        self.prebuilt_context = None
        self.context_attached = False  # fork: the parent attached it for us
        self.end_template = None  # fork: the run span's END for exit code 0
        self.random_attributes = None  # mp.random.* as recorded when run() began
        self.random_places = None  # fork: where the generators are, as the parent found them (see _randomstate)
        # fork: the OpenTelemetry span that stands for the run in its context, when the parent
        # found that the child inherits all its wiring (see _otel_child.fork_child_context)
        self.wired_by_inheritance = None
        # fork: what this child replaced of its parent's state; kept, never freed
        # here (freeing writes to every page it spans: copy-on-write faults)
        self.parent_leftovers = None
        self.parent_has_pools = None  # fork: whether the parent recorded pools at the fork (None: not known)
        self.failure = None  # the exception that ended run(), if one did
        # Module state for this child's own children: a fork child inherits its
        # parent's watch, import baselines included; others start one without.
        self.inherited_watch = None
        self.watch = None
        # Called with (exitcode, exception) as the child ends, before its run span.
        self.closers = []
        # Called once OpenTelemetry is wired, if that happens while the child runs
        # (its code imported OpenTelemetry late): what should be current now.
        self.on_late_wiring = []

    @property
    def resource(self):
        """This child's resource attributes: the root's, with the values of its own. Made when asked (only
        when this child makes an OpenTelemetry provider of its own): a fork child's ChildRun is built by its
        parent at every start, where copying the root's resource wrote to the page of each of its values."""
        return dict(self.tree["res"], **self._own_resource)

    def build_run_span(self):
        self.run_span = _run_span(self.writer, self.carrier)

    def module_watch(self):
        if self.watch is None:
            from mptrace._modstate import ModuleWatch, adopt_library_files, adopt_library_paths, adopt_server_watch

            adopt_library_paths(self.tree.get("lib"))
            adopt_library_files(self.carrier.get("libf"), self.tree.get("lib"))
            include, exclude = self.tree.get("watch", ((), ()))
            key = _digest_key(self.tree)
            watch = self.inherited_watch
            if watch is None and not include and not exclude and self.carrier["method"] == "forkserver":
                watch = adopt_server_watch(key)  # the one its server made for its children
            self.watch = watch or ModuleWatch(include, exclude, key)
        return self.watch

    def end_template_filled(self):
        """The prebuilt END with this child's mp.random.states in it; None: there is none, or it does not fit."""
        template = self.end_template
        if template is None or _RANDOM_STATES_MARK not in template:
            return template
        attributes = self.random_attributes
        if not attributes or set(attributes) != {semconv.RANDOM_STATES}:
            return None  # not hashed, or more to say than the template holds
        states = _spool.encode_value(attributes[semconv.RANDOM_STATES]).replace(b"%", b"%%")
        return template.replace(_RANDOM_STATES_MARK, states)

    def current_parent(self):
        """(trace_id, span_id, sampled) of the span new spans here nest under."""
        spanparent = sys.modules.get("mptrace._spanparent")  # loaded once this child runs a pool
        overridden = spanparent.override() if spanparent is not None else None
        if overridden is not None:
            return tuple(overridden)
        if self.otel_wired:
            trace = sys.modules.get("opentelemetry.trace")
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                return context.trace_id, context.span_id, bool(context.trace_flags.sampled)
        span = self.run_span
        return span.trace_id, span.span_id, span.sampled

    def end_run(self, exitcode, exception=None):
        span = self.run_span
        if span is None or span.end_time is not None:
            return
        for close in self.closers:
            _log.safely("ending what the child left open", close, exitcode, exception)
        tasks = sys.modules.get("mptrace._tasks")
        if tasks is not None and tasks.open_pools:  # pools this child made and never closed
            tasks.end_open_pools("exit")
        # Inline, not in functions of their own: at a fork child's end, every function it runs for the
        # first time costs it copy-on-write faults (its code and the objects it touches), as os._exit waits.
        channels = sys.modules.get("mptrace._channels")
        totals = channels.tally_attributes(channels.process_tally) if channels and channels.process_tally else None
        if totals:  # what it pickled outside any span of its own
            span.set_attributes(totals)
        elif exitcode == 0 and exception is None and self.end_template is not None:
            template = self.end_template
            if _RANDOM_STATES_MARK in template:
                template = self.end_template_filled()
            if template is not None:
                span.end_from_template(template, _CLEAN_EXIT)
                return
        span.set_attribute(semconv.EXITCODE, exitcode)
        span.set_attribute(semconv.OTEL_PROCESS_EXIT_CODE, exitcode)
        if exception is not None:
            span.record_exception(exception, escaped=True)
            span.set_attribute(semconv.OTEL_ERROR_TYPE, _litespan.qualified_type_name(exception))
            span.set_status(_litespan.STATUS_ERROR, "%s: %s" % (type(exception).__name__, _litespan.safe_str(exception)))
        elif exitcode != 0:
            span.set_attribute(semconv.OTEL_ERROR_TYPE, str(exitcode))
            span.set_status(_litespan.STATUS_ERROR, "exit code %d" % exitcode)
        span.end()


def _own_resource(inherited):
    """The resource values a child has of its own: its creation time, and a service.instance.id of its own
    when the root's resource has one (as the SDK makes one after a fork)."""
    own = {semconv.OTEL_PROCESS_CREATION_TIME: _iso_now()}
    if semconv.OTEL_SERVICE_INSTANCE_ID in inherited:
        own[semconv.OTEL_SERVICE_INSTANCE_ID] = _new_uuid4()
    return own


def _run_span(writer, carrier):
    """The child's mp.process.run, not begun."""
    method = carrier["method"]
    attributes = {
        semconv.START_METHOD: method,
        semconv.PROCESS_NAME: carrier["name"],
        semconv.STATE_INHERITED: method == "fork",
        semconv.PARENT_PID: carrier["ppid"],
    }
    if method == "fork":
        attributes[semconv.ARGS_CHANGED] = []  # nothing was pickled, so nothing changed
        attributes[semconv.STATE_DIVERGED] = []  # a copy of the parent's memory
    if not carrier["tree"].get("rs", True):  # absent by choice, not because the child ended early (see _unreported)
        attributes[semconv.RANDOM_OFF] = True
    return _litespan.LiteSpan(
        writer, semconv.SPAN_PROCESS_RUN, carrier["tid"], carrier["psid"], kind=_litespan.KIND_SERVER,
        attributes=attributes, sampled=carrier["sampled"], span_id=carrier["rsid"], parent_remote=True, begin=False)


_CLEAN_EXIT = {semconv.EXITCODE: 0, semconv.OTEL_PROCESS_EXIT_CODE: 0}
# Where mp.random.states goes in a fork child's prebuilt END: a value no hash list can be, and its JSON.
_RANDOM_STATES_FIELD = "mptrace: the child's random states"
_RANDOM_STATES_MARK = _spool.encode_value(_RANDOM_STATES_FIELD)


def _become_child(run):
    """Give this process the child role; forget the parent's inherited state.

    Returns the provider a fork child inherited from a traced root, if any.
    """
    inherited_provider = state.root.provider if state.root is not None else None
    if state.root is not None:
        run.inherited_watch = state.root.watch
    elif state.child is not None and state.child is not run:
        run.inherited_watch = state.child.watch
    run.parent_leftovers = (state.root, state.children, state.tracer, state.child, state.tree)
    state.role = "child"
    state.owner_pid = os.getpid()
    state.tree = run.tree
    state.root = None
    state.children = {}
    state.finalizer_pid = None
    state.child = run
    state.tracer = ChildTracer(run)
    return inherited_provider


def bootstrap_wrapper(wrapped, process, args, kwargs):
    """Wraps ``BaseProcess._bootstrap``: the child's life as mp.process.run.

    ``run()`` itself is not wrapped: a wrapper's frame would show in the
    traceback the child prints, and that output must not change. The exception
    comes from ``_watch_for_failure`` instead, and the exit code is what
    ``_bootstrap`` returns.
    """
    _prerun.stop()
    run = _log.safely("starting the child's run span", _begin_run, process)
    if run is None:
        return wrapped(*args, **kwargs)
    exitcode = wrapped(*args, **kwargs)
    _log.safely("ending the child's run span", run.end_run, exitcode, run.failure)
    return exitcode


def _begin_run(process):
    run = _take_run(process)
    if run is None:
        return None
    inherited_provider = _become_child(run)
    _count_channels_here(run)
    if run.run_span is None:
        run.build_run_span()
    fresh_interpreter = run.carrier["method"] != "fork"
    # A spawn/forkserver child's run span starts at activation, before its imports.
    if not fresh_interpreter:
        run.run_span.begin()
    elif "pre" in run.carrier:
        run.run_span.begin_from_template(run.carrier["pre"][2], _clock.activated if _clock is not None else None)
    else:
        run.run_span.begin(_clock.activated if _clock is not None else None)
    if fresh_interpreter:
        _log.safely("installing the start trampolines", _install_trampolines)
        _record_what_arrived(run, process)
    pool_worker = getattr(getattr(process, "_target", None), "__module__", None) in _WORKER_MODULES
    record_random_states(run)
    _watch_for_failure(run)
    _wire_opentelemetry(run, inherited_provider)
    if pool_worker:
        from mptrace import _worker

        _log.safely("tracing a pool worker's tasks", _worker.recognise, run, process)
    if run.carrier["method"] == "spawn":  # only a spawn child is sent the bundle (see _stowaway)
        _stop_serving_the_bundle()
    return run


def _stop_serving_the_bundle():
    """The modules of mptrace a spawn child needed came from its parent's bundle (see _bundle); from its target
    on, imports are the program's own, and go as without mptrace."""
    for finder in [finder for finder in sys.meta_path if getattr(finder, "serves_mptrace_bundle", False)]:
        finder.stop()


# Where Pool's and ProcessPoolExecutor's worker functions live (see _worker).
_WORKER_MODULES = ("multiprocessing.pool", "concurrent.futures.process")


def _record_what_arrived(run, process):
    """In a spawn/forkserver child: imports, changed arguments, diverged state."""
    if _clock is not None:
        _log.safely("recording start-up imports", _record_imports, run, _clock)
    if "fp" in run.carrier:
        _log.safely("comparing the arguments that arrived", _compare_arguments, run, process)
    else:
        run.run_span.set_attribute(semconv.ARGS_CHANGED, [])  # only plain values: nothing can change
    _log.safely("comparing module state", _compare_module_state, run)
    if "env" in run.carrier:
        _log.safely("comparing the environment", _compare_environment, run)


def _compare_environment(run):
    """mp.env.*, mp.cwd.differs, mp.forkserver.*: what differs from the parent's at start() (see _envcompare)."""
    from mptrace import _envcompare

    run.run_span.set_attributes(_envcompare.child_attributes(run.carrier["env"], _digest_key(run.tree),
                                                             run.carrier["method"]))


def record_random_states(run):
    """mp.random.states: the generators this child starts with, by keyed hash (see _randomstate).

    When run() begins; a pool or executor worker with an initializer again when the initializer has returned
    (reseeding there is how programs fix the sharing, and its tasks draw from what the initializer left).

    The states, and a spawn or forkserver child's comparisons of what arrived, then go into a START written
    again: a child that ends without ending its run span (killed by terminate(), os._exit, a crash; a pool's
    workers end so) has its span ended by the collector from the last START it wrote, with them. Without
    them the trace could not tell "nothing differs" from "not known" (see _unreported).
    """
    if run.random_places == [] and run.random_attributes is not None:
        return  # a fork child with no generator: its parent recorded that (see prepare_fork_child)
    if run.tree.get("rs", True):
        _log.safely("hashing the random generators' states", _record_random_states, run)
    hashed = (run.random_attributes or {}).get(semconv.RANDOM_STATES)
    if hashed or run.carrier["method"] != "fork":
        _log.safely("writing the run span's start again", run.run_span.rewrite_start)


def _record_random_states(run):
    from mptrace import _randomstate

    places = run.random_places  # a fork child's, found by its parent
    if places is None and not _randomstate.any_generator_possible():
        places = []  # no module watch needed to know it: it would load _modstate, 0.5-1 ms of a spawn child
    elif places is None:
        places = _randomstate.generators(run.module_watch().watched_modules())
    hashed, unknown = _randomstate.states(places, _digest_key(run.tree))
    attributes = {semconv.RANDOM_STATES: hashed}
    if unknown:
        attributes[semconv.RANDOM_UNKNOWN] = unknown
    run.run_span.set_attributes(attributes)
    run.random_attributes = attributes


# The modules that record a process's pools, each with forget() and has_pools().
_POOL_RECORDS = ("mptrace._tasks", "mptrace._pool", "mptrace._executor")


def parent_has_pools():
    """Whether this process records pools of its own (a fork child must forget them)."""
    modules = sys.modules
    for name in _POOL_RECORDS:
        module = modules.get(name)
        if module is not None and module.has_pools():
            return True
    return False


def _count_channels_here(run):
    """Pickles on queues and connections count in this process from now on."""
    _channels = sys.modules.get("mptrace._channels")  # a fresh interpreter may not have it: see _instrument_channels
    if run.carrier["method"] == "fork":  # the parent's settings, inherited with its memory
        if _channels is not None:
            _channels.forget_inherited_tallies()
        if run.parent_has_pools is not False:  # the parent's pools (unless it said before the fork it had none)
            for name in _POOL_RECORDS:
                module = sys.modules.get(name)
                if module is not None:
                    module.forget()
    elif _channels is not None:  # else it starts with the tree's thresholds when it is loaded
        _channels.reset(*run.tree.get("pk", (_channels.DEFAULT_SPAN_BYTES, _channels.DEFAULT_SPAN_SECONDS)))


def _wire_opentelemetry(run, inherited_provider):
    """Now if the child has OpenTelemetry loaded, else as soon as it has imported it.

    Code that imports the SDK first imports the API halfway through the SDK's
    own import; wiring needs the SDK, so then the SDK's hook does it.
    """
    if run.wired_by_inheritance is not None:  # a fork child whose parent found nothing to wire
        run.otel_wired = True
        _channels = sys.modules["mptrace._channels"]
        _channels.use_run_span(run.wired_by_inheritance)
        return
    if "opentelemetry.trace" in sys.modules:
        _load_otel_child().wire(run, inherited_provider)
    else:
        from mptrace import _importhook

        for name in ("opentelemetry.trace", "opentelemetry.sdk.trace"):
            _importhook.call_after_import(name, lambda module: _wire_late(run, module))


def _record_imports(run, clock):
    """mp.import spans: the start-up import work, from activation to here."""
    clock.close_open_phase()
    clock.stop()
    if run.carrier["method"] == "forkserver":
        run.run_span.set_attributes({semconv.FORKSERVER_PRELOAD: run.carrier.get("fsp", []),
                                     semconv.IMPORT_INHERITED: clock.inherited})
    for phase, start, end, count, slowest in clock.phases:
        attributes = {semconv.IMPORT_PHASE: phase, semconv.IMPORT_COUNT: count, semconv.IMPORT_SLOWEST: slowest}
        if phase == "main":
            main = sys.modules.get("__mp_main__")
            attributes[semconv.IMPORT_MODULE] = getattr(main, "__file__", None) or "__main__"
            attributes[semconv.IMPORT_MAIN_RERAN] = clock.main_reran
        span = _litespan.LiteSpan(run.writer, semconv.SPAN_IMPORT, run.run_span.trace_id, run.run_span.span_id,
                                  attributes=attributes, sampled=run.run_span.sampled, begin=False)
        span.record_whole(start, end)


MAX_ARG_DIFFERENCES = 16  # differing paths on one mp.arg.changed event; the rest are counted


def _compare_arguments(run, process):
    """mp.args.changed: what pickling changed between the parent's start() and here."""
    from mptrace import _fingerprint

    items = _fingerprint.process_items(process._target, process._args, process._kwargs)
    classes = set()
    arrived = _fingerprint.fingerprint(items, run.carrier.get("capture"), classes, key=_digest_key(run.tree))
    changes = _fingerprint.changed_arguments(run.carrier["fp"], arrived)
    span = run.run_span
    span.set_attribute(semconv.ARGS_CHANGED, sorted(changes))
    for argument in sorted(changes):
        differences = changes[argument]
        if len(differences) > MAX_ARG_DIFFERENCES:
            differences = differences[:MAX_ARG_DIFFERENCES - 1] + [
                "+%d more" % (len(differences) - MAX_ARG_DIFFERENCES + 1)]
        span.add_event(semconv.EVENT_ARG_CHANGED, {
            semconv.ARG: argument, semconv.ARG_DIFFERENCES: "; ".join(differences)})
    unknown = _fingerprint.uncompared_arguments(run.carrier["fp"], arrived)
    if unknown:
        span.set_attribute(semconv.ARGS_UNKNOWN, sorted(unknown))
    hooks = _fingerprint.setstate_hooks(classes)
    if hooks:
        span.set_attribute(semconv.UNPICKLE_HOOKS, hooks)


def _compare_module_state(run):
    """mp.state.diverged: watched globals this child sees differently from the parent.

    What it could not compare (a module it has not imported, a value too large
    to digest) goes to mp.state.unknown: not diverged, but not inherited either.
    """
    parent_state = run.carrier.get("state")
    found, unknown, compared = [], [], []
    if parent_state:
        from mptrace import _modstate

        found, unknown, compared = _modstate.compare_with_parent(parent_state, _digest_key(run.tree))
    span = run.run_span
    span.set_attribute(semconv.STATE_DIVERGED, [name for name, _, _, _ in found])
    span.set_attribute(semconv.STATE_COMPARED, compared)
    span.set_attribute(semconv.STATE_UNKNOWN, [what for what, _ in unknown])
    for name, parent, child, differences in found:
        span.add_event(semconv.EVENT_STATE_DIVERGED, {
            semconv.STATE_NAME: name, semconv.STATE_PARENT: parent, semconv.STATE_CHILD: child,
            semconv.STATE_DIFFERENCES: differences})
    for what, why in unknown:
        span.add_event(semconv.EVENT_STATE_UNKNOWN, {semconv.STATE_NAME: what, semconv.STATE_REASON: why})


def _digest_key(tree):
    """The process tree's key for digests in fingerprints (see _fingerprint), as bytes."""
    key = tree.get("dk")
    return bytes.fromhex(key) if key else None


# The modules _otel_child imports: wiring waits until none is half-imported.
_WIRING_NEEDS = ("opentelemetry.context", "opentelemetry.trace", "opentelemetry.sdk.resources",
                 "opentelemetry.sdk.trace")


def _wire_late(run, imported):
    """``imported`` has just run its code: wire OpenTelemetry, unless a module wiring needs is still importing.

    ``imported`` itself still counts as importing (its hook runs inside its
    import), so it is left out of the check.
    """
    if run.otel_wired or any(_half_imported(name) for name in _WIRING_NEEDS if name != imported.__name__):
        return
    _load_otel_child().wire(run, None)
    for callback in run.on_late_wiring:
        _log.safely("making a span current after wiring OpenTelemetry", callback)


def _half_imported(name):
    """Whether module ``name`` is being imported now: in sys.modules, its code not finished.

    ``__spec__._initializing`` is importlib's own flag for that (it is what
    makes Python call a module "partially initialized" in an ImportError).
    """
    module = sys.modules.get(name)
    return module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is True


def _watch_for_failure(run):
    """Learn which exception ended run(), without a frame in its traceback.

    When run() raises, ``_bootstrap`` reports it inside its ``except`` clause
    with ``sys.stderr.write('Process %s:' % self.name)``. ``BaseProcess.name``
    is replaced by a property that, when read by ``_bootstrap`` itself while an
    exception is being handled, notes it. The root sets it at install() (it is
    inert there), so that fork children inherit it; a fork server started under
    mptrace sets it for its children (see prepare_server); spawn children set it here.
    """
    import multiprocessing.process as mp_process
    import multiprocessing.util as mp_util

    base = mp_process.BaseProcess
    if not state.patches.is_patched(base, "name"):  # a fork child inherits it from its parent
        state.patches.replace(base, "name", _failure_property(base))
    if _exit_hook_applies is not False and not state.patches.is_patched(mp_util, "_exit_function"):  # nor this
        state.patches.replace_with(mp_util, "_exit_function", exit_function_hook)


def _failure_property(base):
    """The property that replaces ``BaseProcess.name`` to learn which exception ended run()."""
    original = vars(base)["name"]
    bootstrap_code = _original_bootstrap_code()
    getter = original.fget

    def name(self):
        failure = sys.exc_info()[1]  # first: sys._getframe makes a frame object, on every start()
        if failure is not None and sys._getframe(1).f_code is bootstrap_code and state.child is not None:
            state.child.failure = failure
        return getter(self)

    return property(name, original.fset, original.fdel, original.__doc__)


# exit_function_sees_runs_exception()'s answer once asked (a fork child inherits it: it asks nothing).
_exit_hook_applies = None


def exit_function_sees_runs_exception():
    """Whether ``_bootstrap`` calls ``util._exit_function`` around run() (3.9-3.12): from 3.13 it runs the exit
    handlers after it returns, when the exception is gone, and there is nothing to hook."""
    global _exit_hook_applies
    if _exit_hook_applies is None:
        _exit_hook_applies = "_exit_function" in getattr(_original_bootstrap_code(), "co_names", ())
    return _exit_hook_applies


def _original_bootstrap_code():
    """The code of multiprocessing's own ``BaseProcess._bootstrap`` (whether mptrace patched it yet or not)."""
    import multiprocessing.process as mp_process

    return getattr(state.patches.original(mp_process.BaseProcess, "_bootstrap"), "__code__", None)


def exit_function_hook(original):
    """``multiprocessing.util._exit_function`` that also notes the ``sys.exit("message")`` ending run().

    ``_bootstrap`` calls it in the ``finally`` clause around run(), where the exception leaving run() is
    ``sys.exc_info()``'s. A SystemExit whose code is a message ends the child with exit code 1, and
    ``_bootstrap`` only prints the message: without this, the trace would say "exit code 1" and not why.
    Any other exception is noted as ``_bootstrap`` handles it (see _watch_for_failure), and an integer code
    is the exit code itself. Inert outside a traced child's ``_bootstrap``: there it only calls ``original``.
    Where ``_bootstrap`` does not call it so (3.13 and later), ``original`` itself: nothing to patch.
    """
    if not exit_function_sees_runs_exception():
        return original
    bootstrap_code = _original_bootstrap_code()

    def _exit_function(*args, **kwargs):
        failure = sys.exc_info()[1]
        if (isinstance(failure, SystemExit) and failure.code is not None and not isinstance(failure.code, int)
                and state.child is not None and sys._getframe(1).f_code is bootstrap_code):
            state.child.failure = failure  # a message: sys.exit("...")
        return original(*args, **kwargs)

    return _exit_function


def failure_hook(original):
    """``BaseProcess.name`` with the hook of ``_watch_for_failure`` (``original``: the property it replaces)."""
    import multiprocessing.process as mp_process

    return _failure_property(mp_process.BaseProcess)


def _new_uuid4():
    """A random UUID string (the uuid module is slow to import in a child)."""
    value = bytearray(os.urandom(16))
    value[6] = (value[6] & 0x0F) | 0x40
    value[8] = (value[8] & 0x3F) | 0x80
    h = value.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _iso_now():
    """Now in ISO 8601 to the second; formatted once a second (a parent starting children in a loop asks at
    every start, and strftime reads the locale: pages a forking parent writes again each time)."""
    second = int(time.time())
    last = _last_iso[0]
    if last[0] != second:
        last = _last_iso[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return last[1]


_last_iso = [(None, None)]

