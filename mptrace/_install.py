"""install(), uninstall(), flush(): the root process's lifecycle."""

import atexit
import importlib
import os
import sys
import tempfile
import threading

from mptrace import __version__, _channels, _child, _config, _executor, _log, _parent, _pickling, _pool, _provider
from mptrace import _bounded, _envdiff, _fds, _forkhold, _grpcfork, _tasks
from mptrace import semconv
from mptrace._state import reset, state

# (module, class or None for a module function, attribute, wrapper): plain functions with wrapt's
# convention (see PatchRegistry.wrap_plain); wrapt itself patches pools and executors, when imported.
PATCH_POINTS = (
    ("multiprocessing.process", "BaseProcess", "start", _parent.start_wrapper),
    ("multiprocessing.process", "BaseProcess", "_bootstrap", _child.bootstrap_wrapper),
    ("multiprocessing.popen_fork", "Popen", "__init__", _parent.popen_init_wrapper),
    ("multiprocessing.spawn", None, "get_preparation_data", _parent.preparation_data_wrapper),
    ("multiprocessing.reduction", None, "dump", _pickling.dump_wrapper),
    ("multiprocessing.forkserver", "ForkServer", "ensure_running", _envdiff.ensure_running_wrapper),
    ("multiprocessing.forkserver", None, "ensure_running", _envdiff.ensure_running_wrapper),  # bound at import
    ("multiprocessing.connection", "_ConnectionBase", "__init__", _fds.connection_init_wrapper),
)

# (module, class, attribute, factory of a plain replacement from the original,
# which the class may inherit): hot paths that a wrapt wrapper would slow down.
REPLACEMENT_POINTS = (
    ("multiprocessing.popen_fork", "Popen", "__setattr__", _parent.returncode_observer),
    # Inert outside a child's _bootstrap; set here so that fork children inherit it (see _child).
    ("multiprocessing.process", "BaseProcess", "name", _child.failure_hook),
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
            directory = tempfile.mkdtemp(prefix="mptrace-", dir=parent)
        except OSError as error:  # also tempfile's "no usable temporary directory"
            failures.append("%s (%s)" % (parent or "the temporary directory", error.strerror or error))
            continue
        if chosen and failures:
            _log.warning("cannot create the spool directory in %s; using %s", failures[0], directory)
        return directory
    _log.warning("not tracing: cannot create a spool directory in %s", ", ".join(failures))
    return None


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
    _tasks.configure(state.tree["tasks"])
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
    from mptrace import _importhook, _modstate

    root.watch = _modstate.ModuleWatch(root.options.watch_modules, root.options.ignore_modules,
                                       bytes.fromhex(state.tree["dk"]))
    root.import_finder = _importhook.install(
        _importhook.AfterImportFinder(root.watch.wanted_name, root.watch.record_baseline))


def _span_processor_of(provider):
    processor = getattr(provider, "_active_span_processor", None)
    if processor is None:
        raise TypeError("install() cannot reach the span processors of %r" % (provider,))
    return processor


POOL_MODULES = (("multiprocessing.pool", _pool.instrument), ("concurrent.futures.process", _executor.instrument))


def _instrument_pools():
    """Pool and ProcessPoolExecutor: now if the program has imported them, else once it does.

    Never imported for mptrace: importing concurrent.futures.process registers
    an exit hook that every fork child would then run too.
    """
    from mptrace import _importhook

    for module_name, instrument in POOL_MODULES:
        if module_name in sys.modules:
            instrument(state.patches)
        else:
            _importhook.call_after_import(module_name, lambda module, instrument=instrument: _instrument_if_active(
                instrument))


def _instrument_if_active(instrument):
    if state.active():  # not after uninstall()
        instrument(state.patches)


def _apply_patches():
    for module_name, owner_name, attribute, wrapper in PATCH_POINTS:
        owner = _patch_owner(module_name, owner_name)
        if owner is not None and not state.patches.is_patched(owner, attribute):
            state.patches.wrap_plain(owner, attribute, wrapper)  # not wrapt: see PatchRegistry.wrap_plain
    for module_name, owner_name, attribute, factory in REPLACEMENT_POINTS:
        owner = _patch_owner(module_name, owner_name)
        if owner is not None and not state.patches.is_patched(owner, attribute):
            state.patches.replace(owner, attribute, factory(getattr(owner, attribute)))
    _channels.instrument(state.patches, import_now=True)
    _instrument_pools()
    if "opentelemetry.sdk.trace" in sys.modules:  # never import the SDK just for this
        from mptrace import _otel_child

        _channels.instrument_span_end(state.patches)

        for module_name, owner_name, attribute, factory_name in SDK_PATCH_POINTS:
            owner = getattr(sys.modules[module_name], owner_name)
            if not state.patches.is_patched(owner, attribute):
                state.patches.replace(owner, attribute, getattr(_otel_child, factory_name)(vars(owner)[attribute]))


def _patch_owner(module_name, owner_name):
    """The module, or its class ``owner_name``; None where the platform lacks the module."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # e.g. popen_fork on Windows
        _log.debug("%s is not available on this platform", module_name)
        return None
    return getattr(module, owner_name) if owner_name else module


def upgrade_child_to_parent():
    """A spawn child is about to start a process: load the parent-side patches."""
    with _lock:
        import multiprocessing.process as mp_process

        _undo_trampolines(mp_process.BaseProcess)
        _tasks.configure(state.tree.get("tasks", (_tasks.DEFAULT_SPANS_PER_SECOND, "chunk")))
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
            from mptrace import _importhook

            _importhook.remove(state.root.import_finder)
            for module_name, _ in POOL_MODULES:
                _importhook.drop_pending(module_name)
        state.patches.undo_all()
        _channels.reset()
        for module in (_tasks, _pool, _executor):
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
    _tasks.end_open_pools(pools_end)
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
