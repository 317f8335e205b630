"""A minimal span for child processes, written straight to the spool.

Spawn and forkserver children start from a fresh interpreter; importing the
OpenTelemetry SDK (about 50 ms) and wrapt (about 65 ms) there would more than
double the start of a child that takes about 40 ms. mptrace's own spans in
children are therefore these small objects, which need only the standard
library. The root turns their records into SDK ``ReadableSpan`` objects.

The method names follow the OpenTelemetry ``Span`` API (``set_attribute``,
``record_exception``, ``set_status``, ``end``), so parent-side code can treat a
LiteSpan and an SDK span alike.
"""

import os
import time

from mptrace import __version__, _spool

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 0, 1, 2, 3, 4
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


def new_span_id():
    while True:
        span_id = int.from_bytes(os.urandom(8), "big")
        if span_id:
            return span_id


def status_code_of(status):
    """The integer code of an OpenTelemetry Status, StatusCode or int."""
    if hasattr(status, "status_code"):
        status = status.status_code
    return int(getattr(status, "value", status))


def safe_str(exception):
    """``str(exception)``, or a placeholder when a user ``__str__`` raises."""
    try:
        return str(exception)
    except Exception:
        return "<unprintable>"


def qualified_type_name(exception):
    """``module.Qualname`` of an exception's class (builtins by name alone), as ``error.type`` wants it."""
    cls = type(exception)
    module = getattr(cls, "__module__", None)
    return cls.__qualname__ if module in (None, "builtins") else "%s.%s" % (module, cls.__qualname__)


def exception_event_attributes(exception, escaped=False):
    """The attributes of an OpenTelemetry ``exception`` event."""
    import traceback

    try:
        message = str(exception)
    except Exception:  # a user __str__ that raises must not break us
        message = "<unprintable %s>" % type(exception).__name__
    return {
        "exception.type": type(exception).__name__,
        "exception.message": message,
        "exception.stacktrace": "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        ),
        "exception.escaped": str(bool(escaped)),
    }


_HEAD = b'{"t":"%s","n":%s,"tid":"%032x","sid":"%016x","psid":%s,"pr":%s,"k":%d,"st":%d,"a":%s,"sc":%s'
_END_FIELDS = b',"et":%d,"ev":%s,"s":%s'
# An END whose START this process wrote: only what the START lacks (the root merges the two).
_COMPACT_END = b'{"t":"end","sid":"%016x","et":%d,"a":%s,"ev":%s,"s":%s'
_NO_EVENTS, _STATUS_UNSET = b"[]", b"[0,null]"
_encoded_names = {}  # span name -> its JSON: a handful of names, encoded once
_SCOPE = b'["mptrace","' + __version__.encode("ascii") + b'"]'


class LiteSpan:
    """One span, recorded to a spool writer at start and at end."""

    __slots__ = (
        "_writer", "name", "trace_id", "span_id", "parent_id", "parent_remote", "kind",
        "attributes", "events", "status_code", "status_description", "start_time",
        "end_time", "sampled", "prebuilt_start", "links", "start_written_by",
    )

    def __init__(self, writer, name, trace_id, parent_id, kind=KIND_INTERNAL, attributes=None,
                 sampled=True, span_id=None, parent_remote=False, begin=True):
        self._writer = writer
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id or new_span_id()
        self.parent_id = parent_id
        self.parent_remote = parent_remote
        self.kind = kind
        self.attributes = dict(attributes or {})
        self.events = []
        self.status_code = STATUS_UNSET
        self.status_description = None
        self.start_time = time.time_ns()
        self.end_time = None
        self.sampled = sampled
        self.prebuilt_start = None  # the START record, encoded in a parent before fork
        self.links = None
        self.start_written_by = None  # the pid that wrote START (its END can be compact)
        if begin:
            self.begin()

    def begin(self, start_time=None):
        """Record the start (separate so a parent can build the span before fork)."""
        if self.prebuilt_start is not None:  # start_time is the parent's, just before fork
            if self.sampled:
                self._writer.write_body(self.prebuilt_start)
            return
        self.start_time = start_time or time.time_ns()
        if self.sampled:
            self._writer.write_body(self._encode(_spool.START))
            self.start_written_by = os.getpid()

    def begin_from_template(self, start_template, start_time=None):
        """Record the start from a START its parent encoded (see _child.prebuild_records), whose one
        field is the start time."""
        self.start_time = start_time or time.time_ns()
        if self.sampled:
            self._writer.write_body(start_template % self.start_time)
            self.start_written_by = os.getpid()

    def encode_start(self):
        """The START record's body."""
        return self._encode(_spool.START)

    def prebuild(self, final_attributes):
        """Encode START now, and END as a template for an error-free end with
        ``final_attributes`` added, whose one field is the end time."""
        self.prebuilt_start = self._encode(_spool.START)
        attributes, end_time = self.attributes, self.end_time
        self.attributes = dict(attributes, **final_attributes)
        self.end_time = _spool.PLACEHOLDERS[0]
        try:
            return _spool.template_of(self._encode(_spool.END))
        finally:
            self.attributes, self.end_time = attributes, end_time

    def end_from_template(self, end_template, final_attributes):
        if self.end_time is not None:
            return
        self.end_time = time.time_ns()
        self.attributes.update(final_attributes)
        if self.sampled:
            self._writer.write_body(end_template % self.end_time)

    def record_whole(self, start_time, end_time):
        """A span that is over already (its times measured meanwhile): one END record, no START (a START
        only lets the root end a span whose process dies before it does)."""
        self.start_time = start_time
        self.end(end_time)

    def rewrite_start(self):
        """Record the start again, with the attributes and events set so far: if this process dies
        before ending the span (a pool's workers do, by its terminate()), the root ends it from the
        last START it finds (see _collector), with them (a diverged name's differences are events)."""
        if self.sampled and self.end_time is None:
            self._writer.write_body(self._encode(_spool.START, with_events=bool(self.events)))

    # -- the subset of the OpenTelemetry Span API that mptrace uses ---------

    def is_recording(self):
        return self.sampled and self.end_time is None

    def set_attribute(self, key, value):
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes):
        if self.end_time is None:
            self.attributes.update(attributes)

    def add_event(self, name, attributes=None, timestamp=None):
        if self.end_time is None:
            self.events.append([name, timestamp or time.time_ns(), dict(attributes or {})])

    def add_link(self, trace_id, span_id, attributes=None):
        """A link to another span (by ids: LiteSpans never hold SDK objects)."""
        if self.end_time is None:
            self.links = (self.links or []) + [["%032x" % trace_id, "%016x" % span_id, dict(attributes or {})]]

    def record_exception(self, exception, attributes=None, timestamp=None, escaped=False):
        event = exception_event_attributes(exception, escaped)
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def set_status(self, status, description=None):
        if self.end_time is not None:
            return
        self.status_code = status_code_of(status)
        if hasattr(status, "description") and description is None:
            description = status.description
        self.status_description = description if self.status_code == STATUS_ERROR else None

    def end(self, end_time=None):
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        if self.sampled:
            compact = self.start_written_by is not None and self.start_written_by == os.getpid()
            self._writer.write_body(self._encode_compact_end() if compact else self._encode(_spool.END))

    # -- serialisation -----------------------------------------------------

    def _encode(self, record_type, with_events=False):
        """``_record(record_type)`` as JSON, its fixed fields formatted directly (a task span's
        records are written per task: this halves their cost). ``with_events``: a START with the
        events so far too (an END always has them)."""
        if type(self.trace_id) is not int or type(self.start_time) is not int:
            record = self._record(record_type)
            if with_events:
                record["ev"] = self.events
            return _spool.encode_body(record)
        encode = _spool.encode_value
        name = _encoded_names.get(self.name)
        if name is None:
            name = encode(self.name)
            if type(self.name) is str and len(_encoded_names) < 64:
                _encoded_names[self.name] = name
        body = _HEAD % (
            record_type.encode("ascii"), name, self.trace_id, self.span_id,
            b'"%016x"' % self.parent_id if self.parent_id else b"null", b"true" if self.parent_remote else b"false",
            self.kind, self.start_time, encode(self.attributes), _SCOPE)
        if record_type == _spool.END:
            body += _END_FIELDS % (self.end_time, encode(self.events), encode([self.status_code,
                                                                                 self.status_description]))
            if self.links:
                body += b',"ln":' + encode(self.links)
        elif with_events:
            body += b',"ev":' + encode(self.events)
        return body + b"}"

    def _encode_compact_end(self):
        """END for a span whose START this process wrote: the START has its name, ids, kind
        and start time, so these are left out (a task span ends once per task)."""
        encode = _spool.encode_value
        body = _COMPACT_END % (
            self.span_id, self.end_time, encode(self.attributes),
            encode(self.events) if self.events else _NO_EVENTS,
            _STATUS_UNSET if self.status_code == STATUS_UNSET else encode([self.status_code,
                                                                          self.status_description]))
        if self.links:
            body += b',"ln":' + encode(self.links)
        return body + b"}"

    def _record(self, record_type):
        record = {
            "t": record_type,
            "n": self.name,
            "tid": "%032x" % self.trace_id,
            "sid": "%016x" % self.span_id,
            "psid": "%016x" % self.parent_id if self.parent_id else None,
            "pr": self.parent_remote,
            "k": self.kind,
            "st": self.start_time,
            "a": self.attributes,
            "sc": ["mptrace", __version__],
        }
        if record_type == _spool.END:
            record["et"] = self.end_time
            record["ev"] = self.events
            record["s"] = [self.status_code, self.status_description]
            if self.links:
                record["ln"] = self.links
        return record
