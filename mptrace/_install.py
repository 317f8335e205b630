"""install(), uninstall(), flush(): the root process's lifecycle."""

import atexit
import importlib
import os
import sys
import threading

from mptrace import __version__, _channels, _child, _config, _log, _parent, _provider
from mptrace import _bounded, _fds, _forkhold, _grpcfork, _importhook
from mptrace import semconv
from mptrace._state import reset, state

# (module, class or None for a module function, attribute, wrapper as "mptrace module.function": its module
# is imported when the patch is made): plain functions with wrapt's convention (see
# PatchRegistry.wrap_plain); wrapt itself patches pools and executors, when imported.
PATCH_POINTS = (
    ("multiprocessing.process", "BaseProcess", "start", "_parent.start_wrapper"),
    ("multiprocessing.process", "BaseProcess", "_bootstrap", "_child.bootstrap_wrapper"),
    ("multiprocessing.popen_fork", "Popen", "__init__", "_parent.popen_init_wrapper"),
    ("multiprocessing.popen_fork", "Popen", "_send_signal", "_parent.send_signal_wrapper"),
    ("multiprocessing.spawn", None, "get_preparation_data", "_parent.preparation_data_wrapper"),
    ("multiprocessing.reduction", None, "dump", "_pickling.dump_wrapper"),
    ("multiprocessing.forkserver", "ForkServer", "ensure_running", "_envdiff.ensure_running_wrapper"),
    ("multiprocessing.forkserver", None, "ensure_running", "_envdiff.ensure_running_wrapper"),  # bound at import
    ("multiprocessing.connection", "_ConnectionBase", "__init__", "_fds.connection_init_wrapper"),
)

# The modules install() imports to patch them: every program that starts a process has them (the
# multiprocessing package imports process and reduction, a fork start popen_fork). Every other module of
# the points above, and each channel module (see _channels), is patched when the program imports it, or
# at once if it has: a program that starts processes by fork alone never loads spawn, forkserver,
# connection or queues (with runpy, socket, selectors, _multiprocessing, _posixshmem...), and each module
# more in the root makes every fork, every fork child's first writes and every child's exit slower.
IMPORTED_AT_INSTALL = ("multiprocessing.process", "multiprocessing.popen_fork", "multiprocessing.reduction")

# Who waits, in _importhook, for the modules patched when imported: install()'s patches (a spawn child
# that becomes a parent also has its own callbacks there, for the channel modules; see _child).
_AFTER_IMPORT_KEY = __name__

# (module, class, attribute, factory of a plain replacement from the original,
# which the class may inherit): hot paths that a wrapt wrapper would slow down.
REPLACEMENT_POINTS = (
    ("multiprocessing.popen_fork", "Popen", "__setattr__", _parent.returncode_observer),
    # Inert outside a child's _bootstrap; set here so that fork children inherit it (see _child).
    ("multiprocessing.process", "BaseProcess", "name", _child.failure_hook),
    # sys.exit("...") ending run(), where _bootstrap calls it around run() (3.9-3.12)
    ("multiprocessing.util", None, "_exit_function", _child.exit_function_hook),
)

# In the root these pass every span through unchanged; in fork children they
# send the spans of every inherited SDK provider to the child's spool.
# Plain replacements (factories of the original), not wrapt: they run for every span.
SDK_PATCH_POINTS = (
    ("opentelemetry.sdk.trace", "SynchronousMultiSpanProcessor", "on_start", "multi_on_start"),
    ("opentelemetry.sdk.trace", "SynchronousMultiSpanProcessor", "on_end", "multi_on_end"),
    ("opentelemetry.sdk.trace", "ConcurrentMultiSpanProcessor", "on_start", "multi_on_start"),
    ("opentelemetry.sdk.trace", "ConcurrentMultiSpanProcessor", "on_end", "multi_on_end"),
)

_lock = threading.RLock()

# How long mptrace's own work at exit and in uninstall() waits, in all, for the
# span processors to take the last spans and flush: the SDK's own default
# timeout for exporting and shutting down a BatchSpanProcessor.
EXIT_WAIT_SECONDS = 30.0


class Root:
    """What only the root process has: the provider, the collector, the module watch."""

    def __init__(self, provider, collector, options):
        self.provider = provider
        self.collector = collector
        self.options = options
        self.watch = None
        self.import_finder = None
        self.program = None  # the mp.program span (_program), when the run has one
        self._on_end = _span_processor_of(provider).on_end

    def emit(self, span):
        """Hand a finished span of the root's to the provider (with a deadline when mptrace waits on its own account)."""
        if _bounded.active():
            self.collector.hand_over_own(self._on_end, (span,))
        else:
            self._on_end(span)


def install(tracer_provider=None, **options):
    with _lock:
        if state.active():
            if tracer_provider is not None and state.is_root() and tracer_provider is not state.root.provider:
                # e.g. a program that installs mptrace itself, run under `mptrace run`
                _log.warning("install() was called again with another provider; mptrace is already installed "
                             "and keeps reporting to the first one")
            else:
                _log.debug("install() called again in pid %d; already instrumented", os.getpid())
            return
        parsed = _config.parse(options)
        provider = _provider.resolve(tracer_provider)
        if provider is None:
            return
        directory = _make_spool_directory(parsed.spool_dir)
        if directory is None:
            return
        _grpcfork.warn_if_exposed()
        _become_root(provider, parsed, directory)
        _apply_patches()
        _forkhold.register()
        atexit.register(_at_exit)
        if parsed.program_span:
            from mptrace import _program

            _program.begin(_program.default_name())


def _make_spool_directory(chosen):
    """The private spool directory: in ``chosen`` (the option), else the first
    memory-backed directory where it can be made, else the system temporary
    directory. None, having said why, when it can be made nowhere: then
    nothing is traced, and the program runs as it would without mptrace."""
    failures = []
    for parent in _config.spool_parents(chosen):
        try:
            directory = _private_directory(parent)
        except OSError as error:  # also tempfile's "no usable temporary directory"
            failures.append("%s (%s)" % (parent or "the temporary directory", error.strerror or error))
            continue
        if chosen and failures:
            _log.warning("cannot create the spool directory in %s; using %s", failures[0], directory)
        return directory
    _log.warning("not tracing: cannot create a spool directory in %s", ", ".join(failures))
    return None


SPOOL_PREFIX = "mptrace-"
_NAME_ATTEMPTS = 100  # names already taken before one is free: with 64 random bits, never more than one


def _private_directory(parent):
    """A new directory only this user can enter (0700), with an unpredictable name, as tempfile.mkdtemp
    makes it; in ``parent``, or (None) in tempfile's temporary directory.

    Not tempfile itself but where no directory is given: tempfile imports shutil, and shutil zlib, bz2 and
    lzma, three shared libraries the root would carry into every fork. os.mkdir fails if the name exists,
    so no one can have made it first, or put a link in its place.
    """
    if parent is None:
        import tempfile  # rare: no memory-backed directory; finding the temporary directory is tempfile's

        return tempfile.mkdtemp(prefix=SPOOL_PREFIX)
    for _ in range(_NAME_ATTEMPTS):
        directory = os.path.abspath(os.path.join(parent, SPOOL_PREFIX + os.urandom(8).hex()))
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        return directory
    raise FileExistsError("no free name for a spool directory in %s" % parent)


def _become_root(provider, options, directory):
    from mptrace import _modstate
    from mptrace._collector import Collector

    emit = _span_processor_of(provider).on_end
    state.role = "root"
    state.owner_pid = os.getpid()
    state.tree = {
        "dir": directory,
        "res": dict(provider.resource.attributes),
        "pk": [options.pickle_span_bytes, options.pickle_span_seconds],
        "watch": [list(options.watch_modules), list(options.ignore_modules)],
        "tasks": [options.task_spans_per_second, options.task_spans],
        "carry": options.check_task_state,  # what a worker's tasks leave changed is looked for (see _carryover)
        "dk": _digest_key(),
        "rs": options.random_state,
        "cap": bool(options.capture_values),  # values on spans: grandchildren of every start method need it too
        "fds": options.inherited_fds,
        "lib": _modstate.library_paths_to_carry(),  # spawn children of the same interpreter need not look them up
    }
    state.tracer = provider.get_tracer(semconv.SCOPE_NAME, __version__)
    state.children = {}
    state.child = None
    state.root = Root(provider, Collector(directory, emit), options)
    _channels.reset(options.pickle_span_bytes, options.pickle_span_seconds)
    _channels.use_opentelemetry()
    _configure_tasks()
    _watch_modules(state.root)
    if options.inherited_fds:
        _log.safely("noting the descriptors open at install()", _fds.note_environment)


# The key of the digests in fingerprints, hex: made once in the root, it reaches
# children only in the carrier (state.tree) and fork memory, never a span, so an
# exported digest cannot be brute-forced. Kept through uninstall(): import-time
# baselines outlive an install (see _modstate) and must stay comparable.
_key = None


def _digest_key():
    global _key
    if _key is None:
        _key = os.urandom(16).hex()
    return _key


def _watch_modules(root):
    """Record each application module's state right after it is imported."""
    from mptrace import _modstate

    root.watch = _modstate.ModuleWatch(root.options.watch_modules, root.options.ignore_modules,
                                       bytes.fromhex(state.tree["dk"]))
    root.import_finder = _importhook.install(
        _importhook.AfterImportFinder(root.watch.wanted_name, root.watch.record_baseline))


def _span_processor_of(provider):
    processor = getattr(provider, "_active_span_processor", None)
    if processor is None:
        raise TypeError("install() cannot reach the span processors of %r" % (provider,))
    return processor


# (module, the mptrace module that instruments it): mptrace's pool side (_tasks, _pickling, _spanparent...)
# is loaded with the first of them.
POOL_MODULES = (("multiprocessing.pool", "_pool"), ("concurrent.futures.process", "_executor"))

# The mptrace modules that keep state about pools, loaded only with a pool module (see POOL_MODULES).
POOL_SIDE = ("_tasks", "_pool", "_executor")


def _instrument_pools():
    """Pool and ProcessPoolExecutor: now if the program has imported them, else once it does.

    Never imported for mptrace: importing concurrent.futures.process registers
    an exit hook that every fork child would then run too.
    """
    for module_name, instrumenting_module in POOL_MODULES:
        if module_name in sys.modules:
            _instrument_pool(instrumenting_module)
        else:
            _importhook.call_after_import(module_name, lambda module, name=instrumenting_module: _instrument_if_active(
                name))


def _instrument_if_active(instrumenting_module):
    if state.active():  # not after uninstall()
        _instrument_pool(instrumenting_module)


def _instrument_pool(instrumenting_module):
    instrumenter = importlib.import_module("mptrace." + instrumenting_module)  # with _tasks
    _configure_tasks()
    instrumenter.instrument(state.patches)


def _configure_tasks():
    """The process tree's task-span settings, into _tasks if it is loaded (else _instrument_pool will)."""
    tasks = sys.modules.get("mptrace._tasks")
    if tasks is not None:
        tasks.configure(state.tree.get("tasks", (tasks.DEFAULT_SPANS_PER_SECOND, "chunk")))


def _apply_patches():
    for module_name in _patched_modules():
        module = sys.modules.get(module_name)
        if module is None and module_name in IMPORTED_AT_INSTALL:
            module = _import_if_available(module_name)
        if module is not None:
            _patch_module(module)
        elif module_name not in IMPORTED_AT_INSTALL:
            _importhook.call_after_import(module_name, _patch_module_if_active, key=_AFTER_IMPORT_KEY)
    _instrument_pools()
    if "opentelemetry.sdk.trace" in sys.modules:  # never import the SDK just for this
        from mptrace import _otel_child

        _channels.instrument_span_end(state.patches)

        for module_name, owner_name, attribute, factory_name in SDK_PATCH_POINTS:
            owner = getattr(sys.modules[module_name], owner_name)
            if not state.patches.is_patched(owner, attribute):
                state.patches.replace(owner, attribute, getattr(_otel_child, factory_name)(vars(owner)[attribute]))


def _patched_modules():
    """The names of the modules install() patches, each once, in the order of the patch points."""
    names = [module_name for module_name, _, _, _ in PATCH_POINTS + REPLACEMENT_POINTS]
    names += [module_name for module_name, _ in _channels.CHANNEL_MODULES]
    return list(dict.fromkeys(names))


def _import_if_available(module_name):
    """The module; None where the platform lacks it (e.g. popen_fork on Windows)."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        _log.debug("%s is not available on this platform", module_name)
        return None


def _patch_module_if_active(module):
    """A module patched when imported (see IMPORTED_AT_INSTALL), in the process that imports it."""
    if state.active():  # not after uninstall(), nor in a process forked from a traced one but not traced
        _patch_module(module)


def _patch_module(module):
    """Every patch install() makes in ``module`` that is not made yet (in the order of the patch points)."""
    name = module.__name__
    for module_name, owner_name, attribute, wrapper_name in PATCH_POINTS:
        owner = _owner(module, module_name, owner_name)
        if owner is not None and not state.patches.is_patched(owner, attribute):
            # not wrapt: see PatchRegistry.wrap_plain
            state.patches.wrap_plain(owner, attribute, _mptrace_function(wrapper_name))
    for module_name, owner_name, attribute, factory in REPLACEMENT_POINTS:
        owner = _owner(module, module_name, owner_name)
        if owner is not None and not state.patches.is_patched(owner, attribute):
            state.patches.replace_with(owner, attribute, factory)
    channel = dict(_channels.CHANNEL_MODULES).get(name)
    if channel is not None:
        _channels.instrument_module(state.patches, module, channel)


def _owner(module, module_name, owner_name):
    """What a patch point of ``module_name`` patches, if ``module`` is that module."""
    if module.__name__ != module_name:
        return None
    return getattr(module, owner_name) if owner_name else module


def _mptrace_function(dotted_name):
    """"_parent.start_wrapper": that function of mptrace's, its module imported now if need be."""
    module_name, function_name = dotted_name.rsplit(".", 1)
    return getattr(importlib.import_module("mptrace." + module_name), function_name)


def upgrade_child_to_parent():
    """A spawn child is about to start a process: load the parent-side patches."""
    with _lock:
        import multiprocessing.process as mp_process

        _undo_trampolines(mp_process.BaseProcess)
        _configure_tasks()
        _apply_patches()


def _undo_trampolines(process_class):
    """The spawn child's plain stand-ins for start() and pool creation (see _child)."""
    state.patches.undo(process_class, "start")
    for module_name, class_name in _child.POOL_CLASSES:
        owner = getattr(sys.modules.get(module_name), class_name, None)
        if getattr(vars(owner).get("__init__") if owner is not None else None, "mptrace_trampoline", False):
            state.patches.undo(owner, "__init__")


def uninstall():
    with _lock:
        if state.is_root():
            with _bounded.waiting_at_most(EXIT_WAIT_SECONDS):
                _log.safely("collecting spans at uninstall", _shut_down_root, "mptrace.uninstall() was called",
                            "uninstall")
            atexit.unregister(_at_exit)
            _importhook.remove(state.root.import_finder)
            for module_name, _ in POOL_MODULES:
                _importhook.drop_pending(module_name)
            for module_name in _patched_modules():
                _importhook.drop_pending(module_name, key=_AFTER_IMPORT_KEY)
        state.patches.undo_all()
        _channels.reset()
        for module_name in POOL_SIDE:
            module = sys.modules.get("mptrace." + module_name)
            if module is not None:  # loaded with a pool module only
                module.forget()
        reset()


def flush(timeout=5.0):
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise ValueError("flush() argument 'timeout' must be a non-negative number of seconds, got %r" % (timeout,))
    if not state.is_root():
        return True
    with _bounded.waiting_at_most(timeout) as deadline:
        _parent.poll_children()
        state.root.collector.collect()
        flushed = _force_flush(state.root.provider)
    return flushed and not deadline.gave_up


def stats():
    if not state.is_root():
        return {}
    counts = dict(state.root.collector.counts)
    counts["lost_reasons"] = dict(state.root.collector.lost_reasons)
    counts.update(_channels.tally_attributes(_channels.process_tally))  # pickles no span enclosed
    return counts


def _shut_down_root(reason, pools_end="exit", at_exit=False):
    tasks = sys.modules.get("mptrace._tasks")
    if tasks is not None:  # else no pool was made
        tasks.end_open_pools(pools_end)
    _parent.poll_children()
    _parent.end_unobserved(reason)
    from mptrace import _program

    _program.end()  # after every child's mp.process: the run ends when its last child was seen to
    state.root.collector.close(reason)
    provider = state.root.provider
    # At exit, a provider that shuts itself down then (the SDK's default) exports
    # what it holds: flushing first would only make a program whose backend is
    # down wait twice as long to exit.
    if not (at_exit and getattr(provider, "_atexit_handler", None) is not None):
        if not _force_flush(provider):
            _log.warning("the span processors did not flush within %g s (%s)", EXIT_WAIT_SECONDS, reason)


def _force_flush(provider):
    """provider.force_flush(), waited for until the deadline of this thread's wait at most."""
    try:
        return bool(_bounded.call(provider.force_flush, _bounded.remaining_millis()))
    except _bounded.GaveUp:
        return False


def _at_exit():
    """At interpreter exit, before the provider shuts down, bring every span home.

    multiprocessing's own exit routine (join non-daemonic children, terminate
    daemonic ones) is idempotent and would run later in the atexit order; we
    run it now, so that the spans of the children it ends reach the provider
    before the provider's own atexit shutdown, whichever was registered first.
    """
    if not state.is_root():
        return
    with _bounded.waiting_at_most(EXIT_WAIT_SECONDS):  # the children's exits end spans too
        try:
            from multiprocessing import util

            util._exit_function()
        except Exception:
            _log.internal_error("running multiprocessing's exit routine")
        _log.safely("collecting spans at exit", _shut_down_root, "parent exited", "exit", True)
