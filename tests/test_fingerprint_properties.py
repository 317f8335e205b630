"""Property tests: fingerprints never raise, never run user code, stay bounded."""

import copy
import marshal
import multiprocessing
import os
import pickle
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptrace import _fingerprint
from tests import targets


class Trap:
    """Raises from every hook a careless walker might call."""

    def __init__(self, inner):
        self.inner = inner

    def __repr__(self):
        raise AssertionError("__repr__ called")

    def __eq__(self, other):
        raise AssertionError("__eq__ called")

    def __len__(self):
        raise AssertionError("__len__ called")

    def __iter__(self):
        raise AssertionError("__iter__ called")

    __hash__ = object.__hash__


class TrapList(list):
    def __iter__(self):
        raise AssertionError("list.__iter__ override called")

    def __len__(self):
        raise AssertionError("list.__len__ override called")


leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=50),
                   st.binary(max_size=50))
values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=6), st.tuples(children, children),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=6),
    children.map(Trap), st.lists(children, max_size=4).map(TrapList),
    st.lists(children, max_size=3).map(lambda items: targets.Holder(items)),
), max_leaves=60)


@given(values)
def test_fingerprint_never_raises_and_is_bounded(value):
    entries = _fingerprint.fingerprint([("args[0]", value)])
    assert 1 <= len(entries) <= _fingerprint.MAX_ENTRIES
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items())
    assert all(len(v) <= 200 for v in entries.values())


@given(values)
def test_fingerprint_is_deterministic_and_a_value_never_differs_from_itself(value):
    first = _fingerprint.fingerprint([("args[0]", value)])
    assert first == _fingerprint.fingerprint([("args[0]", value)])
    assert _fingerprint.changed_arguments(first, first) == {}


@given(st.text(min_size=1, max_size=30))
def test_strings_are_never_described_by_value(secret):
    entries = _fingerprint.fingerprint([("kwargs['token']", secret)])
    assert entries == {"kwargs['token']": "str(len=%d)" % len(secret)}


class Settings:
    def __init__(self, value):
        self.value = value
        self._private = value


def _change_in_place(value):
    """Change ``value`` in place if it can take a change (or something it holds can); whether it did."""
    if isinstance(value, list):
        value.append("appended")
        return True
    if isinstance(value, dict):
        value["added"] = 1
        return True
    if isinstance(value, Settings):
        value.value = ("changed", value.value)
        return True
    return isinstance(value, tuple) and any(_change_in_place(item) for item in value)


globals_values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=5), st.tuples(children, children), st.frozensets(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), children, max_size=5), children.map(Settings)), max_leaves=20)
global_names = st.text(alphabet="abcXYZ_", min_size=1, max_size=4).filter(lambda name: not name.startswith("__"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(global_names, globals_values, max_size=70), st.sampled_from([None, b"k" * 16]), st.data())
def test_module_state_reused_between_starts_is_the_state_taken_afresh(namespace, key, data):
    """What start() reuses from the last start (immutable values still the same object, slot names per class)
    never hides a change: a global or class attribute rebound to an equal copy or to another value, or
    changed in place, gives the state a first look would."""
    from mptrace import _modstate

    module = types.ModuleType("generated_settings")
    module.__dict__.update(namespace)
    module.Config = type("Config", (), dict(namespace, __module__=module.__name__, __qualname__="Config"))
    for _ in range(3):
        reused = _modstate.state_of(module, key)
        _modstate._atoms_of.clear()
        _fingerprint._slots_of.clear()
        assert reused == _modstate.state_of(module, key)
        if not namespace:
            return
        owner = data.draw(st.sampled_from([module, module.Config]))
        name = data.draw(st.sampled_from(sorted(namespace)))
        value = vars(owner).get(name)
        change = data.draw(st.sampled_from(["equal copy", "another value", "in place"]))
        if change == "in place" and _change_in_place(value):
            continue
        setattr(owner, name, copy.deepcopy(value) if change == "equal copy" else data.draw(globals_values))



# -- containers of plain values: their content digested in one pass -----------------------------------------

plain_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.complex_numbers(),
                         st.text(max_size=8), st.binary(max_size=8))
plain_keys = st.one_of(st.integers(), st.text(max_size=8), st.binary(max_size=8), st.floats(), st.none())
plain_rows = st.one_of(st.lists(plain_leaves, max_size=4), st.tuples(plain_leaves, plain_leaves))
plain_records = st.one_of(st.dictionaries(st.text(max_size=4), plain_leaves, max_size=4),
                          st.dictionaries(st.integers(-3, 3), plain_leaves, max_size=4))
plain_containers = st.one_of(
    st.lists(plain_leaves, max_size=40), st.lists(plain_leaves, max_size=40).map(tuple),
    st.sets(plain_keys, max_size=40), st.frozensets(plain_keys, max_size=40),
    st.dictionaries(plain_keys, plain_leaves, max_size=40),
    # tables: rows, records, and dicts of them
    st.lists(plain_rows, max_size=30), st.sets(st.tuples(plain_keys, plain_keys), max_size=30),
    st.lists(plain_records, max_size=30), st.dictionaries(plain_keys, plain_rows, max_size=30),
    st.dictionaries(st.text(max_size=4), plain_records, max_size=30),
    # rows holding records and rows (results kept as (step, {metrics}), nested pairs), in lists, sets and dicts
    st.lists(st.tuples(plain_leaves, plain_records), max_size=30),
    st.lists(st.tuples(plain_leaves, st.tuples(plain_leaves, plain_records)), max_size=30),
    st.lists(st.lists(st.lists(plain_leaves, min_size=2, max_size=2), min_size=3, max_size=3), max_size=20),
    st.sets(st.tuples(plain_keys, st.tuples(plain_keys, plain_keys)), max_size=20),
    st.dictionaries(plain_keys, st.tuples(plain_leaves, plain_records), max_size=20),
    # records holding rows and records, all with the same keys (JSON-like)
    st.lists(st.fixed_dictionaries({"id": plain_leaves, "tags": st.lists(plain_leaves, max_size=3),
                                    "at": plain_records}), max_size=20))


def _digested(value):
    return _fingerprint.fingerprint([("x", value)], key=b"k" * 16)


@settings(max_examples=300, deadline=None)
@given(plain_containers)
def test_a_plain_container_has_the_digest_of_its_content_whatever_its_objects(value):
    """The parent digests its own objects, the child what unpickling or a re-import made: other objects,
    strings not interned, items not shared, a set or dict filled in another order. The same content is the
    same digest."""
    assert _digested(value) == _digested(pickle.loads(pickle.dumps(value)))
    # In another order, the items a fingerprint shows (the first 16) may be others: the digest is the same.
    if isinstance(value, (set, frozenset)):
        assert _digested(value)["x"] == _digested(type(value)(reversed(list(value))))["x"]
    if isinstance(value, dict):
        assert _digested(value)["x"] == _digested(dict(reversed(list(value.items()))))["x"]
    reordered = _records_reordered(value)
    if reordered is not None:
        assert _digested(value)["x"] == _digested(reordered)["x"]


def _records_reordered(value):
    """``value`` with each record (a dict inside it, in rows too) filled in the reverse order; None if it holds
    none."""
    if not _holds_a_record(value):
        return None
    if isinstance(value, dict):
        return dict((key, _records_turned(item)) for key, item in value.items())
    return type(value)(_records_turned(item) for item in value)


def _holds_a_record(value):
    if isinstance(value, dict):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_a_record(item) for item in value)


def _records_turned(value):
    if isinstance(value, dict):
        return dict(reversed([(key, _records_turned(item)) for key, item in value.items()]))
    if isinstance(value, (list, tuple)):
        return type(value)(_records_turned(item) for item in value)
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(plain_leaves, min_size=1, max_size=40), st.data())
def test_a_plain_list_with_any_item_changed_has_another_digest(items, data):
    index = data.draw(st.integers(0, len(items) - 1))
    new = data.draw(plain_leaves.filter(lambda leaf: marshal.dumps(leaf, 2) != marshal.dumps(items[index], 2)))
    changed = list(items)
    changed[index] = new
    assert _digested(items) != _digested(changed)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=3), plain_leaves, min_size=1, max_size=4), min_size=1,
                max_size=30), st.data())
def test_a_table_with_any_value_changed_has_another_digest(records, data):
    """A value deep in a table of records (or of rows: the same records as tuples) changed: another digest."""
    index = data.draw(st.integers(0, len(records) - 1))
    field = data.draw(st.sampled_from(sorted(records[index])))
    was = records[index][field]
    new = data.draw(plain_leaves.filter(lambda leaf: marshal.dumps(leaf, 2) != marshal.dumps(was, 2)))
    changed = [dict(record) for record in records]
    changed[index][field] = new
    assert _digested(records) != _digested(changed)
    rows = [tuple(record.items()) for record in records]
    assert _digested(rows) != _digested([tuple(record.items()) for record in changed])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(), st.dictionaries(st.text(max_size=3), plain_leaves, min_size=1, max_size=4)),
                min_size=1, max_size=30), st.data())
def test_rows_holding_records_with_any_value_changed_have_another_digest(rows, data):
    """Results kept as (step, {metrics}): a metric changed anywhere, or a step, gives another digest."""
    index = data.draw(st.integers(0, len(rows) - 1))
    step, record = rows[index]
    changed = [(s, dict(r)) for s, r in rows]
    if data.draw(st.booleans()):
        field = data.draw(st.sampled_from(sorted(record)))
        new = data.draw(plain_leaves.filter(lambda leaf: marshal.dumps(leaf, 2) != marshal.dumps(record[field], 2)))
        changed[index][1][field] = new
    else:
        changed[index] = (step + 1, changed[index][1])
    assert _digested(rows) != _digested(changed)


# -- the main module under fork: only what its source says may count is read ----------------------------

literal_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
              st.binary(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                               st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), children, max_size=4),
                               st.frozensets(st.integers(), max_size=3).map(set)), max_leaves=12)
main_names = st.sampled_from(["A", "B", "C", "D", "E", "F", "G"])
# Where the source binds a name: to a literal at import, to code at import, in the main guard, through `global`.
bindings = st.sampled_from(["literal", "code", "guard", "global", "class", "class in guard", "none"])


def _main_source_text(plan):
    lines, guard = ["import multiprocessing"], []
    for name, (binding, literal) in sorted(plan.items()):
        if binding == "literal":
            lines.append("%s = %r" % (name, literal))
        elif binding == "code":
            lines.append("%s = dict(a=%r)" % (name, literal))
        elif binding == "guard":
            guard.append("    %s = 1" % name)
        elif binding == "global":
            lines.append("def set_%s():\n    global %s\n    %s = 2" % (name, name, name))
        elif binding == "class":
            lines.append("class %s:\n    attr = %r\n    other = len\n    late = 0" % (name, literal))
            guard.append("    %s.late = 1" % name)
        elif binding == "class in guard":
            guard.append("    class %s:\n        attr = 1" % name)
    return "\n".join(lines + ['if __name__ == "__main__":'] + (guard or ["    pass"])) + "\n"


def _main_value(binding, literal, how, data):
    """What the main module holds under a name the source binds so: as written, changed, or anything."""
    if how == "anything":
        return data.draw(st.one_of(globals_values, st.sampled_from(
            [len, multiprocessing.Process(), [multiprocessing.Process()], {"q": multiprocessing.Process()},
             types, Settings, [], ()])))
    if binding in ("class", "class in guard"):
        attributes = {"__module__": "__main__", "__qualname__": "?", "attr": copy.deepcopy(literal),
                      "other": len, "late": 0}
        if how == "changed":
            attributes["attr"] = data.draw(globals_values)
        return attributes  # made a class by the caller, who knows its name
    value = copy.deepcopy(literal)
    if how == "changed" and not _change_in_place(value):
        value = data.draw(globals_values)
    return value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(main_names, st.tuples(bindings, literal_values), min_size=1),
       st.sampled_from([None, b"k" * 16]), st.data())
def test_a_fork_start_reads_the_main_module_as_a_full_look_would_tell(plan, key, data):
    """What a fork start finds not portable in the main module, reading only the names its source says may
    count (and comparing literals as written before fingerprinting them), is what fingerprinting the whole
    module says, whatever each name holds: the literal as written, changed in place or rebound, code,
    a class, process handles, or nothing; at a first start and at a second one after more changes."""
    import tempfile

    from mptrace import _mainstate

    handle, path = tempfile.mkstemp(suffix=".py")
    with os.fdopen(handle, "w") as source:
        source.write(_main_source_text(plan))
    try:
        module = types.ModuleType("__main__")
        module.__file__ = path
        for _ in range(2):  # the second start reuses what the first one kept
            for name, (binding, literal) in plan.items():
                how = data.draw(st.sampled_from(["as written", "changed", "anything", "absent", "kept"]))
                if how == "absent":
                    vars(module).pop(name, None)
                    continue
                if how == "kept" and name in vars(module):
                    _change_in_place(vars(module)[name])  # the same object as at the first start, or changed
                    continue
                value = _main_value(binding, literal, how, data)
                if isinstance(value, dict) and "__qualname__" in value and binding.startswith("class"):
                    value = type(name, (), dict(value, __qualname__=name))
                setattr(module, name, value)
            if data.draw(st.booleans()):
                module.extra = data.draw(globals_values)  # a name the source never binds
            fast = _mainstate.main_not_portable_for_fork(module, key)
            state, full = _mainstate.main_state_and_not_portable(module, key)
            assert fast[1] == full
            assert sorted("__main__.%s" % name for name in fast[0]) == full
    finally:
        os.unlink(path)


def _shared_inner():
    inner = [1]
    return [inner, inner]


@pytest.mark.parametrize("value, literal", [
    (0.0, -0.0), (1, True), (1, 1.0), ((1,), [1]), ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ({1, 2}, {1, 2}),
    (_shared_inner(), [[1], [1]]), (targets.Holder(1), {"name": "holder", "resource": 1}),
    (type("Text", (str,), {})("x"), "x"), (1.0, 1), (0.1 + 0.2, 0.3),
])
def test_a_value_is_as_written_only_where_its_fingerprint_is_the_literals(value, literal):
    """Equal values the fingerprints tell apart (a zero's sign, a bool, a container held twice, a subclass,
    a dict's order) are never taken as written: they are fingerprinted."""
    from mptrace import _mainstate

    assert not _mainstate._as_written(value, literal)


@pytest.mark.parametrize("literal", [0.5, -0.0, 10 ** 40, "prod", b"x", None, (1, ("a", [2])), [[1], [1]],
                                     {"retries": 3, "names": ("a", "b")}, []])
def test_an_equal_copy_of_a_literal_is_as_written(literal):
    from mptrace import _mainstate

    copied = copy.deepcopy(literal)
    assert _mainstate._as_written(copied, literal)
    assert _fingerprint.fingerprint([("x", copied)], key=b"k" * 16) == \
        _fingerprint.fingerprint([("x", literal)], key=b"k" * 16)
