"""mp.pickle for the process object a spawn or forkserver child receives.

``reduction.dump(obj, file)`` is how the spawn and forkserver Popens send the
preparation data and the process object (target, args, kwargs) to the child.
While a traced ``start()`` is in progress in this thread, mptrace performs that
same dump with a ``ForkingPickler`` subclass whose ``reducer_override`` notes,
for every object pickled, whether its class has a custom pickling hook, and
then returns ``NotImplemented``, so pickling proceeds exactly as it would
have: the bytes are identical. Each dump is an ``mp.pickle`` span under
``mp.process`` with its size and the hooks that ran.

When pickling fails, the user's exception propagates unchanged; the span
records it, with the path to the offending object when a structural walk can
find it (``args[1].handler``), and a hint.
"""

import copyreg

from multiprocessing import reduction

from mptrace import _fingerprint, _litespan, _log, semconv
from mptrace._modstate import _ATOM_IDS
from mptrace._state import launching, state

_HOOK_NAMES = ("__reduce_ex__", "__reduce__", "__getstate__", "__getnewargs_ex__", "__getnewargs__")
MAX_HOOKS = 32


def hooks_of(cls, dispatch_table):
    """The custom pickling hooks ``cls`` has, as ``module.Qualname.__hook__``."""
    if _fingerprint.is_library_class(cls):
        return ()
    hooks = []
    reducer = dispatch_table.get(cls) or copyreg.dispatch_table.get(cls)
    if reducer is not None:
        hooks.append("%s (copyreg reducer for %s)" % (_fingerprint.type_name(reducer), _fingerprint.type_name(cls)))
    for name in _HOOK_NAMES:
        owner = _defining_class(cls, name)
        if owner is not None and owner is not object and not _fingerprint.is_library_class(owner):
            hooks.append("%s.%s" % (_fingerprint.type_name(owner), name))
    return hooks


def _defining_class(cls, name):
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


class HookSpyingPickler(reduction.ForkingPickler):
    """A ForkingPickler that notes custom hooks and pickles exactly the same."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hooks = []
        self._seen_types = set()

    def reducer_override(self, obj):
        cls = type(obj)
        if cls not in self._seen_types and len(self.hooks) < MAX_HOOKS:
            self._seen_types.add(cls)
            for hook in hooks_of(cls, self.dispatch_table):
                if hook not in self.hooks:
                    self.hooks.append(hook)
        return NotImplemented


def dump_wrapper(wrapped, instance, args, kwargs):
    launch = launching.__dict__.get("launch")
    if launch is None or not state.active():
        return wrapped(*args, **kwargs)
    obj, file = args[0], args[1]
    protocol = args[2] if len(args) > 2 else kwargs.get("protocol")
    channel = "process" if obj is launch.process else "preparation"
    span = _log.safely("opening mp.pickle", _open_span, launch, channel)
    if span is None:
        return wrapped(*args, **kwargs)
    offset = _log.safely("measuring a pickle", file.tell)
    if channel == "preparation" and _log.safely("reading the preparation data", _holds_no_hook, obj):
        pickler, hooks = reduction.ForkingPickler(file, protocol), ()  # what the original dump does
    else:
        pickler = HookSpyingPickler(file, protocol)
        hooks = pickler.hooks
    try:
        pickler.dump(obj)
    except BaseException as exc:
        _log.safely("recording a failed pickle", _pickle_failed, span, launch, exc)
        raise
    _log.safely("closing mp.pickle", _close_span, span, channel, file, offset, hooks, launch)


def _holds_no_hook(data):
    """Whether multiprocessing's preparation data (a dict of names, paths, flags: see spawn.get_preparation_data)
    holds nothing whose class has a pickling hook of the user's: then a spying pickler would find none, and
    the plain one is used. One level of lists is looked into; anything else is judged by its class."""
    if type(data) is not dict:
        return False
    for value in data.values():
        kind = type(value)
        if id(kind) in _ATOM_IDS:  # str, int, None...: builtins, which pickle without a hook
            continue
        if kind is list or kind is tuple:
            if all(id(type(item)) in _ATOM_IDS for item in value):
                continue
            return False
        if not _fingerprint.is_library_class(kind):  # the authkey, mptrace's stowaway
            return False
    return True


def _open_span(launch, channel):
    parent = launch.span
    if getattr(parent, "ends_with_a_collection", False):  # the root's mp.process, decided by the sampler
        # Started as the SDK's tracer would start it under mp.process (see _rootspan.start_sampled), for a
        # few microseconds instead of some twenty: a spawn or forkserver start() pickles twice.
        from mptrace import _rootspan

        span = _rootspan.start_sampled(state.tracer, state.root.provider, semconv.SPAN_PICKLE,
                                       _litespan.KIND_INTERNAL, {semconv.PICKLE_CHANNEL: channel},
                                       parent.get_span_context())
        if span is not None:
            return span
    span = state.tracer.start_span(semconv.SPAN_PICKLE, **_child_of(parent))
    span.set_attribute(semconv.PICKLE_CHANNEL, channel)
    return span


def _child_of(span):
    """start_span keyword arguments that make the new span a child of ``span``."""
    if state.is_root():  # mp.process is a RootSpan (see _rootspan) unless the tracer decided otherwise
        from mptrace import _spanparent

        return {"context": _spanparent.of_span(span)}
    return {"parent": span}  # a LiteSpan, in a child that starts processes


def _close_span(span, channel, file, offset, hooks, launch):
    if offset is not None:
        span.set_attribute(semconv.PICKLE_BYTES, file.tell() - offset)
    span.set_attribute(semconv.PICKLE_HOOKS, list(hooks))
    if channel == "process":
        launch.span.set_attribute(semconv.PICKLE_HOOKS, list(hooks))
    span.end()


def _pickle_failed(span, launch, exc):
    process = launch.process
    found = _fingerprint.find_unpicklable(_fingerprint.process_items(
        getattr(process, "_target", None), getattr(process, "_args", ()), getattr(process, "_kwargs", {})))
    if found is not None:
        path, hint = found
        span.set_attribute(semconv.PICKLE_PATH, path)
        span.set_attribute(semconv.PICKLE_HINT, hint)
    where = " at %s" % found[0] if found is not None else ""
    end_with_error(span, exc, "pickling the process failed%s" % where)


def end_with_error(span, exc, what):
    """End ``span`` as ERROR: ``what`` failed with the user's exception ``exc``."""
    from mptrace._parent import _set_error

    span.record_exception(exc, escaped=True)
    span.set_attribute(semconv.OTEL_ERROR_TYPE, _fingerprint.type_name(type(exc)))
    _set_error(span, "%s: %s: %s" % (what, type(exc).__name__, _litespan.safe_str(exc)))
    span.end()
