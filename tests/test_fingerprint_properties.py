"""Property tests: fingerprints never raise, never run user code, stay bounded."""

from hypothesis import given
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
