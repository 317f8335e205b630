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

Given the process tree's digest key, a description that does not show the
whole value (a string's size, a container at the depth limit or with more than
MAX_ITEMS items, a set, an object's type) ends in `` #`` and a keyed digest of
the full content (``str(len=4) #1f0c9a2e44b7``), or `` #?`` where the content
walk ran out of budget. The key never leaves the process tree, so a digest in
an exported trace cannot be brute-forced; humans are shown ``visible()``.

Standard library only: spawn children import this when they fingerprint what arrived (their arguments,
the globals their modules hold).
"""

import marshal
import sys
import types
from itertools import chain, islice, repeat
from operator import itemgetter

from mptrace._blake import blake2b

# Reading descriptions is _descriptions' work (a child comparing module state needs it, not the walk).
from mptrace._descriptions import DIGEST_HEX, UNKNOWN, differences, hidden_change, visible

MAX_DEPTH = 4
MAX_ITEMS = 16  # per container
MAX_ENTRIES = 200  # per fingerprint
MAX_VALUE = 40  # characters of a captured value
# The content walk behind digests, per fingerprint: past these, a digest is unknown ("#?").
MAX_DIGEST_NODES = 20000  # values (containers, objects, their items)
MAX_DIGEST_BYTES = 8 << 20  # bytes of strings and bytes hashed
MAX_DIGEST_DEPTH = 64  # nesting

_NUMBERS = (bool, int, float, complex)
_TEXT = (str, bytes, bytearray)
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)
_LEAVES = _NUMBERS + _TEXT + _CODE  # never opened
_SHOWN_BY_REPR = frozenset((type(None), bool, int, float))  # these exact types; an int up to 128 bits
_EXACT_CONTAINERS = frozenset((list, tuple, dict))


def type_name(cls):
    """``module.Qualname`` of a class; ``__mp_main__`` is the parent's ``__main__``."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if module == "__mp_main__":
        module = "__main__"
    return qualname if module in (None, "builtins") else "%s.%s" % (module, qualname)


def describe(value, capture_values=False):
    """A short description of one value, by value only where that is safe."""
    if type(value) in _EXACT_CONTAINERS:  # the common case first: a list, a tuple, a dict
        return "%s(len=%d)" % (type(value).__name__, type(value).__len__(value))
    if value is None or isinstance(value, _NUMBERS):
        if type(value) is int and value.bit_length() > 128:  # repr of a huge int is slow, or raises (3.11+)
            return "int(bits=%d)" % value.bit_length()
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


def fingerprint(items, capture_values=False, classes=None, max_depth=MAX_DEPTH, key=None, undigested=()):
    """``{path: description}`` for ``items``, an iterable of (path, value).

    ``classes``, if given, is a set that receives the type of every object walked.
    ``key`` (bytes), if given, adds digests where a description hides content.
    ``undigested``: paths whose own description gets no digest (what they hold below still does): where the
    description alone is known to differ from what it will be compared with, a digest says nothing more, and
    a digest reads everything a value holds.
    """
    walk = _Walk(capture_values, classes, key, undigested)
    for path, value in items:
        walk.seen = set()
        _walk(path, value, max_depth, walk)
    return walk.entries


class _Walk:
    """One fingerprint's entries, and the budget and memory of its content digests."""

    def __init__(self, capture_values, classes, key, undigested=()):
        self.entries = {}
        self.seen = set()
        self.capture_values = capture_values
        self.classes = classes
        self.key = key
        self.undigested = undigested  # see fingerprint
        self.nodes_left = MAX_DIGEST_NODES
        self.bytes_left = MAX_DIGEST_BYTES
        self.tokens = {}  # id -> content token of a container, object or string digested already
        self.open = []  # ids being digested, outermost first: a cycle refers back to one of them

    def digest(self, value):
        """The keyed hex digest of ``value``'s full content, or UNKNOWN."""
        token = self.token(value, 0)
        if token is None:
            return UNKNOWN
        return blake2b(token, key=self.key, digest_size=DIGEST_HEX // 2).hexdigest()

    def token(self, value, depth):
        """An unkeyed hash of ``value``'s content, never user code; None if over budget."""
        if value is None or type(value) in (bool, int, float, complex):
            return b"n" + repr(value).encode() if type(value) is not int or value.bit_length() <= 128 else \
                _hash(b"i", value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True))
        known = self.tokens.get(id(value))
        if known is not None:
            return known[1]
        if id(value) in self.open:
            return b"cycle %d" % (len(self.open) - self.open.index(id(value)))
        self.nodes_left -= 1
        if self.nodes_left < 0 or depth > MAX_DIGEST_DEPTH:
            return None
        self.open.append(id(value))
        try:
            token = self._content(value, depth)
        finally:
            self.open.pop()
        if token is not None:
            self.tokens[id(value)] = (value, token)  # the value too: a temporary's id must not be reused
        return token

    def _content(self, value, depth):
        kind = type_name(type(value)).encode("utf-8", "replace")
        if isinstance(value, _TEXT):
            data = _text_bytes(value)
            self.bytes_left -= len(data)
            return _hash(kind, data) if self.bytes_left >= 0 else None
        if isinstance(value, _NUMBERS):  # a subclass (IntEnum, ...): its number decides
            return self._parts(kind, [_builtin_number(value)], depth)
        if isinstance(value, _CODE) or is_process_handle(value):
            return _hash(kind, describe(value).encode("utf-8", "replace"))
        if isinstance(value, dict):
            if not self._affordable(dict.__len__(value)):
                return None
            plain = _plain_dict_token(kind, value)
            if plain is not None:
                return self._spent(plain)
            pairs = [(self.token(k, depth + 1), self.token(v, depth + 1)) for k, v in list(dict.items(value))]
            if any(k is None or v is None for k, v in pairs):
                return None
            return _hash(kind, *sorted(_hash(b"kv", k, v) for k, v in pairs))  # == ignores the order
        if isinstance(value, (list, tuple)):
            base = list if isinstance(value, list) else tuple
            if not self._affordable(base.__len__(value)):
                return None
            items = list(base.__iter__(value))
            plain = _plain_items_token(kind, items, ordered=True)
            return self._spent(plain) if plain is not None else self._parts(kind, items, depth)
        if isinstance(value, (set, frozenset)):
            base = set if isinstance(value, set) else frozenset
            if not self._affordable(base.__len__(value)):
                return None
            items = list(base.__iter__(value))
            plain = _plain_items_token(kind, items, ordered=False)
            if plain is not None:
                return self._spent(plain)
            tokens = [self.token(item, depth + 1) for item in items]
            return None if None in tokens else _hash(kind, *sorted(tokens))  # unordered
        named = [(b"a" + name.encode("utf-8", "replace"), attribute)
                 for name, attribute in _public_attributes(value, limit=None)]
        named += [(b"=", extra) for extra in _value_of_opaque(value)]
        tokens = [self.token(attribute, depth + 1) for _, attribute in named]
        if None in tokens:
            return None
        return _hash(kind, *[_hash(name, token) for (name, _), token in zip(named, tokens)])

    def _parts(self, kind, items, depth):
        tokens = [self.token(item, depth + 1) for item in items]
        return None if None in tokens else _hash(kind, *tokens)

    def _affordable(self, size):
        self.nodes_left -= size
        return self.nodes_left >= 0

    def _spent(self, plain):
        """The token of a plain container (see _plain_items_token), the values inside its items and its bytes
        counted; None if over budget."""
        token, nested, size = plain
        self.bytes_left -= size
        return token if self._affordable(nested) and self.bytes_left >= 0 else None


# Values whose marshal form (version 2) is their content and nothing else: these exact types only (a
# subclass may carry more, and marshal refuses it). Version 2 writes no back-references, so the same
# content gives the same bytes whatever objects are shared or interned in either process.
_PLAIN_TYPES = frozenset((type(None), bool, int, float, complex, str, bytes))
_MARSHAL_VERSION = 2


def _plain_items_token(kind, items, ordered):
    """(token, values inside the items, bytes hashed) of a container whose ``items`` are all plain (see
    _plain_form), in a few C calls; None if any is not (the walk then takes each item's token).

    A list of 10,000 floats, a program's results, say, is hashed here in about 0.4 ms, where a token per
    item took 8 ms, at every start(). Both sides of a comparison take the same path for the same content
    (the path depends on the types inside only), so the tokens match whenever the contents do.
    ``ordered``: False for a set, whose order is its hashes' (they differ between processes): then its
    items are sorted first.
    """
    plain = _plain_form(items)
    if plain is None:
        return None
    form, nested, types = plain
    if not ordered:
        form = _sorted_plain(form, types)
    data = marshal.dumps(form, _MARSHAL_VERSION)
    return _hash(kind, b"plain", data), nested, len(data)


def _plain_dict_token(kind, value):
    """_plain_items_token for a dict whose keys are plain and whose values are plain (see _plain_form); its
    order does not count (``==`` ignores it), as in the walk's own token."""
    pairs = list(dict.items(value))  # one look: keys and values of the same moment
    key_types = set(map(type, map(_KEY, pairs)))
    plain = _plain_form(list(map(_VALUE, pairs))) if _PLAIN_TYPES.issuperset(key_types) else None
    if plain is None:
        return None
    form, nested, _ = plain
    # Pairs compare by their keys alone, which are unique: the values are never compared.
    data = marshal.dumps(_sorted_plain(list(zip(map(_KEY, pairs), form)), key_types), _MARSHAL_VERSION)
    return _hash(kind, b"plain", data), nested, len(data)


_KEY, _VALUE = itemgetter(0), itemgetter(1)
_ROWS = frozenset((list, tuple))
_RECORDS = frozenset((dict,))


def _plain_form(items):
    """(form, values inside the items, the items' types) for ``items`` (a list) if they are plain: plain
    values; or rows, lists and tuples of plain values (a table's); or records, dicts of plain values whose
    keys sort together (see _SORTABLE_TOGETHER); or tables nested a few levels: rows holding records or
    rows, records holding rows or records (see _nested_rows_form, _records_form). None otherwise. Each check
    is a pass in C over one level or one column.
    The values inside count against the walk's budget, never more than the walk would have counted.

    The form is what marshal writes for them, and depends on their content alone: rows as they are, a record
    as ``(Ellipsis, its pairs sorted by key)``, so that a dict filled in another order has the same form.
    (Ellipsis is no plain value, so no row or plain item has a record's form.)
    """
    types = set(map(type, items))
    found = _column_form(items, types, MAX_NESTED_LEVELS)
    return (found[0], found[1], types) if found is not None else None


MAX_NESTED_LEVELS = 3  # rows or records in rows or records, three deep: deeper ones are walked


def _column_form(items, types, levels):
    """(form, values counted) of ``items`` (their ``types``) if they are all plain, all records or all rows (see
    _plain_form); None otherwise."""
    if _PLAIN_TYPES.issuperset(types):
        return items, 0
    if types == _RECORDS:
        return _records_form(items, levels)
    if _ROWS.issuperset(types):
        if _PLAIN_TYPES.issuperset(map(type, chain.from_iterable(items))):  # a table: rows may differ in length
            return items, sum(map(len, items))
        return _nested_rows_form(items, types, levels)
    return None


def _records_form(items, levels):
    """(form, values counted) of dicts whose keys are plain values that sort together, and whose values are
    plain, or (all records having the same keys) whose every column is a column's form (see _column_form).
    None otherwise. ``{"id": 1, "tags": ["a", "b"]}``, JSON-like, is such a record."""
    if not _sortable_together(set(map(type, chain.from_iterable(items)))):  # the keys' types
        return None
    counted = sum(map(len, items))  # the keys
    if _PLAIN_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values, items)))):
        return list(zip(repeat(Ellipsis), map(sorted, map(dict.items, items)))), counted
    if levels <= 1:
        return None
    key_sets = set(map(frozenset, items))
    if len(key_sets) != 1:  # records of other keys: no columns
        return None
    names = sorted(key_sets.pop())
    forms = []
    for name in names:
        column = list(map(itemgetter(name), items))
        found = _column_form(column, set(map(type, column)), levels - 1)
        if found is None:
            return None
        forms.append(zip(repeat(name), found[0]))
        counted += found[1]
    # Each record's pairs in key order, as sorted(dict.items()) gives them for plain values.
    return list(zip(repeat(Ellipsis), map(list, zip(*forms)))), counted


def _nested_rows_form(rows, types, levels):
    """(form, values counted) of rows of one type (all lists or all tuples) and one length whose columns are
    each plain values, records or rows again (see _column_form); None otherwise.

    ``results.append((step, {"loss": ..., "accuracy": ...}))`` makes such a table: a row holding a record.
    The rows are turned into columns (``zip``, in C), each column takes its form in a pass or two in C, and
    the forms are zipped back into rows of the same type: a few calls per column, however many rows. Walked
    value by value, 2,000 such rows cost a spawn or forkserver start some 15 ms, at every start.
    """
    if levels <= 1 or len(types) != 1:
        return None
    widths = set(map(len, rows))
    if len(widths) != 1 or 0 in widths:  # ragged rows (zip would cut them), or empty ones (plain already)
        return None
    forms, counted = [], 0
    for column in zip(*rows):
        column = list(column)
        found = _column_form(column, set(map(type, column)), levels - 1)
        if found is None:
            return None
        forms.append(found[0])
        counted += len(column) + found[1]
    joined = zip(*forms)
    return (list(map(list, joined)) if list in types else list(joined)), counted


def _sortable_together(types):
    for together in _SORTABLE_TOGETHER:
        if together.issuperset(types):
            return True
    return False


# Plain types among which sorted() is a total order, so that it gives one order whatever the items' order was
# (not floats: NaN compares false with everything).
_SORTABLE_TOGETHER = (frozenset((int, bool)), frozenset((str,)), frozenset((bytes,)))


def _sorted_plain(items, types):
    """``items`` (plain values, or pairs keyed by them) in one order that depends on their content only:
    sorted, where their ``types`` are ordered together; else each one's marshal form, sorted."""
    if _sortable_together(types):
        return sorted(items)
    # Each form is self-delimiting: joined, they cannot be read two ways.
    return b"".join(sorted(map(marshal.dumps, items, repeat(_MARSHAL_VERSION))))


def _hash(*parts):
    hasher = blake2b(digest_size=16)
    for part in parts:
        hasher.update(b"%d:" % len(part))
        hasher.update(part)
    return hasher.digest()


def _text_bytes(value):
    if isinstance(value, str):
        return str.encode(value, "utf-8", "surrogatepass")
    return bytes(value) if type(value) is not bytes else value


def _builtin_number(value):
    """The plain number a subclass instance holds, through the base type's own slots."""
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return complex.__add__(value, 0j)


# Standard-library value types whose state is not in __dict__ or __slots__:
# their own repr (never a user's: the type must match exactly) shows it.
_OPAQUE_BY_REPR = {"datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
                   "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "re.Pattern"}


def _value_of_opaque(value):
    """What decides an object's value beyond its public attributes, read without its code."""
    if type_name(type(value)) in _OPAQUE_BY_REPR:
        try:
            return [repr(value)]
        except Exception:
            return []
    enum = sys.modules.get("enum")
    if enum is not None and enum.Enum in type(value).__mro__:  # a member: its name, from its __dict__
        try:
            return [dict.get(object.__getattribute__(value, "__dict__"), "_name_")]
        except Exception:
            return []
    return []


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


def classes_in(items):
    """``(path, class)`` of every class under ``items``: each object's class, each class passed as a value
    (a bound method: its ``__self__``), bounded like a fingerprint and read without the objects' code."""
    found, pending, seen = [], [(path, value, 0) for path, value in reversed(list(items))], set()
    while pending and len(seen) < MAX_ENTRIES:
        path, value, depth = pending.pop()
        if isinstance(value, types.MethodType):
            value = value.__self__
        if value is None or isinstance(value, _NUMBERS + _TEXT) or id(value) in seen:
            continue
        seen.add(id(value))
        found.append((path, value if isinstance(value, type) else type(value)))
        if depth < MAX_DEPTH and not isinstance(value, _CODE):
            pending.extend((child_path, child, depth + 1) for child_path, child in reversed(_children(path, value)))
    return found


def changed_arguments(before, after):
    """``{argument: [differences]}`` between two fingerprints, per top-level argument.

    Only the deepest differing paths are listed; a change only a digest shows
    reads ``changed (same size)`` or ``changed``.
    """
    changes = {}
    for path, kind in differences(before, after):
        was, now = before.get(path), after.get(path)
        if kind == "unknown":
            continue  # see uncompared_arguments
        if was is None:
            difference = "%s: appeared as %s" % (path, visible(now))
        elif now is None:
            difference = "%s: was %s, missing on arrival" % (path, visible(was))
        elif kind == "digest":
            difference = "%s: %s" % (path, hidden_change(now))
        else:
            difference = "%s: was %s, arrived %s" % (path, visible(was), visible(now))
        changes.setdefault(_top_level(path), []).append(difference)
    return changes


def uncompared_arguments(before, after):
    """``{argument: [paths]}`` whose content was too large to digest: changed or not, cannot tell."""
    unknown = {}
    for path, kind in differences(before, after):
        if kind == "unknown":
            unknown.setdefault(_top_level(path), []).append(path)
    return unknown


def _top_level(path):
    for index, char in enumerate(path):
        if char == "." or (char == "[" and index and path[index - 1] == "]"):
            return path[:index]
    return path


def _walk(path, value, depth_left, walk):
    """Describe ``value`` at ``path`` and what it holds; a digest where that hides content."""
    entries = walk.entries
    if len(entries) >= MAX_ENTRIES:
        return
    if type(value) in _SHOWN_BY_REPR and (type(value) is not int or value.bit_length() <= 128):
        entries[path] = repr(value)  # what describe() says of it, in full: no digest (the common leaf, made quick)
        return
    entries[path] = description = describe(value, walk.capture_values)
    children = None  # not opened
    if not (depth_left <= 0 or id(value) in walk.seen or value is None or isinstance(value, _LEAVES)):
        walk.seen.add(id(value))
        if walk.classes is not None:
            walk.classes.add(type(value))
        children = _children(path, value)
        for child_path, child in children:
            _walk(child_path, child, depth_left - 1, walk)
    if walk.key is not None and path not in walk.undigested and not _shown_in_full(value, description, children, walk):
        entries[path] += " #" + walk.digest(value)


def _shown_in_full(value, description, children, walk):
    """Whether the entries show everything ``value`` holds (``children``: those it was opened to, or None)."""
    if type(value) in _EXACT_CONTAINERS:  # the common case first
        return _container_shown_in_full(value, children, walk)
    if value is None or type(value) in (bool, int, float, complex):
        return not description.startswith("int(bits=")
    if isinstance(value, _TEXT):  # only a captured value, short enough, shows it
        return walk.capture_values and type(value) in _TEXT and description == repr(value)
    if isinstance(value, _CODE) or is_process_handle(value):
        return True  # by name; a handle's pickle carries a handle, not its state
    if isinstance(value, (set, frozenset)):
        return _builtin_len(value) == 0
    if isinstance(value, (list, tuple, dict)):
        return _container_shown_in_full(value, children, walk)
    if _value_of_opaque(value):
        return False
    if children is None:
        return not _has_public_attributes(value)
    if len(children) == MAX_ITEMS and len(_public_attributes(value, limit=MAX_ITEMS + 1)) > MAX_ITEMS:
        return False
    return _all_entered(children, walk)


def _container_shown_in_full(value, children, walk):
    size = _builtin_len(value)
    return size == 0 or (children is not None and size <= MAX_ITEMS and _all_entered(children, walk))


def _all_entered(children, walk):
    return all(path in walk.entries for path, _ in children)


def _children(path, value):
    """(path, value) of what ``value`` holds, bounded, without running its code."""
    # The first items only, in one C call (no copy of a table of thousands at every start).
    if isinstance(value, dict):
        items = list(islice(dict.items(value), MAX_ITEMS))
        return [("%s[%s]" % (path, _key(k)), v) for k, v in items]
    if isinstance(value, (list, tuple)):
        base = list if isinstance(value, list) else tuple
        items = list(islice(base.__iter__(value), MAX_ITEMS))
        return [("%s[%d]" % (path, i), v) for i, v in enumerate(items)]
    if isinstance(value, (set, frozenset)):
        return []  # unordered: described by size only
    if is_process_handle(value):
        return []  # its pickle carries a handle, not its attributes (a Queue drops what it buffers)
    return [("%s.%s" % (path, name), attribute) for name, attribute in _public_attributes(value)]


def is_process_handle(value):
    """Processes, queues, connections, pools, executors: handles to other processes."""
    return is_handle_type(type(value))


def is_handle_type(kind):
    """Whether instances of ``kind`` are process handles (see is_process_handle): by where it is defined."""
    module = getattr(kind, "__module__", None) or ""
    return module.startswith(("multiprocessing", "concurrent.futures"))


def _public_attributes(value, limit=MAX_ITEMS):
    """(name, value) of the public attributes in ``__dict__`` and ``__slots__``, by name; ``limit`` of them."""
    attributes = _public_dict_items(value)
    slots = _public_slots(type(value))
    if slots:
        in_dict = set(name for name, _ in attributes)
        for name in slots:
            if name in in_dict:
                continue
            try:
                attributes.append((name, object.__getattribute__(value, name)))
            except Exception:
                continue  # an empty slot
    attributes.sort(key=_by_name)
    return attributes if limit is None else attributes[:limit]


def _has_public_attributes(value):
    """Whether ``_public_attributes(value)`` is not empty, found without listing them all."""
    if _public_dict_items(value):
        return True
    for name in _public_slots(type(value)):
        try:
            object.__getattribute__(value, name)
            return True
        except Exception:
            continue  # an empty slot
    return False


def _public_dict_items(value):
    """(name, value) of the public attributes in ``__dict__``, a new list."""
    try:
        state = object.__getattribute__(value, "__dict__")
    except Exception:
        return []
    if type(state) is not dict:
        return []
    return [(k, v) for k, v in dict.items(state) if isinstance(k, str) and not k.startswith("_")]


def _by_name(item):
    return item[0]


# The public slot names of a class and its bases, in method resolution order, per class:
# {id(class): (class, its __mro__, names)}. A class's slots are fixed when it is created;
# another __mro__ object (its __bases__ reassigned) is read again.
_slots_of = {}
_MAX_CACHED_CLASSES = 4096


def _public_slots(cls):
    mro = cls.__mro__
    known = _slots_of.get(id(cls))
    if known is not None and known[0] is cls and known[1] is mro:
        return known[2]
    names = []
    for klass in mro:
        names.extend(name for name in _slot_names(klass) if not name.startswith("_") and name not in names)
    if len(_slots_of) >= _MAX_CACHED_CLASSES:
        _slots_of.clear()
    _slots_of[id(cls)] = (cls, mro, tuple(names))
    return tuple(names)


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
