"""Property tests: the spool format round-trips, and no input can break the reader."""

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from mptrace import _spool
from mptrace._collector import Collector

scalars = st.one_of(st.text(max_size=20), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False))
attribute_values = st.one_of(scalars, st.lists(st.text(max_size=5), max_size=4))
attributes = st.dictionaries(st.text(min_size=1, max_size=10), attribute_values, max_size=5)
span_ids = st.integers(1, 2**64 - 1).map(lambda i: "%016x" % i)
trace_ids = st.integers(1, 2**128 - 1).map(lambda i: "%032x" % i)


@st.composite
def end_records(draw):
    start = draw(st.integers(0, 2**62))
    return {
        "t": "end", "n": draw(st.text(max_size=30)), "tid": draw(trace_ids), "sid": draw(span_ids),
        "psid": draw(st.one_of(st.none(), span_ids)), "pr": draw(st.booleans()), "k": draw(st.integers(0, 4)),
        "st": start, "et": start + draw(st.integers(0, 10**12)), "a": draw(attributes),
        "ev": [[draw(st.text(max_size=10)), start, draw(attributes)]], "s": [draw(st.integers(0, 2)), None],
        "sc": ["mptrace", None],
    }


@given(end_records())
def test_records_round_trip(record):
    line = _spool.encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert _spool.decode(line[:-1]) == record


@given(end_records())
def test_every_valid_record_becomes_a_span(record):
    spans = []
    with tempfile.TemporaryDirectory() as directory:  # one per example, removed: /tmp is everyone's
        collector = Collector(directory, spans.append)
        collector._take_lines(_reader_file(), _spool.encode(record))
    assert collector.counts["corrupt_records"] == 0
    assert len(spans) == 1 and spans[0].name == record["n"]
    assert spans[0].context.span_id == int(record["sid"], 16)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(0, 400), st.binary(max_size=8))
def test_no_bytes_can_break_the_reader(garbage, cut, splice):
    """Garbage, truncation and splices are skipped and counted, never raised."""
    spans = []
    good = _spool.encode({"t": "end", "n": "ok", "tid": "1" * 32, "sid": "2" * 16, "st": 1, "et": 2})
    damaged = good[:cut] + splice + good[cut:]
    with tempfile.TemporaryDirectory() as directory:
        collector = Collector(directory, spans.append)
        for chunk in (garbage, b"\n", damaged, good):
            collector._take_lines(_reader_file(collector), chunk)
    assert spans and spans[-1].name == "ok"


def _reader_file(collector=None):
    from mptrace._collector import _SpoolFile

    if collector is not None:
        return collector.__dict__.setdefault("_test_file", _SpoolFile(os.path.join(collector.directory, "x.spool")))
    return _SpoolFile("/nonexistent/x.spool")
