"""Finished spans as Jaeger's own JSON trace format, and back.

The format is what Jaeger's query API v1 returns from ``/api/traces/{id}``
(jaeger ``model/json``): ``{"data": [trace, ...], "total": 0, ...}``, each
trace with its ``spans`` and a ``processes`` table. Jaeger UI's "Upload JSON"
reads such a file in the browser with no backend, whereas an OTLP JSON file
must first go through a running Jaeger's ``/api/transform``.

The mapping follows the OpenTelemetry Collector's Jaeger translator
(``pkg/translator/jaeger/traces_to_jaegerproto.go``), so a file looks like
what Jaeger itself would show for the same spans:

- one Jaeger process per distinct Resource, so every OS process is its own
  ``p1``, ``p2``, ...: serviceName from ``service.name``, the other resource
  attributes as process tags;
- the parent as a ``CHILD_OF`` reference, links as ``FOLLOWS_FROM``;
- kind as tag ``span.kind``; status as ``otel.status_code`` (and ``error``:
  true, ``otel.status_description`` for errors); the instrumentation scope as
  ``otel.scope.name`` / ``otel.scope.version``;
- events as logs whose first field ``event`` is the event's name;
- times in whole microseconds.

Jaeger has no array type: a list attribute becomes a string tag holding the
list as JSON (as the Collector does) and carries an extra ``"mptraceArray":
true`` so ``parse`` can tell it from a string that merely looks like a list;
Jaeger and its UI ignore the extra key. Integers outside JavaScript's safe
range are written as decimal strings (as Jaeger does) and non-finite floats as
"NaN"/"Infinity"/"-Infinity", so the file stays strict JSON.

Lost on the way: nanoseconds below the microsecond, link attributes, trace
state, dropped counts. Attributes whose keys are the tags above (``span.kind``,
``error``, ``otel.status_code``, ...) are read back as what those tags mean.

Standard library only: the spans are read duck-typed, so this module imports
nothing from OpenTelemetry.
"""

import base64
import json
import math
import os
import re
import tempfile
from typing import NamedTuple, Optional

CHILD_OF = "CHILD_OF"
FOLLOWS_FROM = "FOLLOWS_FROM"
UNKNOWN_SERVICE = "unknown_service"  # OpenTelemetry's default service.name
SERVICE_NAME = "service.name"

KIND_TAG = "span.kind"
ERROR_TAG = "error"
STATUS_CODE_TAG = "otel.status_code"
STATUS_DESCRIPTION_TAG = "otel.status_description"
SCOPE_NAME_TAG = "otel.scope.name"  # the Collector's key since otel.library.name was renamed
SCOPE_VERSION_TAG = "otel.scope.version"
RESERVED_TAGS = frozenset(
    (KIND_TAG, ERROR_TAG, STATUS_CODE_TAG, STATUS_DESCRIPTION_TAG, SCOPE_NAME_TAG, SCOPE_VERSION_TAG))
EVENT_NAME_FIELD = "event"
ARRAY_MARK = "mptraceArray"

KINDS = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
JS_MAX_SAFE_INTEGER = 2 ** 53 - 1  # beyond this JSON.parse in the UI would round the number
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}  # anything else non-finite is NaN


class ParsedSpan(NamedTuple):
    """One span read back from a document: ids as ints, times in nanoseconds (whole microseconds)."""

    trace_id: int
    span_id: int
    parent_span_id: Optional[int]
    name: str
    kind: str  # a SpanKind name: INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
    start_time_ns: int
    end_time_ns: int
    attributes: dict  # list values come back as tuples, as the SDK stores them
    resource: dict  # service.name and the process tags
    status_code: str  # UNSET, OK or ERROR
    status_description: Optional[str]
    events: list  # (name, timestamp_ns, attributes)
    links: list  # (trace_id, span_id)
    scope_name: Optional[str] = None
    scope_version: Optional[str] = None


# -- spans to a document ------------------------------------------------------


def to_document(spans):
    """The Jaeger JSON document for ``spans``: one entry of ``data`` per trace, earliest trace first."""
    return {
        "data": [_trace(trace_id, members) for trace_id, members in _by_trace(spans)],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }


def write(spans, path):
    """Write ``to_document(spans)`` to ``path`` as UTF-8 JSON; return ``path``.

    Atomic: a reader (or a crash) sees the old file or the whole new one. The
    file is the owner's only, as mkstemp makes it: traces can carry argument
    values and stack traces.
    """
    text = json.dumps(to_document(spans), allow_nan=False, separators=(",", ":"))
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    return path


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _by_trace(spans):
    """[(trace_id, spans sorted by start time)], ordered by each trace's first start."""
    traces = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    for members in traces.values():
        members.sort(key=lambda span: span.start_time)
    return sorted(traces.items(), key=lambda item: item[1][0].start_time)


def _trace(trace_id, spans):
    processes = _ProcessTable()
    return {
        "traceID": _trace_id_hex(trace_id),
        "spans": [_span(span, processes.key_for(span.resource)) for span in spans],
        "processes": processes.by_key,
        "warnings": None,
    }


class _ProcessTable:
    """A trace's processes: one per distinct resource, keyed p1, p2, ... in order of first use."""

    def __init__(self):
        self.by_key = {}
        self._key_by_identity = {}

    def key_for(self, resource):
        process = _process(resource)
        identity = json.dumps(process, sort_keys=True)  # equal attributes: the same process, as in Jaeger
        key = self._key_by_identity.get(identity)
        if key is None:
            key = self._key_by_identity[identity] = "p%d" % (len(self.by_key) + 1)
            self.by_key[key] = process
        return key


def _process(resource):
    attributes = dict(getattr(resource, "attributes", None) or {})
    service_name = attributes.pop(SERVICE_NAME, None)
    return {
        "serviceName": str(service_name) if service_name not in (None, "") else UNKNOWN_SERVICE,
        "tags": _tags(sorted(attributes.items())),  # sorted: the same resource always reads the same
    }


def _span(span, process_key):
    if span.end_time is None:
        raise ValueError("span %r (%s) has not ended" % (span.name, _span_id_hex(span.context.span_id)))
    start, end = _micros(span.start_time), _micros(span.end_time)
    return {
        "traceID": _trace_id_hex(span.context.trace_id),
        "spanID": _span_id_hex(span.context.span_id),
        "operationName": span.name,
        "references": _references(span),
        "startTime": start,
        # The difference of the truncated times, so that start + duration is the truncated end;
        # never negative: Jaeger's duration is unsigned.
        "duration": max(0, end - start),
        "tags": _span_tags(span),
        "logs": [_log(event) for event in span.events or ()],
        "processID": process_key,
        "warnings": None,
    }


def _references(span):
    """The parent first (Jaeger looks for the first CHILD_OF), then every link."""
    references = []
    if span.parent is not None:
        references.append(_reference(CHILD_OF, span.context.trace_id, span.parent.span_id))
    for link in span.links or ():
        references.append(_reference(FOLLOWS_FROM, link.context.trace_id, link.context.span_id))
    return references


def _reference(ref_type, trace_id, span_id):
    return {"refType": ref_type, "traceID": _trace_id_hex(trace_id), "spanID": _span_id_hex(span_id)}


def _span_tags(span):
    tags = _tags((span.attributes or {}).items())
    tags.append(_tag(KIND_TAG, _kind_name(span.kind).lower()))
    tags.extend(_status_tags(span.status))
    tags.extend(_scope_tags(getattr(span, "instrumentation_scope", None)))
    return tags


def _kind_name(kind):
    return getattr(kind, "name", None) or "INTERNAL"


def _status_tags(status):
    code = status.status_code.name if status is not None else "UNSET"
    if code == "UNSET":
        return []
    tags = [_tag(STATUS_CODE_TAG, code)]
    if code == "ERROR":
        tags.append(_tag(ERROR_TAG, True))
    if status.description:
        tags.append(_tag(STATUS_DESCRIPTION_TAG, status.description))
    return tags


def _scope_tags(scope):
    if scope is None:
        return []
    pairs = ((SCOPE_NAME_TAG, scope.name), (SCOPE_VERSION_TAG, getattr(scope, "version", None)))
    return [_tag(key, value) for key, value in pairs if value]


def _log(event):
    """An event as a Jaeger log; its name always comes first, as field ``event``."""
    fields = [_tag(EVENT_NAME_FIELD, event.name)] + _tags((event.attributes or {}).items())
    return {"timestamp": _micros(event.timestamp), "fields": fields}


def _tags(pairs):
    return [_tag(key, value) for key, value in pairs]


def _tag(key, value):
    """A Jaeger KeyValue: a typed value JSON, Jaeger and JavaScript all read exactly."""
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value if abs(value) <= JS_MAX_SAFE_INTEGER else str(value)}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value if math.isfinite(value) else _non_finite(value)}
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"key": key, "type": "string", "value": json.dumps(list(value), default=str), ARRAY_MARK: True}
    return {"key": key, "type": "string", "value": str(value)}


def _non_finite(value):
    return NON_FINITE.get(value, "NaN")


def _micros(nanoseconds):
    return nanoseconds // 1000


def _trace_id_hex(trace_id):
    return format(trace_id, "032x")


def _span_id_hex(span_id):
    return format(span_id, "016x")


# -- a document back to spans -------------------------------------------------

TRACE_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{16}")  # Jaeger writes 16 when the high half is 0
SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
DECIMAL = re.compile(r"-?[0-9]+")


def parse(document):
    """The spans of a Jaeger JSON document (as ``json.load`` returns it), in document order.

    Raises ValueError naming where the document is wrong and the wrong value.
    """
    traces = _field(document, "data", list, "the document")
    spans = []
    for index, trace in enumerate(traces):
        spans.extend(_parse_trace(trace, "trace %d" % index))
    return spans


def _parse_trace(trace, where):
    trace_id = _hex_id(_field(trace, "traceID", str, where), TRACE_ID, "traceID", "16 or 32", where)
    where = "trace %s" % trace["traceID"]
    processes = _parse_processes(_field(trace, "processes", dict, where), where)
    spans = _field(trace, "spans", list, where)
    return [_parse_span(span, trace_id, processes, "span %d of %s" % (index, where))
            for index, span in enumerate(spans)]


def _parse_processes(processes, where):
    """{processID: resource attributes}."""
    return {key: _parse_process(process, "process %s of %s" % (key, where)) for key, process in processes.items()}


def _parse_process(process, where):
    resource = {SERVICE_NAME: _field(process, "serviceName", str, where)}
    resource.update(_parse_tags(_optional(process, "tags", list, where), where))
    return resource


def _parse_span(span, trace_id, processes, where):
    span_trace_id = _hex_id(_field(span, "traceID", str, where), TRACE_ID, "traceID", "16 or 32", where)
    if span_trace_id != trace_id:
        raise ValueError("%s: traceID %s is not its trace's" % (where, _show(span["traceID"])))
    parent_span_id, links = _parse_references(_optional(span, "references", list, where), trace_id, where)
    start = _microseconds(span, "startTime", where)
    tags = _parse_tags(_optional(span, "tags", list, where), where)
    attributes = {key: value for key, value in tags if key not in RESERVED_TAGS}
    reserved = {key: value for key, value in tags if key in RESERVED_TAGS}
    status_code, status_description = _status(reserved, where)
    return ParsedSpan(
        trace_id=trace_id,
        span_id=_hex_id(_field(span, "spanID", str, where), SPAN_ID, "spanID", "16", where),
        parent_span_id=parent_span_id,
        name=_field(span, "operationName", str, where),
        kind=_kind(reserved, where),
        start_time_ns=start * 1000,
        end_time_ns=(start + _microseconds(span, "duration", where)) * 1000,
        attributes=attributes,
        resource=_process_of(span, processes, where),
        status_code=status_code,
        status_description=status_description,
        events=[_parse_log(log, "log %d of %s" % (index, where))
                for index, log in enumerate(_optional(span, "logs", list, where))],
        links=links,
        scope_name=reserved.get(SCOPE_NAME_TAG),
        scope_version=reserved.get(SCOPE_VERSION_TAG),
    )


def _parse_references(references, trace_id, where):
    """(parent span id or None, [(trace_id, span_id)]): the first same-trace CHILD_OF is the parent,
    every other reference (a link, or an OpenTracing span's extra parent) a link."""
    parent, links = None, []
    for index, reference in enumerate(references):
        ref_type, ids = _parse_reference(reference, "reference %d of %s" % (index, where))
        if ref_type == CHILD_OF and parent is None and ids[0] == trace_id:
            parent = ids[1]
        else:
            links.append(ids)
    return parent, links


def _parse_reference(reference, where):
    ref_type = _field(reference, "refType", str, where)
    if ref_type not in (CHILD_OF, FOLLOWS_FROM):
        raise ValueError("%s: refType %s is not CHILD_OF or FOLLOWS_FROM" % (where, _show(ref_type)))
    trace_id = _hex_id(_field(reference, "traceID", str, where), TRACE_ID, "traceID", "16 or 32", where)
    span_id = _hex_id(_field(reference, "spanID", str, where), SPAN_ID, "spanID", "16", where)
    return ref_type, (trace_id, span_id)


def _process_of(span, processes, where):
    process_id = _field(span, "processID", str, where)
    if process_id not in processes:
        raise ValueError("%s: processID %s is not in the trace's processes" % (where, _show(process_id)))
    return dict(processes[process_id])


def _kind(reserved, where):
    kind = str(reserved.get(KIND_TAG, "internal")).upper()  # OpenTelemetry's default kind
    if kind not in KINDS:
        raise ValueError("%s: %s %s is not one of %s" % (
            where, KIND_TAG, _show(reserved[KIND_TAG]), ", ".join(k.lower() for k in KINDS)))
    return kind


def _status(reserved, where):
    """(code, description); without otel.status_code, error=true alone means ERROR (older Jaeger clients)."""
    code = reserved.get(STATUS_CODE_TAG)
    if code is None:
        code = "ERROR" if reserved.get(ERROR_TAG) is True else "UNSET"
    if code not in STATUS_CODES:
        raise ValueError("%s: %s %s is not one of %s" % (where, STATUS_CODE_TAG, _show(code), ", ".join(STATUS_CODES)))
    return code, reserved.get(STATUS_DESCRIPTION_TAG)


def _parse_log(log, where):
    """(name, timestamp_ns, attributes): a leading ``event`` field is the event's name."""
    fields = _parse_tags(_optional(log, "fields", list, where), where)
    name = ""
    if fields and fields[0][0] == EVENT_NAME_FIELD and isinstance(fields[0][1], str):
        name, fields = fields[0][1], fields[1:]
    return name, _microseconds(log, "timestamp", where) * 1000, dict(fields)


def _parse_tags(tags, where):
    """[(key, value)] in order; keys may repeat (Jaeger allows it)."""
    return [_parse_tag(tag, where) for tag in tags]


def _parse_tag(tag, where):
    key = _field(tag, "key", str, where)
    value_type = _field(tag, "type", str, "%s, tag %s" % (where, _show(key)))
    decode = VALUE_DECODERS.get(value_type)
    if decode is None:
        raise ValueError("%s: tag %s has type %s, not one of %s" % (
            where, _show(key), _show(value_type), ", ".join(VALUE_DECODERS)))
    value = decode(_present(tag, "value", "%s, tag %s" % (where, _show(key))))
    if value is _INVALID:
        raise ValueError("%s: tag %s value %s is not %s" % (where, _show(key), _show(tag["value"]), value_type))
    if tag.get(ARRAY_MARK) is True:
        value = _array(value, key, where)
    return key, value


def _array(text, key, where):
    try:
        items = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise ValueError("%s: tag %s is marked %s but %s is not a JSON list" % (
            where, _show(key), ARRAY_MARK, _show(text)))
    return tuple(items)


_INVALID = object()  # a decoder's answer for a value that does not fit the type


def _string(value):
    return value if isinstance(value, str) else _INVALID


def _bool(value):
    return value if isinstance(value, bool) else _INVALID


def _int64(value):
    """An int, or (as Jaeger writes integers beyond JavaScript's safe range) its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and DECIMAL.fullmatch(value):
        return int(value)
    return _INVALID


def _float64(value):
    """A number (Go writes 72.0 as 72), or the name of a non-finite float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if value == "NaN" or value in NON_FINITE.values():
        return float(value)
    return _INVALID


def _binary(value):
    if not isinstance(value, str):
        return _INVALID
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return _INVALID


VALUE_DECODERS = {"string": _string, "bool": _bool, "int64": _int64, "float64": _float64, "binary": _binary}


def _hex_id(text, pattern, name, digits, where):
    if not pattern.fullmatch(text):
        raise ValueError("%s: %s %s is not %s hex digits" % (where, name, _show(text), digits))
    return int(text, 16)


def _microseconds(mapping, key, where):
    """A time or duration: Jaeger's unsigned whole microseconds."""
    value = _present(mapping, key, where)
    if type(value) is not int or value < 0:  # not bool, not 1.5, not 1e15 (Go refuses them too)
        raise ValueError("%s: %s %s is not a whole number of microseconds" % (where, key, _show(value)))
    return value


def _field(mapping, key, kind, where):
    """``mapping[key]``, which must be there and be a ``kind``."""
    value = _present(mapping, key, where)
    if not isinstance(value, kind):
        raise ValueError("%s: %s %s is not %s" % (where, key, _show(value), JSON_NAMES[kind]))
    return value


def _present(mapping, key, where):
    if not isinstance(mapping, dict):
        raise ValueError("%s is not a JSON object: %s" % (where, _show(mapping)))
    if key not in mapping:
        raise ValueError("%s: %s is missing" % (where, key))
    return mapping[key]


def _optional(mapping, key, kind, where):
    """``mapping[key]`` when present and not null (Jaeger omits empty lists), else an empty ``kind``."""
    if isinstance(mapping, dict) and mapping.get(key) is None:
        return kind()
    return _field(mapping, key, kind, where)


JSON_NAMES = {str: "a string", list: "a list", dict: "an object"}


def _show(value, limit=60):
    """``value`` as JSON, cut short: what the message names as wrong."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
