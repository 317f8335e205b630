"""Module state: what a child inherits under fork and re-imports under spawn.

A fork child sees every module global as the parent left it; a spawn or
forkserver child imports each module afresh and sees its import-time value.
mptrace watches the application's own modules (not the standard library, not
site-packages; ``__main__`` included), configurable by prefix:

* right after a watched module is imported, its module-level state (every
  global but functions, classes, modules and dunders) is fingerprinted: the
  import baseline. So is the class-level state of each class defined in the
  module (found among its globals, under its own name): each class attribute
  but methods, descriptors and dunders, named ``Class.attr`` (a spawn child
  re-imports the class, and with it the class body's values);
* at ``start()``, the state is fingerprinted again; names whose value changed
  since import go to ``mp.state.not_portable`` (a spawn or forkserver child
  will not see the change), under every start method;
* a spawn or forkserver child compares its own state, when ``run()`` begins,
  with the parent's at ``start()``: differing names go to
  ``mp.state.diverged``, with both descriptions and each differing path as
  span events; what it could not compare (a module it has not imported, a
  value too large to digest) goes to ``mp.state.unknown``: cannot tell.

Fingerprints carry keyed digests (see _fingerprint), so a change that keeps
every size (``"prod"`` to ``"test"``) still differs.

Modules imported before ``install()`` have no baseline; they are listed in
``mp.state.no_baseline`` instead of guessed at. The main module's baseline
comes from its source (see _mainstate, which only a parent loads). The comparison side uses only
the standard library (spawn children run it).
"""

import __future__
import os
import sys
import types
import weakref

from mptrace import _descriptions, _log

# mptrace._fingerprint, once a fingerprint is needed (see load_fingerprint); call sites read
# ``(_fingerprint or load_fingerprint())``, so a loaded module costs no extra call.
_fingerprint = None


def load_fingerprint():
    """Import _fingerprint at first use: a spawn child takes no fingerprint when its modules hold none of
    the names its parent sent, or only process handles there (comparing descriptions is _descriptions'
    work); a fork server loads it once for its children (see _preload)."""
    global _fingerprint
    from mptrace import _fingerprint as module

    _fingerprint = module
    return module


STATE_DEPTH = 2  # module.name and one level below it
MAX_MODULES = 64  # compared at each start(), in import order; beyond that a warning says so once
MAX_NAMES = 64  # per module
MAX_CLASSES = 32  # classes whose attributes are watched, per module
MAX_CLASS_NAMES = 32  # attributes, per class
# Not state: code, and ``from __future__ import ...`` feature flags (a spawn
# child that does not re-run the main script would otherwise "lack" them).
_NOT_STATE = (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, types.MethodType,
              __future__._Feature)


# What a name holding process handles (a Process, a list of Queues, ...) is
# recorded as: not compared, as a child re-creates such handles by design.
PROCESS_HANDLES = "<process handles>"
MAX_DIFFERENCES = 32  # per diverged name, on its event
TOO_LARGE = "too large to compare in full"  # why a name could not be compared
NOT_SENT = "sent without its content (its size had changed since import), and the child's is the same size"
_UNKNOWN_DIGEST = " #" + _descriptions.UNKNOWN  # the end of a description whose content could not be digested


def state_of(module, key=None, owner=None, baseline=None):
    """``{name: fingerprint}`` of a module's state (not functions, classes, modules).

    Class attributes of the classes defined in the module are state too, named
    ``Class.attr`` (see _class_state). ``key``: the process tree's digest key
    (see _fingerprint), so that a change the descriptions hide (``"prod"`` to
    ``"test"``) still shows. ``owner``: the module's name in ``sys.modules``,
    if known (see namespace_names). ``baseline``: the module's state at import,
    if known: a list, dict or set seen to differ from it by its description
    (its size), or new since import, gets no digest of its whole content.
    The child of a spawn or forkserver start it is sent to re-imports the
    module and compares what it holds then, most often the import-time value:
    the descriptions differ, and that tells the change. Where they do not (the
    child's import made one of the same size), a description without a digest
    compared with one that has it says "cannot tell", never "the same" (see
    _descriptions.compare).
    """
    return _state(module, key, owner, baseline, fork=False)[0]


def state_for_fork(module, baseline, key=None, owner=None):
    """(``state_of(module)`` but for the names seen to differ from ``baseline``, [those names]): a fork start's
    look, which needs to know only which names changed since import (see ModuleWatch.state_at_start).

    A name not in ``baseline`` (bound since import), or a list, dict or set whose description (its size) is
    not its baseline's, differs from it: a visible difference is a change (see _descriptions.compare).
    It is not fingerprinted: a fingerprint digests everything it holds, and a cache a program fills as it
    runs holds thousands of entries, digested at every start. Process handles are no state, as ever.
    """
    return _state(module, key, owner, baseline, fork=True)


def _state(module, key, owner, baseline, fork):
    """(the fingerprints, [names seen to differ from ``baseline``]) of state_of and state_for_fork: under fork
    such a name is not fingerprinted; otherwise a list, dict or set among them has no digest of its content."""
    namespace = own_namespace(module)
    if namespace is None:
        return {}, []
    names, watched = _names_and_classes(namespace, owner)
    atoms = _atom_fingerprints(module, key) if names else None
    state, changed = {}, []
    for name, value in names[:MAX_NAMES]:  # loops, not comprehensions: no function object per start (3.11)
        seen = (baseline is not None and (fork or type(value) in _SIZED)
                and _visibly_not_baseline(name, value, baseline.get(name)))
        if seen and fork:
            changed.append(name)
        else:
            state[name] = _fingerprint_of(name, value, key, atoms, digest=not seen)
    for cls in watched[:MAX_CLASSES]:
        try:
            state.update(_class_state(cls, key))
        except Exception:
            _log.internal_error("reading the class attributes of a class in %s" % dict.get(namespace, "__name__"))
    return state, changed


_SIZED = (list, dict, set)  # exact types: their description is their size (see _fingerprint.describe)


def _visibly_not_baseline(name, value, baseline):
    """Whether ``value`` differs from ``baseline`` (its fingerprint at import, None: it had none) by what is
    seen without a fingerprint: it is new, or a list, dict or set of another size; never process handles."""
    if baseline is None:
        return not _holds_only_process_handles(value)
    if type(value) not in _SIZED:
        return False
    was = baseline.get(name)
    if was is None or was == PROCESS_HANDLES:
        return False
    return (_descriptions.visible(was) != (_fingerprint or load_fingerprint()).describe(value)
            and not _holds_only_process_handles(value))


def _names_and_classes(namespace, owner=None):
    """([(name, value)] of the state, by name; [class] defined in the module, by name): what state_of reads.
    ``owner``: see namespace_names."""
    names, classes = [], []  # by name: only these, not the module's functions and imports
    for name in namespace_names(namespace, id(namespace) if owner is None else owner)[1]:
        if name.startswith("__"):  # its value is never read
            continue
        value = dict.get(namespace, name, _MISSING)
        if isinstance(value, type):
            classes.append((name, value))
        elif value is not _MISSING and not isinstance(value, _NOT_STATE):
            names.append((name, value))
    module_name, watched = dict.get(namespace, "__name__"), []
    for name, cls in classes:
        if _defined_here(cls, name, module_name):
            watched.append(cls)
    return names, watched


def has_state(module, owner=None):
    """Whether ``state_of(module)`` has any name, found without fingerprinting a value; ``owner``: the module's
    name in ``sys.modules``, if known (see namespace_names).

    The values are read up to the first that is state: a fork start reads no more of them (each one read
    is a reference count written, a page after every fork).
    """
    namespace = own_namespace(module)
    if namespace is None:
        return False
    classes = []
    for name in namespace_names(namespace, id(namespace) if owner is None else owner)[1]:
        if name.startswith("__"):
            continue
        value = dict.get(namespace, name, _MISSING)
        if isinstance(value, type):
            classes.append((name, value))
        elif value is not _MISSING and not isinstance(value, _NOT_STATE):
            return True  # as state_of would find it
    module_name, watched = dict.get(namespace, "__name__"), 0
    for name, cls in classes:  # by name, as state_of; a loop: no function object made at each start (3.11)
        if watched >= MAX_CLASSES:
            break
        if _defined_here(cls, name, module_name):
            watched += 1
            if _log.safely("reading the class attributes of a class", _has_class_state, cls):
                return True
    return False


_MISSING = object()


def _public_names(namespace):
    """The names of a namespace but dunders, read without its values: reading a value writes its reference
    count, a page fault after a fork for each page they span (``__builtins__``, ``__spec__``, ...)."""
    return [name for name in list(dict.__iter__(namespace)) if isinstance(name, str) and not name.startswith("__")]


def _fingerprint_of(name, value, key, atoms=None, digest=True):
    """``name``'s fingerprint; ``atoms``: those of immutable values already seen under each name, reused
    while the name holds the very same object (``is``), as an immutable value's fingerprint cannot change.
    ``digest``: False to leave out the digest of the value's whole content (what it holds below keeps its own)."""
    if atoms is not None:
        known = atoms.get(name)
        if known is not None and known[0] is value:
            return known[1]
    if _holds_only_process_handles(value):
        return {name: PROCESS_HANDLES}
    found = (_fingerprint or load_fingerprint()).fingerprint([(name, value)], max_depth=STATE_DEPTH, key=key,
                                                             undigested=() if digest else (name,))
    if atoms is not None and _is_immutable(value):
        if len(atoms) >= _MAX_CACHED:
            atoms.clear()
        atoms[name] = (value, found)
    return found


def _is_immutable(value, depth=0):
    """Whether nothing can change ``value`` in place, so that its fingerprint depends on its identity alone:
    a str, an int, a float, ... or a tuple or frozenset of such values. By the type itself (``is``):
    a subclass may carry mutable attributes, and its ``__eq__`` must not run."""
    kind = type(value)
    if kind is tuple or kind is frozenset:
        return depth < _IMMUTABLE_DEPTH and all(_is_immutable(item, depth + 1) for item in kind.__iter__(value))
    return id(kind) in _ATOM_IDS  # by identity, in C (these types live as long as the interpreter)


# -- class-level state ----------------------------------------------------------

# Whether a class is watched, per class: {id(cls): (cls, module name, global name, watched?)}.
# A class keeps its identity; its attributes are read afresh every time.
_class_decisions = {}
_descriptor_types = {}  # {id(type): (type, whether its instances are descriptors)}
# The fingerprints of immutable values (see _is_immutable), per module or class:
# {id(owner): (weak reference to the owner, key, {name: (value, fp)})}. The same object (``is``) has the
# same fingerprint; a counter bumped is a new int, fingerprinted again. Holding an immutable value changes
# nothing for the program.
_atoms_of = {}
_ATOMS = (type(None), bool, int, float, complex, str, bytes)
_ATOM_IDS = frozenset(id(atom) for atom in _ATOMS)
_IMMUTABLE_DEPTH = 4  # tuples in tuples
_MAX_CACHED = 4096


def _atom_fingerprints(owner, key):
    """The ``{name: (value, fingerprint)}`` of the immutable values a module or class held, under ``key``;
    None if ``owner`` cannot be referred to weakly (holding it would keep a module's globals alive)."""
    cached = _atoms_of.get(id(owner))
    if cached is not None and cached[0]() is owner and cached[1] == key:
        return cached[2]
    try:
        owner_ref = weakref.ref(owner)
    except TypeError:
        return None
    if len(_atoms_of) >= _MAX_CACHED:
        _atoms_of.clear()
    atoms = {}
    _atoms_of[id(owner)] = (owner_ref, key, atoms)
    return atoms


def _defined_here(cls, name, module_name):
    """Whether ``cls``, the module's global ``name``, is a class the module defines under that name.

    Not an alias of another module's class, not a nested class, not an Enum
    (its members are constants, and its internals are not the program's state).
    """
    known = _class_decisions.get(id(cls))
    if known is not None and known[0] is cls and known[1] == module_name and known[2] == name:  # no tuples made
        return known[3]
    try:
        own = type.__getattribute__(cls, "__dict__")
        decision = (own.get("__module__") == module_name and type.__getattribute__(cls, "__qualname__") == name
                    and not _is_enum(cls))
    except Exception:
        decision = False
    if len(_class_decisions) >= _MAX_CACHED:
        _class_decisions.clear()
    _class_decisions[id(cls)] = (cls, module_name, name, decision)
    return decision


def _is_enum(cls):
    enum = sys.modules.get("enum")
    return enum is not None and any(base is enum.Enum for base in type.__getattribute__(cls, "__mro__"))


def _class_state(cls, key):
    """``{Class.attr: fingerprint}``: the class's own attributes that are state, read from its ``__dict__``.

    Never through ``getattr``: a descriptor's ``__get__`` or a metaclass's
    ``__getattr__`` would run the program's code.
    """
    state, atoms = {}, None
    for name, value in _class_state_items(cls):
        if atoms is None:
            atoms = _atom_fingerprints(cls, key)
        state[name] = _fingerprint_of(name, value, key, atoms)
    return state


def _class_state_items(cls):
    """``[(Class.attr, value)]`` of what _class_state fingerprints (at most MAX_CLASS_NAMES), values unread."""
    own = type.__getattribute__(cls, "__dict__")
    items = []
    attributes = _class_attribute_names(cls, own)
    if not attributes:
        return items
    qualname = type.__getattribute__(cls, "__qualname__")
    for attribute in attributes:
        if len(items) >= MAX_CLASS_NAMES:
            break
        value = own.get(attribute, _MISSING)
        if value is not _MISSING and _is_class_state(value):
            items.append(("%s.%s" % (qualname, attribute), value))
    return items


# The names _class_state reads, per class: {id(class): (its names (see _names_of), [the names read])}.
_class_names_of = {}


def _class_attribute_names(cls, own):
    """The names of ``own`` (``cls.__dict__``) but dunders, in _class_state's order, as copies (see _copy):
    a dunder's value (the class's ``__dict__`` and ``__weakref__`` descriptors, its ``__module__``) is never
    read. Sorted by str, as every attribute was (a stable sort: the names kept keep their order among them
    all). Worked out again only when the class's names changed (see _same_names)."""
    cached = _class_names_of.get(id(cls))
    if cached is not None and len(own) == len(cached[0]) and own.keys() >= cached[0]:
        return cached[1]
    names = frozenset([_copy(name) for name in list(own)])
    attributes = [attribute for attribute in names if isinstance(attribute, str) and not attribute.startswith("__")]
    attributes.sort(key=str)
    if len(_class_names_of) >= _MAX_CACHED:
        _class_names_of.clear()
    _class_names_of[id(cls)] = (names, attributes)
    return attributes


def _has_class_state(cls):
    """Whether ``_class_state(cls)`` has any name."""
    return any(isinstance(attribute, str) and not attribute.startswith("__") and _is_class_state(value)
               for attribute, value in list(type.__getattribute__(cls, "__dict__").items()))


def _is_class_state(value):
    """Not code: no function, class, module, or descriptor (property, staticmethod, classmethod, ...)."""
    if isinstance(value, _NOT_STATE):
        return False
    kind = type(value)
    known = _descriptor_types.get(id(kind))
    if known is None or known[0] is not kind:
        mro = type.__getattribute__(kind, "__mro__")
        known = (kind, any("__get__" in type.__getattribute__(base, "__dict__") for base in mro))
        if len(_descriptor_types) >= _MAX_CACHED:
            _descriptor_types.clear()
        _descriptor_types[id(kind)] = known
    return not known[1]


def own_namespace(obj):
    """``obj.__dict__`` read without running any of its code (no ``__getattr__``, no property), or None."""
    try:
        return object.__getattribute__(obj, "__dict__")
    except Exception:
        return None


def _holds_only_process_handles(value):
    """A handle, or a non-empty list, tuple, set or dict (its values) of nothing but handles.

    Read at every start(). A long list of results is not walked: its first item is no handle. A list of
    every Process the program started (thousands, in a long run) is, but in C: whether an object is a handle
    depends on its type alone, so the items' types are gathered (``set(map(type, ...))``) and each asked once.
    """
    fingerprints = _fingerprint or load_fingerprint()
    if fingerprints.is_process_handle(value):
        return True
    if isinstance(value, (list, tuple)):
        walk, copy = (list if isinstance(value, list) else tuple).__iter__, False
    elif isinstance(value, (set, frozenset)):
        walk, copy = (set if isinstance(value, set) else frozenset).__iter__, True
    elif isinstance(value, dict):
        value, walk, copy = dict.values(value), iter, True  # the view of its values, walked in C
    else:
        return False
    # The first item alone first, by the base type's own iterator (no code of a subclass runs): a cache of
    # thousands of results is no handle, told without copying it. The items are walked only if it is one.
    first = next(walk(value), _MISSING)
    if first is _MISSING or not fingerprints.is_process_handle(first):
        return False
    items = list(walk(value)) if copy else walk(value)  # a set's or a dict's copied: no error if it changes
    for kind in set(map(type, items)):  # a loop, not all() of a generator: no function object made per start
        if not fingerprints.is_handle_type(kind):
            return False
    return True


def _is_handles(fingerprint, name):
    return fingerprint is not None and fingerprint.get(name) == PROCESS_HANDLES


def differing_names(before, after):
    """Names whose fingerprint differs (or that only one side has); handles left out."""
    return _classified(before, after)[0]


def uncertain_names(before, after):
    """Names whose content was too large to digest on one side: changed or not, cannot tell."""
    return _classified(before, after)[1]


def _classified(before, after):
    """([names changed], [names that cannot tell]), each sorted (see classify), in one pass."""
    changed, uncertain = [], []
    for name in set(before) | set(after):  # loops, not generators: no function object made per start (3.11)
        kind = classify(before.get(name), after.get(name), name)
        if kind == "changed":
            changed.append(name)
        elif kind == "unknown":
            uncertain.append(name)
    changed.sort()
    uncertain.sort()
    return changed, uncertain


def classify(was, now, name):
    """"same", "changed" or "unknown" (cannot tell) for one name's two fingerprints."""
    if _is_handles(was, name) or _is_handles(now, name):
        return "same"
    if was is None or now is None:
        return "same" if was is now else "changed"
    if was == now:
        for description in was.values():
            if description.endswith(_UNKNOWN_DIGEST):
                break
        else:
            return "same"  # the common case, without looking for the differing paths
    # The kinds of every differing path: the deepest differing paths (what _descriptions.differences lists)
    # hold a change wherever any path does, and something wherever anything differs. Found in one pass: a
    # results list shows 17 paths, and listing the deepest compares each with each, at every start().
    kinds = set()
    compare = _descriptions.compare
    for path in set(was) | set(now):
        kinds.add(compare(was.get(path), now.get(path)))
    kinds.discard(None)
    if kinds - {"unknown"}:
        return "changed"
    return "unknown" if kinds else "same"


def compare_with_parent(parent_state, key=None):
    """In a child: what it sees differently from its parent's state at start().

    Returns (diverged, unknown, compared): ``[(module.name, parent description,
    child description, [differences])]``, ``[(module or module.name, why)]``
    for what it could not compare, and the modules it compared. Modules the
    child has not imported (yet) are not compared: importing them here to look
    would run their code.
    """
    diverged, unknown, compared = [], [], []
    for module_name, names in sorted(parent_state.items()):
        module = sys.modules.get("__mp_main__" if module_name == "__main__" else module_name)
        if module is None:
            unknown.append((module_name, "not imported in the child when run() began"))
            continue
        compared.append(module_name)
        mine = state_of(module, key)
        for name in uncertain_names(names, mine):
            unknown.append(("%s.%s" % (module_name, name), _why_uncertain(names.get(name), mine.get(name), name)))
        for name in differing_names(names, mine):
            qualified = "%s.%s" % (module_name, name)
            diverged.append((qualified, _summary(names.get(name), name), _summary(mine.get(name), name),
                             name_differences(qualified, name, names.get(name), mine.get(name))))
    return diverged, unknown, compared


def _why_uncertain(parent, child, name):
    """Why a name could not be compared (see compare_with_parent): too large to digest, or a container its
    parent sent without its content, as its size had changed since import (see state_of), and whose
    size the child's matches."""
    was, now = (parent or {}).get(name), (child or {}).get(name)
    if (isinstance(was, str) and isinstance(now, str) and _descriptions.digest_of(was) is None
            and _descriptions.digest_of(now) not in (None, _descriptions.UNKNOWN)):
        return NOT_SENT
    return TOO_LARGE


def diverged(parent_state, key=None):
    """In a child: ``[(module.name, parent description, child description)]`` (see compare_with_parent)."""
    return [found[:3] for found in compare_with_parent(parent_state, key)[0]]


def name_differences(qualified, name, parent, child):
    """``["settings.CONFIG['retries']: parent 5, child 1", ...]``, the deepest paths first found."""
    if parent is None or child is None:
        return ["%s: parent %s, child %s" % (qualified, _summary(parent, name), _summary(child, name))]
    found = []
    for path, kind in _descriptions.differences(parent, child):
        where = qualified + path[len(name):]
        was, now = parent.get(path), child.get(path)
        if kind == "unknown":
            continue
        if kind == "digest":
            found.append("%s: %s" % (where, _descriptions.hidden_change(now)))
        else:
            found.append("%s: parent %s, child %s" % (
                where, _visible_or_missing(was), _visible_or_missing(now)))
    if len(found) > MAX_DIFFERENCES:
        found = found[:MAX_DIFFERENCES - 1] + ["+%d more" % (len(found) - MAX_DIFFERENCES + 1)]
    return found


def _visible_or_missing(description):
    return "<missing>" if description is None else _descriptions.visible(description)


def _summary(fingerprint, name):
    """``3``, or ``dict(len=2), ['a']=1, ['b']=2``: the value and a few parts of it (no digests)."""
    if fingerprint is None:
        return "<missing>"
    visible = _descriptions.visible
    parts = [visible(fingerprint.get(name, "?"))]
    parts.extend("%s=%s" % (path[len(name):], visible(value))
                 for path, value in sorted(fingerprint.items()) if path != name)
    return ", ".join(parts[:5])


MAX_ARGUMENT_CLASS_STATE = 16  # entries of mp.args.class_state_not_portable


def changed_classes(module_state, not_portable):
    """``{module.Class: [module.Class.attr]}``: the classes among ``not_portable`` (see state_at_start)."""
    changed = set(not_portable)
    classes = {}
    for module_name, names in module_state.items():
        for name in names:
            qualified = "%s.%s" % (module_name, name)
            if "." in name and qualified in changed:
                classes.setdefault("%s.%s" % (module_name, name.split(".")[0]), []).append(qualified)
    return classes


def arguments_with_changed_classes(items, classes):
    """``["args[0]: settings.Counter.count", ...]``: where the arguments hold an instance of a class,
    or the class itself, whose class-level state ``classes`` (see changed_classes) says changed since import.

    A spawn or forkserver child re-imports such a class: the instance arrives,
    its class's changes do not. Subclasses carry their bases' attributes.
    """
    found = []
    fingerprints = _fingerprint or load_fingerprint()
    for path, cls in fingerprints.classes_in(items):
        for base in type.__getattribute__(cls, "__mro__"):
            for name in classes.get(fingerprints.type_name(base), ()):  # a loop: no function object made per start
                entry = "%s: %s" % (path, name)
                if entry not in found:
                    found.append(entry)
    if len(found) > MAX_ARGUMENT_CLASS_STATE:
        found = found[:MAX_ARGUMENT_CLASS_STATE - 1] + ["+%d more" % (len(found) - MAX_ARGUMENT_CLASS_STATE + 1)]
    return found


# -- the parent side -----------------------------------------------------------


# mptrace._mainstate, once this process reads its main module's state at a start (see state_at_start).
_mainstate = None


def _load_mainstate():
    """Import _mainstate at first use: a child that starts no process never needs it."""
    global _mainstate
    from mptrace import _mainstate as module

    _mainstate = module
    return module


# Import-time states outlive one install(): {module name: (the module object's id, its state)}.
# A module imported while mptrace was installed keeps its baseline through uninstall()
# and a later install() (one test after another), as long as it is the same module object.
_remembered_baselines = {}


def _remembered_for_loaded_modules():
    found = {}
    for name, (module_id, baseline) in list(_remembered_baselines.items()):
        if id(sys.modules.get(name)) == module_id:
            found[name] = baseline
        else:
            del _remembered_baselines[name]  # re-imported or gone: that state was another module's
    return found


class ModuleWatch:
    """Which modules are the application's, and their import-time state."""

    def __init__(self, include=(), exclude=(), key=None):
        self.include = tuple(include)
        self.key = key  # the process tree's digest key, bytes
        self.exclude = tuple(exclude) + ("mptrace",)
        self.baselines = _remembered_for_loaded_modules()
        self._decisions = {}  # module name -> watched? (modules do not move)
        self._watched = []  # names of watched modules, in sys.modules order
        self._pairs = None  # watched_modules()'s last answer
        self._modules_seen = 0  # len(sys.modules) when _watched was last brought up to date
        self._said_too_many = False
        self._library_paths = library_paths()
        self._last_compared = {}  # module name -> (baseline, state, answer) at the last start (see _compared)

    def wanted_name(self, name):
        """A cheap first look, by name only: is this module possibly watched?"""
        if _has_prefix(name, self.exclude):
            return False
        if _has_prefix(name, self.include) or name == "__main__":
            return True
        return not _in_standard_library(name)

    def watches(self, name, module):
        decision = self._decisions.get(name)
        if decision is None:
            decision = self._decisions[name] = self._decide(name, module)
        return decision

    def _decide(self, name, module):
        path = getattr(module, "__file__", None)
        if path is not None and _parent_library_files.get(name) == path and not _has_prefix(name, self.include):
            _library_files[name] = path  # and so for this process's own children
            return False  # as the parent found; its name alone could only make it watched if included
        if not self.wanted_name(name):
            return False
        if _has_prefix(name, self.include) or name == "__main__":
            return True
        application = _is_application_module(module, self._library_paths)
        if not application and type(path) is str and os.path.isabs(path):
            _library_files[name] = path
        return application

    def record_baseline(self, module):
        name = getattr(module, "__name__", None)
        if name and name not in self.baselines and self.watches(name, module):
            self.baselines[name] = state_of(module, self.key, name)
            _remembered_baselines[name] = (id(module), self.baselines[name])

    def watched_modules(self):
        """The watched modules now loaded; sys.modules is rescanned only when it grew."""
        if len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            # Without include, a module its fork server found to be a library's is not looked at again, nor
            # is one of the standard library (wanted_name says no to them; a spawn child has some 150).
            known = _library_modules if not self.include else ()
            standard = _STANDARD_LIBRARY if not self.include else ()
            candidates = None if self.include else _modules_since_server()
            if candidates is None:
                candidates = list(sys.modules.items())
            self._watched = [name for name, module in candidates
                             if module is not None and name != "__mp_main__" and name not in known
                             and name.partition(".")[0] not in standard and self.watches(name, module)]
            if len(self._watched) > MAX_MODULES and not self._said_too_many:
                self._said_too_many = True
                _log.warning("comparing the state of the first %d of %d application modules; %s and later ones "
                             "are left out (choose with watch_modules and ignore_modules)",
                             MAX_MODULES, len(self._watched), self._watched[MAX_MODULES])
            self._pairs = None
        # The last list while each of its names still holds the same module: callers only read it, and a new
        # one (a list, a tuple per module) is written to at every start.
        modules, pairs = sys.modules, self._pairs
        if pairs is not None:
            for name, module in pairs:
                if modules.get(name) is not module:
                    break
            else:
                return pairs
        pairs = self._pairs = [(name, modules.get(name)) for name in self._watched[:MAX_MODULES]]
        return pairs

    def state_at_start(self, fork=False):
        """(state {module: {name: fp}}, not_portable [module.name], no_baseline [module],
        unknown [module.name]: whether changed since import, cannot tell).

        ``fork``: for a fork child, which is sent no state: of the main module's
        names, only those its source says may count are read (see
        _mainstate.main_not_portable_for_fork), and a module without a baseline is not
        fingerprinted at all, so its state is not one to send.
        """
        state, not_portable, no_baseline, unknown = {}, [], [], []
        for name, module in self.watched_modules():
            if module is None:
                continue
            baseline = self.baselines.get(name)
            if baseline is None and name == "__main__":
                mainstate = _mainstate or _load_mainstate()
                found = (mainstate.main_not_portable_for_fork if fork else mainstate.main_state_and_not_portable)(
                    module, self.key)
                if found is None:  # no source: nothing to compare with
                    no_baseline.append(name)
                elif found[0]:
                    state[name] = found[0]
                    not_portable.extend(found[1])
                continue
            if baseline is None and fork:  # nothing to compare, nor to send: whether it has state is enough
                if has_state(module, name):
                    no_baseline.append(name)
                continue
            if fork:  # sent nothing: only which names changed (see state_for_fork)
                current, seen_changed = state_for_fork(module, baseline, self.key, name)
            else:
                current, seen_changed = state_of(module, self.key, name, baseline), ()
            if not current and not seen_changed:
                continue
            state[name] = current
            if baseline is None:
                no_baseline.append(name)
                continue
            changed, uncertain = self._compared(name, baseline, current)
            not_portable.extend(changed)
            for changed_name in seen_changed:
                not_portable.append("%s.%s" % (name, changed_name))
            unknown.extend(uncertain)
        not_portable.sort()  # in place: these lists are this call's own
        no_baseline.sort()
        unknown.sort()
        return state, not_portable, no_baseline, unknown

    def _compared(self, name, baseline, current):
        """([module.name] changed, [module.name] cannot tell) of a module's state against its baseline; the
        last start's answer while every fingerprint is the very one it had then (an immutable value still
        held, see _fingerprint_of): the same fingerprints give the same answer."""
        last = self._last_compared.get(name)
        if last is not None and last[0] is baseline and _same_fingerprints(last[1], current):
            return last[2]
        differing, uncertain = _classified(baseline, current)
        found = ([], [])
        for n in differing:
            if n in current:
                found[0].append("%s.%s" % (name, n))
        for n in uncertain:
            found[1].append("%s.%s" % (name, n))
        self._last_compared[name] = (baseline, current, found)
        return found


def _same_fingerprints(was, now):
    """Whether two states hold the same names with the very same fingerprint objects (``is``)."""
    if len(was) != len(now):
        return False
    for name in now:
        if was.get(name) is not now[name]:
            return False
    return True


def _names_of(namespace):
    """Copies of a namespace's names (see _copy), to tell later whether it holds the same (see _same_names)."""
    return frozenset([_copy(name) for name in list(dict.__iter__(namespace))])


def _same_names(namespace, names):
    """Whether ``namespace`` holds exactly ``names`` (see _names_of), found without reading its own names:
    each of ``names`` is looked up in it, which compares strings without writing to them."""
    return len(namespace) == len(names) and dict.keys(namespace) >= names


# The names of the namespaces namespace_names was asked for: {owner: (names (see _names_of), [its str names, sorted])}.
_names_seen = {}


def namespace_names(namespace, owner):
    """(a namespace's names as copies (see _names_of), its str names among them (dunders too), sorted); ``owner``:
    what the namespace is (a module's name). The same objects while it holds the same names (see _same_names):
    a start reads them, not the namespace's own names."""
    cached = _names_seen.get(owner)
    if cached is not None and _same_names(namespace, cached[0]):
        return cached
    names = _names_of(namespace)
    ordered = [name for name in names if isinstance(name, str)]
    ordered.sort()
    if len(_names_seen) >= _MAX_CACHED:
        _names_seen.clear()
    cached = _names_seen[owner] = (names, ordered)
    return cached


def _copy(name):
    """An equal str that is another object (allocated with mptrace's others), or ``name`` if it is not an exact
    str. Looking a copy up in a dict writes the copy's reference count, not the dict's own key's."""
    return "".join((name, "")) if type(name) is str else name


def _is_application_module(module, library_paths):
    """Whether ``module``'s file lies outside the standard library and installed packages."""
    path = getattr(module, "__file__", None)
    if not path:
        return False  # built-in or namespace package
    return not real_path(path).startswith(library_paths)


# Modules found to be a library's by their file, {name: absolute file}. A spawn or forkserver child re-imports
# what its main module imports, mostly libraries, and deciding each by its file's real path costs it a few
# microseconds a module (a stat or more): the parent sends what it found (library_files_to_carry), and the
# child takes the parent's answer for a module of the same name loaded from the very same file.
_library_files = {}
_carried_library_files = (0, None)  # (len(_library_files) when joined, the joined text)
_parent_library_files = {}  # in a child: what its parent sent (adopt_library_files)


def library_files_to_carry():
    """The library modules this process found by their files, as one text (name NUL file NUL ...) that
    pickles in one piece; None if there are none. Joined again only when more were found."""
    global _carried_library_files
    count, text = _carried_library_files
    if count != len(_library_files):
        entries = []
        for name, path in list(_library_files.items()):
            if "\0" not in name and "\0" not in path:
                entries.append(name)
                entries.append(path)
        text = "\0".join(entries) or None
        _carried_library_files = (len(_library_files), text)
    return text


def adopt_library_files(carried, carried_paths):
    """In a spawn or forkserver child: the library modules its parent found by their files (see
    library_files_to_carry), if it runs the parent's interpreter (``carried_paths``: the parent's
    library_paths_to_carry; another interpreter has other library paths, and may tell the same file otherwise).
    Anything unexpected is ignored: the child then decides by itself."""
    global _parent_library_files
    if type(carried) is not str or not carried or not carried_paths or carried_paths[0] != _interpreter():
        return
    entries = carried.split("\0")
    if len(entries) % 2 == 0:
        _parent_library_files = dict(zip(entries[::2], entries[1::2]))


_real_directories = {}  # directory -> its realpath: modules come from a few directories, and realpath stats each part


def real_path(path):
    """``os.path.realpath(path)``, resolving each directory once (a file that is a link is resolved in full)."""
    if not isinstance(path, str) or not os.path.isabs(path):  # a relative one depends on the working directory
        return os.path.realpath(path)
    directory, base = os.path.split(path)
    return _real_path_under(_real_directory(directory), base)


def _real_directory(directory):
    """``os.path.realpath(directory)`` (absolute), cached."""
    real = _real_directories.get(directory)
    if real is None:
        if len(_real_directories) >= _MAX_CACHED:
            _real_directories.clear()
        real = _real_directories[directory] = _resolve_directory(directory)
    return real


def _resolve_directory(directory):
    """``os.path.realpath(directory)``, from its parent's (cached): one ``lstat`` when the parent is known.

    ``realpath`` stats every part of a path, some 20 us for a package's directory. A child that imports a
    library's package tree at start-up (its main module's imports) resolves dozens of them, siblings that
    share all but their last part. ``realpath`` resolves a path part by part, so the real path of
    ``parent/name`` is the parent's real path joined with ``name``, unless that is a link (then resolved
    from there). The link is looked for under the parent's real path, not the path as given: where a
    missing part precedes ``..``, the kernel cannot walk the given one, and ``realpath`` walks it as text.
    ``.``, ``..`` and the root are left to ``realpath``.
    """
    parent, name = os.path.split(directory)
    if not name or name in (".", "..") or not parent or parent == directory:
        return os.path.realpath(directory)
    return _real_path_under(_real_directory(parent), name)


def _real_path_under(real_parent, name):
    """``os.path.realpath`` of ``name`` in the directory whose real path is ``real_parent``: joined, unless it
    is a link (looked for there, not under the path as given; see _resolve_directory)."""
    joined = os.path.join(real_parent, name)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def resolve_module_paths():
    """In a fork server, once for all its children: which of the loaded modules are libraries'
    (``_library_modules``), and the real directories of the rest and of ``sys.path`` (where the modules
    the children import come from: resolving a directory stats each of its parts)."""
    global _library_modules, _server_modules
    for entry in sys.path:
        if isinstance(entry, str) and os.path.isdir(entry):  # "": the working directory, the program's
            _real_directory(os.path.abspath(entry))
    found = set()
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        if (_has_prefix(name, ("mptrace",))  # every watch excludes it
                or _in_standard_library(name) or not _is_application_module(module, library_paths())):
            found.add(name)
    _library_modules = frozenset(found)
    last = next(reversed(sys.modules))
    _server_modules = (last, sys.modules[last], tuple(name for name in sys.modules if name not in found))


# In a fork server, for its children (see resolve_module_paths): (the name of the last module it had, that
# module, the names of the modules it had that are not libraries'). None elsewhere.
_server_modules = None


def _modules_since_server():
    """In a forkserver child: ``[(name, module)]`` of the modules the server did not find to be libraries',
    then of those loaded after the fork, in ``sys.modules`` order; None elsewhere, or if it cannot tell.

    Without reading the rest of ``sys.modules``: every entry read is a reference count written to a page the
    child shares with its server (a copy-on-write fault). The modules loaded later come after the server's
    last one, as ``sys.modules`` keeps insertion order; if that one is gone or replaced, it cannot tell.
    """
    if _server_modules is None:
        return None
    last_name, last_module, own = _server_modules
    modules = sys.modules
    added = []
    try:
        for name in reversed(modules):
            if name == last_name and modules[name] is last_module:
                break
            added.append(name)
        else:
            return None
    except RuntimeError:  # another thread imported meanwhile
        return None
    added.reverse()
    again = set(added)  # removed and imported again after the fork: in the order they came back
    found = [(name, modules.get(name)) for name in own if name not in again and name in modules]
    found.extend((name, modules.get(name)) for name in added)
    return found


def _in_standard_library(name):
    """Whether module ``name`` is the standard library's, by its top-level name (3.10+; built-ins on 3.9)."""
    return name.partition(".")[0] in _STANDARD_LIBRARY


_STANDARD_LIBRARY = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


# The modules a fork server found to be mptrace's, the standard library's or installed packages' (no
# watch without include looks at them); its children inherit the answer (see resolve_module_paths).
_library_modules = frozenset()
# In a fork server, until a child takes it: the module watch of a child that chooses no modules to watch
# or ignore, made before the server forks (see prepare_server_watch).
_server_watch = None


def prepare_server_watch():
    """In a fork server, once for all its children: the module watch a child without watch_modules or
    ignore_modules would make, its decisions about the server's own modules already taken."""
    global _server_watch
    watch = ModuleWatch()
    watch.watched_modules()
    _server_watch = watch


def adopt_server_watch(key):
    """In a forkserver child: the watch its server prepared (see prepare_server_watch), with the process
    tree's digest key; None if there is none. Taken once: a process makes one watch."""
    global _server_watch
    watch, _server_watch = _server_watch, None
    if watch is not None:
        watch.key = key
    return watch


def _has_prefix(name, prefixes):
    """Whether ``name`` is one of ``prefixes`` or inside one (``a.b`` is inside ``a``)."""
    return name in prefixes or name.startswith(_dotted(prefixes))


_dotted_prefixes = {}  # prefixes -> the same with a dot each: str.startswith takes a tuple, in C


def _dotted(prefixes):
    dotted = _dotted_prefixes.get(prefixes)
    if dotted is None:
        if len(_dotted_prefixes) >= _MAX_CACHED:
            _dotted_prefixes.clear()
        dotted = _dotted_prefixes[prefixes] = tuple(p + "." for p in prefixes)
    return dotted


_library_paths_found = None


def library_paths():
    """Where the standard library and installed packages live: looked up once per process.

    Once per fork server too, which looks them up when it preloads mptrace (see
    _preload): its children, forked with the answer, need not import sysconfig.
    """
    global _library_paths_found
    if _library_paths_found is None:
        _library_paths_found = _library_paths()
    return _library_paths_found


def library_paths_to_carry():
    """[this interpreter, its library paths]: what a spawn child running the same interpreter takes (see
    adopt_library_paths)."""
    return [_interpreter(), list(library_paths())]


def adopt_library_paths(carried):
    """In a spawn or forkserver child: the parent's library paths, when it runs the same interpreter
    (finding them costs a child the import of sysconfig)."""
    global _library_paths_found
    if _library_paths_found is None and carried and carried[0] == _interpreter():
        _library_paths_found = tuple(carried[1])


def _interpreter():
    """What the library paths depend on (the user site directory: also its environment at start-up)."""
    site = sys.modules.get("site")  # never imported here: under -S, an interpreter has none
    return [sys.executable, sys.prefix, sys.exec_prefix, sys.base_prefix, sys.version,
            getattr(site, "USER_SITE", None)]


def _library_paths():
    import site
    import sysconfig

    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            paths.add(os.path.realpath(path))
    try:
        paths.update(os.path.realpath(p) for p in site.getsitepackages())
    except AttributeError:  # virtualenv's old site module
        pass
    user_site = getattr(site, "USER_SITE", None)
    if user_site:
        paths.add(os.path.realpath(user_site))
    return tuple(sorted(paths))
