"""The main module's state at start(): which of its names are not portable, as its source tells.

The main module is run, not imported, so it has no import-time baseline (see
_modstate); its source says what a spawn child, which re-runs it without the
main block, would hold (see _mainsource). ``ModuleWatch.state_at_start``
asks here, in a parent at every start: for a spawn or forkserver child, the
main module's state and its names not portable
(``main_state_and_not_portable``); for a fork child, the names not portable
alone, reading as few values as it can (``main_not_portable_for_fork``).

A module of its own, not part of _modstate: children compare state and never
run this, so a spawn child does not load it.
"""

import marshal

from mptrace import _fingerprint, _log
from mptrace._modstate import (MAX_CLASSES, MAX_NAMES, STATE_DEPTH, _MAX_CACHED, _MISSING, _NOT_STATE,
                               _atom_fingerprints, _class_state_items, _copy, _defined_here, _fingerprint_of,
                               _holds_only_process_handles, _is_handles, _names_and_classes, _public_names,
                               classify, has_state, namespace_names, own_namespace, state_of)


def main_state_and_not_portable(module, key=None):
    """(state, [__main__.name] not portable) of the main module; None: it has state, but no source
    (see _main_not_portable).

    The source is looked for first: without it (a ``-c`` program, standard input, a notebook's kernel) the
    state could be neither judged nor sent (``state_at_start`` keeps only the answer None), so it is not
    fingerprinted; ``has_state`` reads the values only up to the first that is state.
    """
    source = _main_source(module)
    if source is None:
        return None if has_state(module, "__main__") else ({}, [])
    current = state_of(module, key)
    if not current:
        return {}, []
    return current, _main_not_portable(current, source, key)


def main_not_portable_for_fork(module, key=None):
    """(state, [__main__.name] not portable) of the main module for a fork child; None: no source.

    A fork child is sent no state, so only the not portable names are in it.
    Only the names the source says may count are read at all (see
    _names_that_may_count): the names bound at import to a literal, compared
    with it as written before any is fingerprinted, and those bound after
    import, which count unless they hold only process handles. Reading any
    other value (an SDK provider, a function), even only to see what it is,
    writes its reference count: a copy-on-write fault after every fork for
    each page they span.

    A namespace with more names than state_of keeps (MAX_NAMES, MAX_CLASSES) is
    read whole, shallowly, to find the names it keeps (they depend on every
    value); those are then decided the same way, never fingerprinted whole.
    """
    source = _main_source(module)
    if source is None:
        return None
    namespace = own_namespace(module)
    if namespace is None:
        return {}, []
    module_name = dict.get(namespace, "__name__")
    may_count, public_names = _names_that_may_count(namespace, source)
    if public_names > MAX_NAMES:
        names, watched = _capped_names_and_classes(namespace, "__main__")
    else:
        names, watched = [], []
        for name in may_count:
            value = dict.get(namespace, name, _MISSING)
            if isinstance(value, type):
                if _defined_here(value, name, module_name):
                    watched.append(value)
            elif value is not _MISSING and not isinstance(value, _NOT_STATE):
                names.append((name, value))
        if watched and public_names > MAX_CLASSES:  # which classes state_of keeps: all the values
            names, watched = _capped_names_and_classes(namespace, "__main__")
    found, facts = {}, _main_facts(source)
    for name, value in names:
        _note_if_not_portable(found, name, value, module, source, facts, key)
    for cls in watched:  # its attributes as its module's names: by the source, compared as written
        class_found = {}
        try:
            for name, value in _class_state_items(cls):
                _note_if_not_portable(class_found, name, value, cls, source, facts, key)
        except Exception:
            _log.internal_error("reading the class attributes of a class in %s" % module_name)
            continue
        found.update(class_found)
    not_portable = []
    for name in found:
        fact = facts.get(name)
        not_portable.append(fact[2] if fact is not None else "__main__.%s" % name)
    not_portable.sort()
    return found, not_portable


def _note_if_not_portable(found, name, value, owner, source, facts, key):
    """Put the main module's ``name`` (a global, or ``Class.attr``; ``owner``: the module or the class) in
    ``found``, with its fingerprint, if it is not portable (see _main_name_not_portable), fingerprinting it only
    if it is a literal not as written."""
    literals = source.literals
    if name not in literals:  # as _main_name_not_portable says of its shallow fingerprint
        fact = facts.get(name) or _main_fact(facts, name, source)
        if fact[0] and not _holds_only_process_handles(value):
            found[name] = fact[1]
    elif not _as_written(value, literals[name]):  # perhaps changed: its fingerprint tells
        if type(value) in _GROWN_IN_PLACE and _visibly_changed(name, value, source):
            found[name] = {name: NOT_WALKED}
            return
        fingerprint = _fingerprint_of(name, value, key, _atom_fingerprints(owner, key))
        if _main_name_not_portable(name, fingerprint, _literal_fingerprints(source, key), source):
            found[name] = fingerprint


# The containers a program fills as it goes (its results): a literal at import, thousands of items later.
_GROWN_IN_PLACE = (list, dict, set)


def _visibly_changed(name, value, source):
    """Whether a literal's value differs from it where a fingerprint shows it without digests (a size, one of
    the first items): then it changed, and its content need not be read, which takes a digest of all of it
    (a fork child is sent no state: that it changed is all the start needs)."""
    literal = source.literals[name]
    if type(literal) is type(value) and len(value) != len(literal):
        # The size a fingerprint shows first differs: changed, unless it holds only process handles (no state,
        # as its fingerprint would say). Told without the fingerprint, which walks its first items and compares
        # each with the literal's: some 150 calls at each start of a program that appends its results.
        return not _holds_only_process_handles(value)
    shallow = _fingerprint_of(name, value, None)  # process handles are no state: it says so, as always
    return _main_name_not_portable(name, shallow, _literal_fingerprints(source, None), source)


# The fingerprint of a name only the source decides, its value not walked (see main_not_portable_for_fork):
# it says "not process handles", nothing more.
NOT_WALKED = "<not walked>"

# What the main module's source says of a name, per name: [(source, {name: (set after import?, its shallow
# fingerprint, "__main__.name")})]: made once per source, not at every start. The fingerprints are shared
# by every start's state, which only reads them.
_main_facts_of = [None]


def _main_facts(source):
    cached = _main_facts_of[0]  # read once: another thread may start a process too
    if cached is None or cached[0] is not source:
        cached = _main_facts_of[0] = (source, {})
    return cached[1]


def _main_fact(facts, name, source):
    fact = (source.set_after_import(name), {name: NOT_WALKED}, "__main__.%s" % name)
    if len(facts) >= _MAX_CACHED:
        facts.clear()
    facts[name] = fact
    return fact


def _capped_names_and_classes(namespace, owner):
    """The names and classes state_of keeps of a namespace (the first MAX_NAMES and MAX_CLASSES by name)."""
    names, watched = _names_and_classes(namespace, owner)
    return names[:MAX_NAMES], watched[:MAX_CLASSES]


_EQUAL_IF_SAME = frozenset((str, bytes, int, bool, type(None)))  # exact types: == is theirs, and says it all


def _as_written(value, literal):
    """Whether ``value`` is exactly ``literal``, a value the source wrote: the same exact types, equal
    values, nothing held twice; then its fingerprint is the literal's, and nothing needs fingerprinting.
    False: perhaps not (a set, a subclass, a container held twice, ...), for its fingerprint to tell.

    Only the built-in types' own comparisons run (the types are checked first): never the program's code.
    A literal of plain values only (a table of settings, names, numbers) is compared by marshal form instead.
    """
    flat = _flat_form(literal)
    if flat is not None:
        return type(value) is type(literal) and len(value) == len(literal) and _marshalled(value) == flat
    pending, opened, budget = [(value, literal)], set(), _fingerprint.MAX_DIGEST_NODES
    while pending:
        now, was = pending.pop()
        kind = type(now)
        if kind is not type(was):
            return False
        if kind in _EQUAL_IF_SAME:
            if now != was:
                return False
            continue
        if kind is float:  # 0.0 == -0.0, yet a fingerprint shows each by its repr
            if float.__repr__(now) != float.__repr__(was):
                return False
            continue
        if kind not in _SAME_SHAPE or id(now) in opened or budget <= 0:
            return False  # a container held twice is fingerprinted differently (see _fingerprint._walk)
        opened.add(id(now))
        if kind.__len__(now) != len(was):  # before listing them: a results list grown to thousands, say
            return False
        now_items = list(dict.items(now)) if kind is dict else list(kind.__iter__(now))
        budget -= len(now_items)
        if kind is dict:
            for (now_key, now_value), (was_key, was_value) in zip(now_items, dict.items(was)):
                pending.append((now_key, was_key))  # in order: a fingerprint shows a dict's first items
                pending.append((now_value, was_value))
        else:
            pending.extend(zip(now_items, was))
    return True


_SAME_SHAPE = (list, tuple, dict)

# {id(literal): (literal, its marshal form, or None)} of the main module's literals (see _flat_form).
_flat_forms = {}


def _flat_form(literal):
    """The marshal form (version 2) of a list, tuple or dict literal that holds plain values only (None, bool,
    int, float, complex, str, bytes), else None; worked out once per literal of the source.

    Marshal writes these exact types only, each with its type, and a float by its bits, so a value has the
    same form exactly when it is the literal as written (the same types, equal values, in order): one C call,
    which reads every item without writing to it, where comparing item by item in Python wrote to each
    (some 3 ms at every fork start for a literal table of 3,000 entries).
    """
    known = _flat_forms.get(id(literal))
    if known is not None and known[0] is literal:
        return known[1]
    form = None
    kind = type(literal)
    if kind is list or kind is tuple or kind is dict:
        items = list(literal) + list(literal.values()) if kind is dict else literal
        if _fingerprint._PLAIN_TYPES.issuperset(map(type, items)):
            form = _marshalled(literal)
    if len(_flat_forms) >= _MAX_CACHED:
        _flat_forms.clear()
    _flat_forms[id(literal)] = (literal, form)
    return form


def _marshalled(value):
    try:
        return marshal.dumps(value, _fingerprint._MARSHAL_VERSION)
    except (ValueError, TypeError):  # a type marshal does not write: not a literal's
        return None


def _main_source(module):
    """The main module's MainSource (see _mainsource.read), or None."""
    read = _main_source_reader[0]
    if read is None:  # imported once, not at each start: an import statement runs importlib's Python code
        from mptrace import _mainsource

        read = _main_source_reader[0] = _mainsource.read
    return read(module)


_main_source_reader = [None]  # _mainsource.read, once imported (it imports ast: not on a spawn child's path)


def _main_not_portable(current, source, key=None):
    """``__main__.name`` of the main module's state set after import, as its source tells.

    The main module is run, not imported, so it has no import-time baseline of
    its own; its source says what a spawn child, which re-runs it without the
    main block, would hold (see _mainsource). Names bound at import to a
    literal are compared like any baseline; the others only by where the
    source binds them.
    """
    literals = _literal_fingerprints(source, key)
    found = [name for name in current if _main_name_not_portable(name, current[name], literals, source)]
    return sorted("__main__.%s" % name for name in found)


# What the main module's source says of the names that may be not portable, and those names for the namespace's
# names last seen: [(source, always, at_import, every name known, the namespace's names (see namespace_names), (the
# names that may count, how many names but dunders))] (see _names_that_may_count).
_may_count_of = [None]


def _names_that_may_count(namespace, source):
    """(the main module's names (no dunders) that its source says may be not portable (see
    _main_name_not_portable), how many names but dunders it has), found with set operations on the names
    alone, no value read.

    A name bound at import to a literal may have changed; so may one bound
    after import (see MainSource.set_after_import), or a class whose attributes
    are either. Any other name never counts, whatever it holds.

    The answer is kept while the namespace holds the same names (see
    _same_names): set operations on every name write each one's reference
    count, a page after a fork for every few names.
    """
    every_name = namespace_names(namespace, "__main__")[0]
    cached = _may_count_of[0]  # read once: another thread may start a process too
    if cached is not None and cached[0] is source and cached[4] is every_name:
        return cached[5]
    if cached is None or cached[0] is not source:
        owners = set(name.split(".")[0] for name in list(source.literals) + list(source.later) if "." in name)
        always = frozenset(owners | set(name for name in source.literals if "." not in name)
                           | set(name for name in source.later if "." not in name and name in source.at_import))
        at_import, every_name_known = frozenset(source.at_import), "*" not in source.at_import
    else:
        _, always, at_import, every_name_known = cached[:4]
    names = dict.keys(namespace) & always  # looks up the few names of ``always``, not every key
    if every_name_known:
        names |= dict.keys(namespace) - at_import  # not bound at import: set after it
    found = ([_copy(name) for name in names if isinstance(name, str) and not name.startswith("__")],
             len(_public_names(namespace)))
    _may_count_of[0] = (source, always, at_import, every_name_known, every_name, found)
    return found


def _main_name_not_portable(name, fingerprint, literals, source):
    if name in literals:
        return classify(literals[name], fingerprint, name) == "changed"
    return not _is_handles(fingerprint, name) and bool(source.set_after_import(name))


# The fingerprints of the main module's literals: [(source, {key: {name: fingerprint}})]. Its source, once parsed,
# does not change (a changed file is parsed again, a new MainSource), nor do the literals it holds.
_literals_fingerprinted = [None]


def _literal_fingerprints(source, key):
    """{name: fingerprint} of the source's literals, with digests under ``key`` (None: without digests)."""
    cached = _literals_fingerprinted[0]  # read once: another thread may start a process too
    if cached is None or cached[0] is not source:
        cached = _literals_fingerprinted[0] = (source, {})
    by_key = cached[1]
    found = by_key.get(key)
    if found is None:
        if len(by_key) >= 4:  # keys of earlier install()s
            by_key.clear()
        found = by_key[key] = {name: _fingerprint.fingerprint([(name, value)], max_depth=STATE_DEPTH, key=key)
                               for name, value in source.literals.items()}
    return found
