"""Property tests: fingerprints never raise, never run user code, stay bounded."""

import copy
import types

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
