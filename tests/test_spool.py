"""The spool channel: private, cleaned up, and robust against bad records."""

import logging
import os
import pickle

import pytest

from mptrace import _spool
from mptrace._state import state
from tests import targets
from tests.spans import assert_no_orphans, one, process_span_names

CRC_OK_BUT_NOT_A_SPAN = b'{"t":"end","n":"evil","tid":"zz","sid":"00"}'


class Marker:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (targets.write_line, (self.path, "unpickled!"))


def write_bad_files(directory, marker_path):
    payload = pickle.dumps(Marker(marker_path))
    bad_lines = [
        b"garbage without any structure",
        b"%08x %s" % (int(_spool.checksum(b"{}"), 16) ^ 1, b"{}"),  # wrong checksum
        _spool.frame(CRC_OK_BUT_NOT_A_SPAN)[:-1],  # valid checksum, invalid span
        _spool.frame(payload)[:-1],  # a pickle, framed: must not be unpickled
        _spool.frame(b"[1, 2, 3]")[:-1],  # JSON, but not an object
    ]
    content = b"\n".join(bad_lines) + b"\n"
    with open(os.path.join(directory, "ffffffffffffffff" + _spool.SUFFIX), "wb") as f:
        f.write(content)
    return content.count(b"\n")  # the pickle holds newlines: each line is a record


def test_corrupt_records_are_skipped_and_counted(traced, context, tmp_path, caplog):
    marker = str(tmp_path / "marker")
    bad = write_bad_files(state.tree["dir"], marker)
    p = context.Process(target=targets.succeed)
    p.start()
    p.join(30)
    spans = traced.spans()
    assert process_span_names(spans) == ["mp.process", "mp.process.run", "user-work"]
    assert_no_orphans(spans)
    import mptrace

    assert mptrace.stats()["corrupt_records"] == bad
    assert not os.path.exists(marker), "a spool record was unpickled"
    assert "skipped a corrupt record" in caplog.text


def test_truncated_record_is_counted_when_the_writer_is_gone(traced, caplog):
    path = os.path.join(state.tree["dir"], "eeeeeeeeeeeeeeee" + _spool.SUFFIX)
    with open(path, "wb") as f:
        f.write(_spool.encode({"t": "proc", "pid": 1, "res": {}}))
        f.write(_spool.encode({"t": "end", "n": "half"})[:20])  # killed mid-write
    import mptrace

    mptrace.flush()
    assert mptrace.stats()["corrupt_records"] == 0, "an incomplete line may still be completed"
    with caplog.at_level(logging.WARNING, logger="mptrace"):
        mptrace.uninstall()
        mptrace.install(tracer_provider=traced.provider)  # the fixture uninstalls again
    assert "truncated last record" in caplog.text


def test_spool_is_private_while_children_run(traced, context):
    ready = context.Event()
    p = context.Process(target=targets.signal_ready_then_sleep, args=(ready,))
    p.start()
    try:
        assert ready.wait(30)
        directory = state.tree["dir"]
        assert os.stat(directory).st_mode & 0o777 == 0o700
        files = os.listdir(directory)
        assert files, "the child has no spool file"
        for name in files:
            assert os.stat(os.path.join(directory, name)).st_mode & 0o777 == 0o600
    finally:
        p.kill()
        p.join(30)


def test_child_runs_on_when_the_spool_is_gone(traced, context):
    import shutil

    shutil.rmtree(state.tree["dir"])
    p = context.Process(target=targets.exit_with, args=(4,))
    p.start()
    p.join(30)
    assert p.exitcode == 4
    spans = traced.spans()
    assert process_span_names(spans) == ["mp.process"]  # the parent's own span still ends
    assert one(spans, "mp.process").attributes["mp.exitcode"] == 4


@pytest.mark.parametrize("record", [
    {"t": "end", "n": "x", "tid": "0" * 32, "sid": "1" * 16, "st": 1, "et": 2},  # zero trace id
    {"t": "end", "n": "x", "tid": "1" * 32, "sid": "1" * 16, "st": "1", "et": 2},  # string time
    {"t": "end", "n": "x", "tid": "1" * 32, "sid": "1" * 16, "st": 1, "et": 2, "a": {"k": {"nested": 1}}},
    {"t": "end", "sid": "1" * 16, "et": 2},  # a compact end without its start
    {"t": "mystery"},
])
def test_records_of_the_wrong_shape_are_rejected(traced, record):
    path = os.path.join(state.tree["dir"], "dddddddddddddddd" + _spool.SUFFIX)
    with open(path, "wb") as f:
        f.write(_spool.encode(record))
    import mptrace

    mptrace.flush()
    assert mptrace.stats()["corrupt_records"] == 1
    assert traced.spans() == []


def test_a_compact_end_record_completes_its_start(traced):
    """A LiteSpan's END leaves out what its START said; the root merges the two."""
    from mptrace import _litespan

    writer = _spool.SpoolWriter(state.tree["dir"], "cccccccccccccccc" + _spool.SUFFIX, {"service.name": "t"})
    span = _litespan.LiteSpan(writer, "mp.task.run", 0xABC, 0x123, _litespan.KIND_CONSUMER, {"at.start": 1},
                              parent_remote=True)
    span.set_attribute("at.end", "yes")
    span.add_event("something", {"n": 2})
    span.set_status(_litespan.STATUS_ERROR, "it failed")
    span.end()
    with open(os.path.join(state.tree["dir"], writer.name), "rb") as f:
        end_line = f.read().splitlines()[-1]
    assert b"mp.task.run" not in end_line and b'"tid"' not in end_line, "the END repeats its START"
    import mptrace

    mptrace.flush()
    found = one(traced.spans(), "mp.task.run")
    assert (found.context.trace_id, found.context.span_id, found.parent.span_id) == (0xABC, span.span_id, 0x123)
    assert found.parent.is_remote and found.kind.value == _litespan.KIND_CONSUMER
    assert dict(found.attributes) == {"at.start": 1, "at.end": "yes"}
    assert [event.name for event in found.events] == ["something"]
    assert found.status.description == "it failed"
    assert (found.start_time, found.end_time) == (span.start_time, span.end_time)
    assert mptrace.stats()["corrupt_records"] == 0


@pytest.mark.parametrize("own", [{}, {"process.creation.time": "2026-12-05T07:00:00Z"},
                                 {"service.instance.id": 'a "quoted" 100% id', "process.creation.time": "now"}])
def test_a_header_template_cut_once_per_resource_fills_in_each_writers_values(own):
    """A parent makes one writer per fork child, all for the same resource: the header is encoded once and
    cut where each writer's own values go (_spool.header_template). Each filled header must be the record
    the writer's own resource makes, whatever those values hold (quotes, %)."""
    resource = {"service.name": "t", "service.instance.id": "root's", "n": 1}
    for turn in range(2):  # the second time from the template cut the first time
        values = {key: "%s %d" % (value, turn) for key, value in own.items()}
        filled = _spool.header_template(resource, values) % (11, 11, 7)
        record = _spool.decode(_spool.frame(filled)[:-1])
        assert record == {"t": _spool.HEADER, "v": _spool.VERSION, "pid": 11,
                          "res": dict(resource, **values, **{"process.pid": 11, "process.parent_pid": 7})}
