"""The root's side of the spool: records in, SDK spans out.

The collector reads every spool file in the private directory from where it
last stopped, turns complete records into ``ReadableSpan`` objects and hands
them to the root provider's span processors, as if they had ended here.

When a process is known to be dead (its parent observed the exit), its file is
read to the end and removed; any span it started and never ended (killed,
``os._exit``) is ended on its behalf with status ERROR, so no span in the trace
points at a parent that never arrives. The run span so ended carries the exit
code and signal. A dead process whose file a listing made after its exit was
known does not show never wrote one (its trace was not sampled, it was killed
first): it is forgotten then, so the root keeps nothing per child it reaped.
"""

import collections
import os
import threading
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from mptrace import _bounded, _log, _spool, semconv

_HEX_DIGITS = "0123456789abcdef"  # of trace and span ids: lowercase only
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_ATTRIBUTE_SCALARS = (str, bool, int, float)
# SpanKind(value) and StatusCode(value) run the Enum machinery's Python code for every span; and a Status
# or an InstrumentationScope (which builds a BoundedAttributes: a lock, a dict) is immutable, so spans can
# share one. Each object a collection makes or touches is a page the root writes again after every fork.
_SPAN_KINDS = {kind.value: kind for kind in SpanKind}
_STATUS_CODES = {code.value: code for code in StatusCode}
_STATUSES = {code: Status(code) for code in StatusCode}  # without a description
_scopes = {}  # (name, version) -> InstrumentationScope
_SCOPES_KEPT = 64  # a bound: records are input
_READ_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
# When children exit in quick succession, their spans are collected together
# at most this often (flush() and exit always collect everything).
COLLECT_INTERVAL = 0.1
# lost_reasons key of the hand-overs mptrace stopped waiting to make (see _bounded).
GAVE_UP = "the span processors did not return in time (a hanging exporter?) and mptrace stopped waiting"


class CorruptRecord(ValueError):
    """A record that decoded but does not have the shape of one."""


class _SpoolFile:
    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.tail = b""
        self.resource = None
        self.open_spans = {}  # span id (hex) -> START record


class Collector:
    def __init__(self, directory, emit):
        self.directory = directory
        self._prefix = os.path.join(directory, "")  # + a listed name: its path (os.path.join is five calls)
        self._emit = emit
        self._files = {}
        self._exited = {}  # spool file name -> (exitcode, signal name, time, stopped by)
        self._lock = threading.RLock()
        self._last_collect = 0.0
        self.counts = {"spans": 0, "synthesized": 0, "corrupt_records": 0, "files": 0,
                       "lost_spans": 0, "lost_files": 0}
        self.lost_reasons = {}  # why spans were lost -> how many (spans, or files whose count is unknown)
        self._lost_marked = {}  # spool file name -> (spans its writer said it lost, the marker's name)
        self._shut_down = False  # whether the provider's processors were shut down (at the last collection)
        self._queues = ()  # (queue, size limit) of each batch processor behind emit
        self._processors = ((), [], [])  # (the provider's tuple of processors, their batch processors, _queues)
        self._pending = []  # (function, args, counted) hand-overs not made in time: tried again at the next collection
        self._later = []  # the root's own ended spans (mp.process) to hand over with the next collection
        # (what, function, args): work put off to the start of the next collection (see at_next_collection).
        # A deque: appended to on any thread (a pool's handler thread observes its workers' exits) without a lock.
        self._deferred = collections.deque()

    # -- public --------------------------------------------------------------

    def collect(self):
        """Read whatever every spool file gained since the last call."""
        with self._lock:
            self._last_collect = time.monotonic()
            self._shut_down, self._queues = self._processor_state()
            self._retry_pending()
            self._run_deferred()  # may end spans of the root's own: handed over just below
            self._hand_over_own_later()
            # Exits known before the listing: a file such a child made is listed, so one that is not was
            # never made. An exit read from a file below may be a grandchild's whose file came after the
            # listing: it waits for the next one.
            known_exits = set(self._exited)
            try:
                listed = os.listdir(self.directory)
            except FileNotFoundError:
                self._lose_exited_files()
                return
            except OSError:
                return
            self._take_lost_markers(listed)
            for name in sorted(n for n in listed if n.endswith(_spool.SUFFIX)):
                self._read(name)
            for name in [n for n in self._exited if n in self._files or n in known_exits]:
                self._finish(name)

    def collect_if_due(self):
        if (self._exited or self._deferred) and time.monotonic() - self._last_collect >= COLLECT_INTERVAL:
            self.collect()

    def at_next_collection(self, what, function, args):
        """Run ``function(*args)`` at the start of the next collection (now, if one is due), before its
        hand-overs; ``what`` names it if it raises. The root observes a child's exit on the thread that
        called join() (or is_alive(), a pool's handler thread...), right after the fork: every page it
        writes there costs a copy-on-write fault that the caller waits for. Ending mp.process and
        reporting the exit can wait for the collection that hands them over; this only appends."""
        self._deferred.append((what, function, args))
        if time.monotonic() - self._last_collect >= COLLECT_INTERVAL:  # collect_if_due(), one call fewer
            self.collect()

    def process_exited(self, run_span_id, exitcode, signal_name=None, stopped_by=None, when=None):
        """The child whose run span is ``run_span_id`` (int) has exited.

        ``stopped_by``: who ended it on purpose (its pool's terminate()), if anyone; ``when``: the time in
        ns its exit was observed (now if None), the end of the spans it left open.
        """
        with self._lock:
            self._exited[_spool.file_name(run_span_id)] = (exitcode, signal_name, when or time.time_ns(), stopped_by)
            self.collect_if_due()

    def close(self, reason):
        """Final collection: end every span left open, remove the directory."""
        with self._lock:
            self.collect()
            for name in list(self._files):
                self._exited.setdefault(name, (None, None, time.time_ns(), None))
                self._finish(name, reason)
            import shutil  # here, not at import: shutil loads zlib, bz2 and lzma, which every fork would copy

            shutil.rmtree(self.directory, ignore_errors=True)
            if self._pending:
                self._lose(GAVE_UP, len(self._pending))
                self._pending = []

    def hand_over_later(self, span):
        """A span of the root's own that ended at a child's exit (mp.process), to hand over with the next
        collection, together with the children's spans: after a fork each page the parent writes costs a
        copy-on-write fault, and one batch writes the pages that making ReadableSpans needs once, not once
        per child. ``span.readable()`` makes its ReadableSpan."""
        with self._lock:
            self._later.append(span)
            self.collect_if_due()

    def hand_over_own(self, function, args):
        """A span of the root's own, ended while mptrace waits with a deadline (see _bounded)."""
        with self._lock:
            self._make(function, args, counted=False)

    # -- reading -------------------------------------------------------------

    def _read(self, name):
        spool_file = self._files.get(name)
        if spool_file is None:
            spool_file = self._files[name] = _SpoolFile(self._prefix + name)
            self.counts["files"] += 1
        try:
            fd = os.open(spool_file.path, _OPEN_FLAGS)
        except OSError:
            return
        try:
            os.lseek(fd, spool_file.offset, os.SEEK_SET)
            while True:
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    break
                spool_file.offset += len(chunk)
                self._take_lines(spool_file, chunk)
        finally:
            os.close(fd)

    def _take_lines(self, spool_file, chunk):
        lines = (spool_file.tail + chunk).split(b"\n")
        spool_file.tail = lines.pop()  # incomplete until its newline arrives
        for line in lines:
            record = _spool.decode(line)
            if record is None:
                self._corrupt(spool_file, "bad checksum or JSON")
                continue
            try:
                self._handle(spool_file, record)
            except (CorruptRecord, KeyError, TypeError, ValueError, OverflowError) as exc:
                self._corrupt(spool_file, exc)

    def _corrupt(self, spool_file, why):
        self.counts["corrupt_records"] += 1
        _log.warning("skipped a corrupt record in %s (%s)", spool_file.path, why)

    def _handle(self, spool_file, record):
        kind = record.get("t")
        if kind == _spool.HEADER:
            attributes = _attributes(record.get("res"))
            spool_file.resource = Resource(attributes)
        elif kind == _spool.START:
            _check_span(record)
            spool_file.open_spans[record["sid"]] = record
        elif kind == _spool.END:
            start = spool_file.open_spans.pop(record.get("sid"), None)
            if "n" not in record:  # a compact END: the rest is in its START
                if start is None:
                    raise CorruptRecord("an end record without its start")
                record = dict(start, **record)
            self._hand_over(_readable_span(record, spool_file.resource))
        elif kind == _spool.EXIT:
            run_span_id = _span_id(record.get("rsid"))
            stopped_by = record.get("by")
            self._exited[_spool.file_name(run_span_id)] = (
                _int_or_none(record.get("code")), record.get("sig"), _int(record.get("time")),
                stopped_by if isinstance(stopped_by, str) else None)
        else:
            raise CorruptRecord("unknown record type %r" % (kind,))

    def _hand_over(self, span):
        if self._shut_down:
            self._lose("the tracer provider was shut down before these spans arrived", 1)
            return
        for queue, limit in self._queues:
            if len(queue) >= limit:  # the SDK would drop one to make room
                self._lose("the span processor's queue was full (the exporter is slower than the children)", 1)
                return
        self._make(self._emit, (span,), counted=True)

    def _make(self, function, args, counted):
        """Make one hand-over; one that mptrace stopped waiting to make is kept for the next collection."""
        try:
            _bounded.call(function, *args)
        except _bounded.GaveUp:
            self._pending.append((function, args, counted))
            return
        except Exception:
            self._lose("a span processor raised", 1, exc_info=True)
            return
        if counted:
            self.counts["spans"] += 1

    def _run_deferred(self):
        """What at_next_collection put off, in order; popped one at a time, as other threads may append
        meanwhile (only a collection, under the lock, pops)."""
        deferred = self._deferred
        while deferred:
            what, function, args = deferred.popleft()
            _log.safely(what, function, *args)

    def _hand_over_own_later(self):
        later, self._later = self._later, []
        for span in later:
            try:
                readable = span.readable()
            except Exception:
                self._lose("mptrace could not make one of its own spans", 1, exc_info=True)
                continue
            self._make(self._emit, (readable,), counted=False)

    def _processor_state(self):
        """(whether they were shut down, [(queue, limit)]) of the span processors behind ``emit``.

        The SDK's processors drop spans after ``shutdown()`` and when a batch queue is full, and only log
        it. Read through their private (long stable) attributes; where those differ, nothing is known and
        nothing is counted. Which they are, their queues and limits are looked up again only when the
        provider's tuple of processors is another (the SDK makes a new one for each processor added; a
        processor keeps its queue, but in a fork child, whose collector is its own): each object a
        collection touches is a page the root writes again after every fork.
        """
        processors = getattr(getattr(self._emit, "__self__", None), "_span_processors", ())
        known, batches, queues = self._processors
        if processors is not known:
            batches, queues = _batches_and_queues(processors)
            self._processors = (processors, batches, queues)
        for batch in batches:
            if getattr(batch, "_shutdown", False) is True or getattr(batch, "done", False) is True:
                return True, queues
        return False, queues

    def _retry_pending(self):
        pending, self._pending = self._pending, []
        for function, args, counted in pending:
            self._make(function, args, counted)

    # -- what was lost ---------------------------------------------------------

    def _lose(self, reason, spans=0, files=0, exc_info=False):
        """Count spans (or whole files of them) that never reach the provider; say so once per reason."""
        self.counts["lost_spans"] += spans
        self.counts["lost_files"] += files
        first = reason not in self.lost_reasons
        self.lost_reasons[reason] = self.lost_reasons.get(reason, 0) + (spans or files)
        if first:
            what = "spans are" if spans else "the spans of whole processes are"
            _log.warning_with("%s: %s lost (counted in mptrace.stats()['%s']; further losses of this kind are "
                              "counted, not logged)", exc_info, reason, what, "lost_spans" if spans else "lost_files")

    def _take_lost_markers(self, listed):
        """Count what children said they could not write (see _spool.lost_marker)."""
        for name in listed:
            if _spool.LOST_MARK not in name:  # the spool files themselves: no call for each
                continue
            marked = _spool.parse_lost_marker(name)
            if marked is None:
                continue
            spool_name, failure, count = marked
            seen, _ = self._lost_marked.get(spool_name, (0, None))
            if count > seen:
                self._lost_marked[spool_name] = (count, name)
                self._lose("a child could not write its spool file (%s)" % _describe_errno(failure), count - seen)

    def _forget_marker(self, spool_name):
        _, marker = self._lost_marked.pop(spool_name, (0, None))
        if marker is not None:
            try:
                os.unlink(os.path.join(self.directory, marker))
            except OSError:
                pass

    def _lose_exited_files(self):
        """The spool directory was removed: every exited child's file, read or not, went with it."""
        for name in list(self._exited):
            self._lose("the spool directory was removed", files=1)
            self._finish(name)

    # -- ending what a dead process left open --------------------------------

    def _finish(self, name, reason=None):
        spool_file = self._files.pop(name, None)
        exitcode, signal_name, when, stopped_by = self._exited.pop(name, (None, None, time.time_ns(), None))
        self._forget_marker(name)
        if spool_file is None:
            return
        self._read_rest(name, spool_file)
        if spool_file.tail:
            self._corrupt(spool_file, "truncated last record")
        for record in spool_file.open_spans.values():
            self._synthesize_end(record, spool_file.resource, exitcode, signal_name, when, reason, stopped_by)
        try:
            os.unlink(spool_file.path)
        except OSError:
            pass

    def _read_rest(self, name, spool_file):
        self._files[name] = spool_file
        try:
            self._read(name)
        finally:
            self._files.pop(name, None)

    def _synthesize_end(self, record, resource, exitcode, signal_name, when, reason, stopped_by=None):
        # The events are those its last START carried (see LiteSpan.rewrite_start), if any.
        record = dict(record, et=max(when, _int(record.get("st"))), ev=record.get("ev") or [],
                      a=dict(record.get("a") or {}))
        attributes = record["a"]
        attributes[semconv.SPAN_SYNTHESIZED] = True
        if exitcode is not None:
            attributes[semconv.EXITCODE] = exitcode
            attributes[semconv.OTEL_PROCESS_EXIT_CODE] = exitcode
        if signal_name:
            attributes[semconv.EXIT_SIGNAL] = signal_name
        if reason is not None:
            attributes[semconv.END_REASON] = reason
        if stopped_by is not None and record.get("n") == semconv.SPAN_PROCESS_RUN:
            attributes[semconv.END_REASON] = stopped_by  # ended on purpose: not a failure
        else:
            if exitcode is not None:
                attributes[semconv.OTEL_ERROR_TYPE] = signal_name or str(exitcode)
            record["s"] = [int(StatusCode.ERROR.value), _why_unended(exitcode, signal_name, reason)]
        try:
            span = _readable_span(record, resource)
        except (CorruptRecord, KeyError, TypeError, ValueError, OverflowError):
            self.counts["corrupt_records"] += 1
            return
        self.counts["synthesized"] += 1
        self._hand_over(span)


def _describe_errno(name):
    import errno

    number = getattr(errno, name, None)
    return "%s, %s" % (name, os.strerror(number)) if isinstance(number, int) else name


def _batches_and_queues(processors):
    """([the batch processor of each processor, or itself], [(queue, limit)]) of the span processors
    ``processors`` (see Collector._processor_state)."""
    batches, queues = [], []
    for processor in processors:
        batch = getattr(processor, "_batch_processor", processor)
        batches.append(batch)
        queue = getattr(batch, "_queue", getattr(batch, "queue", None))
        limit = getattr(batch, "_max_queue_size", getattr(batch, "max_queue_size", None))
        if isinstance(limit, int) and not isinstance(limit, bool) and hasattr(queue, "__len__"):
            queues.append((queue, limit))
    return batches, queues


def _why_unended(exitcode, signal_name, reason):
    if signal_name:
        return "process was killed by %s before the span ended" % signal_name
    if exitcode is not None:
        return "process exited with code %d before the span ended" % exitcode
    return "span never ended (%s)" % (reason or "process did not report")


# -- records to SDK objects (every field is checked: records are input) -------


def _int(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptRecord("expected an integer, got %r" % (value,))
    return value


def _int_or_none(value):
    return None if value is None else _int(value)


def _trace_id(value):
    number = _hex_id(value, 32)
    if number is None:
        raise CorruptRecord("bad trace id %r" % (value,))
    return number


def _span_id(value):
    number = _hex_id(value, 16)
    if number is None:
        raise CorruptRecord("bad span id %r" % (value,))
    return number


def _hex_id(value, digits):
    """The id that ``value`` writes in exactly ``digits`` lowercase hex digits, None if it does not or if it
    is 0. str.strip leaves nothing only where every character is such a digit: no regular expression's
    match object to make per id."""
    if not isinstance(value, str) or len(value) != digits or value.strip(_HEX_DIGITS):
        return None
    return int(value, 16) or None


def _attribute_value(value):
    if isinstance(value, _ATTRIBUTE_SCALARS):
        return value
    if isinstance(value, list) and all(isinstance(v, _ATTRIBUTE_SCALARS) for v in value):
        return tuple(value)
    raise CorruptRecord("bad attribute value %r" % (value,))


def _attributes(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptRecord("attributes must be an object")
    return {str(k): _attribute_value(v) for k, v in value.items()}


def _check_span(record):
    if not isinstance(record.get("n"), str):
        raise CorruptRecord("span name missing")
    _trace_id(record.get("tid"))
    _span_id(record.get("sid"))
    _int(record.get("st"))


def _readable_span(record, resource):
    name = record.get("n")  # the checks of _check_span, each made once
    if not isinstance(name, str):
        raise CorruptRecord("span name missing")
    trace_id = _trace_id(record.get("tid"))
    span_id = _span_id(record.get("sid"))
    start_time = _int(record.get("st"))
    parent = None
    if record.get("psid") is not None:
        parent = SpanContext(trace_id, _span_id(record["psid"]), is_remote=bool(record.get("pr")), trace_flags=_SAMPLED)
    code, description = record.get("s") or (0, None)
    status_code = _STATUS_CODES.get(_int(code))
    if status_code is None:
        raise CorruptRecord("bad status code %r" % (code,))
    kind = _SPAN_KINDS.get(_int(record.get("k", 0)))
    if kind is None:
        raise CorruptRecord("bad span kind %r" % (record.get("k"),))
    scope_name, scope_version = record.get("sc") or (None, None)
    events, links = record.get("ev"), record.get("ln")
    return ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
        parent=parent,
        resource=resource or Resource({}),
        attributes=_attributes(record.get("a")),
        # () when there are none, as the SDK's own default (ReadableSpan.events and .links are tuples)
        events=[Event(str(n), _attributes(a), _int(ts)) for n, ts, a in events] if events else (),
        links=[Link(SpanContext(_trace_id(t), _span_id(s), is_remote=True, trace_flags=_SAMPLED), _attributes(a))
               for t, s, a in links] if links else (),
        kind=kind,
        status=(Status(status_code, str(description)) if status_code is StatusCode.ERROR and description
                else _STATUSES[status_code]),
        start_time=start_time,
        end_time=_int(record["et"]),
        instrumentation_scope=_scope(str(scope_name or "unknown"), scope_version),
    )


def _scope(name, version):
    """The InstrumentationScope ``(name, version)``: one per scope while few are seen, as the SDK's tracer
    keeps one for all its spans."""
    if version is not None and not isinstance(version, str):
        return InstrumentationScope(name, version)
    scope = _scopes.get((name, version))
    if scope is None:
        if len(_scopes) >= _SCOPES_KEPT:
            _scopes.clear()
        scope = _scopes[name, version] = InstrumentationScope(name, version)
    return scope
