"""Structural fingerprints: what a value looks like, without running its code.

A fingerprint maps paths (``args[0]``, ``args[0].c``, ``kwargs['x']``) to short
descriptions (``3``, ``str(len=5)``, ``__main__.A``). The parent takes one of a
process's target and arguments before they are pickled, the child one after
they are unpickled; the paths whose descriptions differ are what pickling
changed.

The walk never calls user code: it reads ``__dict__`` and ``__slots__`` with
``object.__getattribute__``, iterates containers through the built-in types'
own methods (so overridden ``__iter__``/``__len__``/``__eq__``/``__repr__``
never run), and it is bounded in depth and size. Numbers, booleans and None
are described by value; strings, bytes and other objects by type and size only
unless values are captured on purpose (they may hold secrets).

Standard library only: spawn children import this on their start-up path.
"""

import sys
import types

MAX_DEPTH = 4
MAX_ITEMS = 16  # per container
MAX_ENTRIES = 200  # per fingerprint
MAX_VALUE = 40  # characters of a captured value

_NUMBERS = (bool, int, float, complex)
_TEXT = (str, bytes, bytearray)
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)


def type_name(cls):
    """``module.Qualname`` of a class; ``__mp_main__`` is the parent's ``__main__``."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if module == "__mp_main__":
        module = "__main__"
    return qualname if module in (None, "builtins") else "%s.%s" % (module, qualname)


def describe(value, capture_values=False):
    """A short description of one value, by value only where that is safe."""
    if value is None or isinstance(value, _NUMBERS):
        return _clip(repr(value)) if type(value) in (type(None), bool, int, float, complex) else type_name(type(value))
    if isinstance(value, _TEXT):
        size = len(value)
        if capture_values and type(value) in _TEXT:
            return _clip(repr(value))
        return "%s(len=%d)" % (type_name(type(value)), size)
    if isinstance(value, _CODE):
        kind = "module" if isinstance(value, types.ModuleType) else "class" if isinstance(value, type) else "function"
        name = value.__name__ if isinstance(value, types.ModuleType) else type_name(value)
        return "%s %s" % (kind, name)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return "%s(len=%d)" % (type_name(type(value)), _builtin_len(value))
    return type_name(type(value))


def fingerprint(items, capture_values=False, classes=None, max_depth=MAX_DEPTH):
    """``{path: description}`` for ``items``, an iterable of (path, value).

    ``classes``, if given, is a set that receives the type of every object walked.
    """
    entries = {}
    for path, value in items:
        _walk(path, value, max_depth, entries, set(), capture_values, classes)
    return entries


def setstate_hooks(classes):
    """``module.Qualname.__setstate__`` for the classes that define one."""
    hooks = set()
    for cls in classes:
        for klass in cls.__mro__:
            if "__setstate__" in vars(klass):
                if klass is not object and not is_library_class(klass):
                    hooks.add("%s.__setstate__" % type_name(klass))
                break
    return sorted(hooks)


def process_items(target, args, kwargs):
    """The (path, value) pairs of what a Process hands its child."""
    yield "target", target
    for index, value in enumerate(tuple.__iter__(tuple(args or ()))):
        yield "args[%d]" % index, value
    for key, value in dict.items(dict(kwargs or {})):
        yield "kwargs[%r]" % (key,), value


def changed_arguments(before, after):
    """``{argument: [differences]}`` between two fingerprints, per top-level argument."""
    changes = {}
    for path in sorted(set(before) | set(after)):
        was, now = before.get(path), after.get(path)
        if was == now:
            continue
        top = _top_level(path)
        if was is None:
            difference = "%s: appeared as %s" % (path, now)
        elif now is None:
            difference = "%s: was %s, missing on arrival" % (path, was)
        else:
            difference = "%s: was %s, arrived %s" % (path, was, now)
        changes.setdefault(top, []).append(difference)
    return changes


def _top_level(path):
    for index, char in enumerate(path):
        if char == "." or (char == "[" and index and path[index - 1] == "]"):
            return path[:index]
    return path


def _walk(path, value, depth_left, entries, seen, capture_values, classes):
    if len(entries) >= MAX_ENTRIES:
        return
    entries[path] = describe(value, capture_values)
    if depth_left <= 0 or id(value) in seen or value is None or isinstance(value, _NUMBERS + _TEXT + _CODE):
        return
    seen.add(id(value))
    if classes is not None:
        classes.add(type(value))
    for child_path, child in _children(path, value):
        _walk(child_path, child, depth_left - 1, entries, seen, capture_values, classes)


def _children(path, value):
    """(path, value) of what ``value`` holds, bounded, without running its code."""
    if isinstance(value, dict):
        items = list(dict.items(value))[:MAX_ITEMS]
        return [("%s[%s]" % (path, _key(k)), v) for k, v in items]
    if isinstance(value, (list, tuple)):
        base = list if isinstance(value, list) else tuple
        items = list(base.__iter__(value))[:MAX_ITEMS]
        return [("%s[%d]" % (path, i), v) for i, v in enumerate(items)]
    if isinstance(value, (set, frozenset)):
        return []  # unordered: described by size only
    if is_process_handle(value):
        return []  # its pickle carries a handle, not its attributes (a Queue drops what it buffers)
    return [("%s.%s" % (path, name), attribute) for name, attribute in _public_attributes(value)]


def is_process_handle(value):
    """Processes, queues, connections, pools, executors: handles to other processes."""
    module = getattr(type(value), "__module__", None) or ""
    return module.startswith(("multiprocessing", "concurrent.futures"))


def _public_attributes(value):
    attributes = []
    try:
        state = object.__getattribute__(value, "__dict__")
    except Exception:
        state = None
    if type(state) is dict:
        attributes.extend((k, v) for k, v in dict.items(state) if isinstance(k, str) and not k.startswith("_"))
    for cls in type(value).__mro__:
        for name in _slot_names(cls):
            if name.startswith("_") or any(n == name for n, _ in attributes):
                continue
            try:
                attributes.append((name, object.__getattribute__(value, name)))
            except Exception:
                continue  # an empty slot
    return sorted(attributes, key=lambda item: item[0])[:MAX_ITEMS]


def _slot_names(cls):
    slots = vars(cls).get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(s for s in slots if isinstance(s, str))


def _key(key):
    if key is None or type(key) in (bool, int, float, str):
        return _clip(repr(key))
    return describe(key)


def _builtin_len(value):
    for base in (dict, list, tuple, set, frozenset):
        if isinstance(value, base):
            return base.__len__(value)
    return 0


def _clip(text):
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


# -- what cannot be pickled --------------------------------------------------


def unpicklable_reason(value):
    """Why ``value`` cannot be pickled by multiprocessing, or None if it looks fine."""
    if isinstance(value, types.FunctionType):
        qualname = getattr(value, "__qualname__", "")
        if "<lambda>" in qualname:
            return "a lambda cannot be pickled: pickle refers to a function by its qualified name, which the " \
                   "receiving process imports; use a function defined at module level"
        if "<locals>" in qualname:
            outer, _, name = qualname.rpartition(".<locals>.")
            return "a function defined inside another function cannot be pickled: pickle refers to a function " \
                   "by its qualified name, which the receiving process imports; define %s at module level, not " \
                   "inside %s" % (name, outer)
        return None
    if isinstance(value, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return "a generator or coroutine cannot be pickled; pass the data it would produce instead"
    if isinstance(value, types.ModuleType):
        return "a module cannot be pickled; import it in the child instead"
    name = type_name(type(value))
    if name in ("_thread.lock", "_thread.RLock") or name.startswith("threading."):
        return "a threading lock cannot be pickled; use a multiprocessing.Lock passed to the Process, or create " \
               "the lock in the child"
    if name.startswith("_io.") or name.startswith("io."):
        return "an open file cannot be pickled; pass its path and open it in the child"
    if name.startswith("socket."):
        return "a socket cannot be pickled like this; create the connection in the child"
    return None


def find_unpicklable(items):
    """(path, reason) of the first value under ``items`` that cannot be pickled."""
    for path, value in items:
        found = _find(path, value, 0, set())
        if found is not None:
            return found
    return None


def _find(path, value, depth, seen):
    reason = unpicklable_reason(value)
    if reason is not None:
        return path, reason
    if depth >= MAX_DEPTH or id(value) in seen or value is None or isinstance(value, _NUMBERS + _TEXT + _CODE):
        return None
    seen.add(id(value))
    for child_path, child in _children(path, value):
        found = _find(child_path, child, depth + 1, seen)
        if found is not None:
            return found
    return None


# -- whose code a class is ---------------------------------------------------

_stdlib_cache = {}


def is_library_class(cls):
    """Hooks of the standard library's classes, and mptrace's own, are not the user's."""
    module = getattr(cls, "__module__", None) or ""
    return module.split(".")[0] == "mptrace" or is_stdlib_module(module)


def is_stdlib_module(name):
    """Whether module ``name`` belongs to the standard library."""
    top = name.split(".")[0]
    cached = _stdlib_cache.get(top)
    if cached is None:
        cached = _stdlib_cache[top] = _classify_stdlib(top)
    return cached


def _classify_stdlib(top):
    if top in ("__main__", "__mp_main__"):
        return False
    names = getattr(sys, "stdlib_module_names", None)  # 3.10+
    if names is not None:
        return top in names or top == "builtins"
    import sysconfig

    module = sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if module is not None and path is None:
        return True  # built into the interpreter
    stdlib = sysconfig.get_paths()["stdlib"]
    return bool(path) and path.startswith(stdlib) and "site-packages" not in path
