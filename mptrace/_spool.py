"""Spool files: how spans travel from child processes to the root.

The root creates a private directory (mode 0700). Every traced child appends
its records to a file of its own there, one ``os.write`` per record, so a
record is on disk the moment the call returns: a child killed a moment later
loses nothing, and no thread or socket is needed anywhere. The root reads the
files when it observes a child's exit, on ``flush()`` and at exit.

A record is one line: the body's checksum in 8 hex digits, a space, and a
JSON object. The root parses JSON only (never pickle), checks the checksum and
the shape of every record, and skips (and counts) anything that fails, so a
truncated write or garbage bytes cannot disturb other spans.

This module imports nothing beyond the standard library: spawn children load it
on their start-up path.
"""

import errno
import os

from mptrace._blake import blake2b

SUFFIX = ".spool"
VERSION = 1

# Record types (the "t" field).
HEADER = "proc"  # first record of a file: the writer's pid and resource
START = "start"  # a span began (lets the root end it if its process dies)
END = "end"  # a span ended, with everything it recorded (a compact END: only what its START lacks)
EXIT = "exit"  # this process observed the exit of one of its own children


# The json package's C encoder, built once and taken from _json itself: a spawn child need not import
# the json package (its decoder and scanner too) to write records. JSONEncoder.encode would also build
# it per call (a third of a small record's cost). Without cycle checks: records hold attribute values
# (scalars and flat lists), and a cycle would only raise RecursionError, which falls back to the
# json package's checked encoder (see _checked_encoder).
try:
    from _json import encode_basestring_ascii as _quote, make_encoder as _c_make_encoder
except ImportError:  # an interpreter without the C accelerator
    _c_make_encoder = None
_C_ENCODE = (_c_make_encoder(None, repr, _quote, None, ":", ",", False, False, True)
             if _c_make_encoder is not None else None)
_encoder = []  # the checked encoder, once one was needed


def _checked_encoder():
    if not _encoder:
        import json

        _encoder.append(json.JSONEncoder(separators=(",", ":"), default=repr))
    return _encoder[0]


def encode_body(record):
    """One record (a dict) as JSON bytes."""
    return encode_value(record)


def encode_value(value):
    """Any JSON-able value (non-JSON values as their repr) as JSON bytes."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(value, 0)).encode("utf-8")
        except (RecursionError, ValueError):
            pass
    return _checked_encoder().encode(value).encode("utf-8")


CHECKSUM_BYTES = 4  # 8 hex digits


def checksum(body):
    """A record body's checksum, 8 hex digits as bytes: the first 4 bytes of its BLAKE2b.

    Not zlib's CRC-32: a spawn child loads _blake2 for its keyed digests anyway, and importing zlib cost it
    about 0.25 ms more. Either catches a truncated or garbled line; this costs some 0.5 us more a record."""
    return blake2b(body, digest_size=CHECKSUM_BYTES).hexdigest().encode()


def frame(body):
    """A record body as a checksum-prefixed line. The checksum is checksum()'s, computed inline: a fork child
    writes its END after its target, where each function it runs for the first time costs it page faults."""
    return b"%s %s\n" % (blake2b(body, digest_size=CHECKSUM_BYTES).hexdigest().encode(), body)


def encode(record):
    """One record as a checksum-prefixed JSON line."""
    return frame(encode_body(record))


# Integers that stand for values only the child knows, in records a parent
# encodes before fork; ``template`` turns them into %d fields.
PLACEHOLDERS = (-7_000_000_000_001, -7_000_000_000_002, -7_000_000_000_003)


def template(record):
    """``record`` encoded, with each PLACEHOLDER turned into a ``%d`` field.

    Lets a fork child write a record with bytes formatting instead of json:
    every module a fork child touches for the first time costs it page faults.
    """
    return template_of(encode_body(record))


def template_of(body):
    """A record body with each PLACEHOLDER turned into a ``%d`` field (see ``template``)."""
    body = body.replace(b"%", b"%%")
    for placeholder in _PLACEHOLDER_FIELDS:
        body = body.replace(placeholder, b"%d")
    return body


_PLACEHOLDER_FIELDS = tuple(b"%d" % placeholder for placeholder in PLACEHOLDERS)


# The header template of the last resource a writer was made for, cut where its per-process values go:
# (resource, per-process keys, those keys in the order they appear, the pieces around them). A parent
# makes one writer per fork child, all for the same resource: encoding it once, not per child, spares the
# parent's start() a JSON encoding and the pages it writes.
_last_header = [None]


def header_template(resource, per_process):
    """The header template (fields: pid, process.pid, process.parent_pid) of a writer whose resource is
    ``resource`` with the string values of ``per_process`` set in it."""
    keys = tuple(per_process)
    cached = _last_header[0]
    if cached is None or cached[0] is not resource or cached[1] != keys:
        cached = _last_header[0] = (resource, keys) + _cut_header(resource, keys)
    order, pieces = cached[2], cached[3]
    parts = [pieces[0]]
    for key, piece in zip(order, pieces[1:]):
        parts.append(encode_value(per_process[key]).replace(b"%", b"%%"))
        parts.append(piece)
    return b"".join(parts)


def _cut_header(resource, keys):
    """(``keys`` in the order their values appear, the template's pieces around them)."""
    values = {key: "mptrace: per-process value %d" % i for i, key in enumerate(keys)}
    marks = {key: encode_value(value) for key, value in values.items()}
    pid, parent_pid = PLACEHOLDERS[:2]
    attributes = dict(resource, **values)
    attributes.update({"process.pid": pid, "process.parent_pid": parent_pid})
    body = template({"t": HEADER, "v": VERSION, "pid": pid, "res": attributes})
    order = sorted(keys, key=lambda key: body.index(marks[key]))
    pieces, rest = [], body
    for key in order:
        before, _, rest = rest.partition(marks[key])
        pieces.append(before)
    pieces.append(rest)
    return order, pieces


def decode(line):
    """The record in ``line`` (without its newline), or None if it is corrupt."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if line[:8] != checksum(body):
            return None
        record = _json_loads(body)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


_scanner = []  # the json package's scanner (its C one where there is one), once the reading side needed it


def _json_loads(body):
    """``json.loads(body)``. A body as writers make it (UTF-8 JSON, nothing around it) is decoded by the
    json package's scanner in one call: json.loads runs four Python functions and a regular expression
    around that call for every record, and each object they touch is a page the root writes again after
    every fork. Anything else (a BOM, another encoding, whitespace, an error) goes through json.loads
    itself, so what is accepted and what it decodes to are json.loads's."""
    if not _scanner:
        import json  # the reading side (the root, tests) only: writers need no json package

        _scanner.append(json.JSONDecoder().scan_once)
    try:
        text = body.decode("utf-8", "surrogatepass")
        value, end = _scanner[0](text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):  # ValueError: UnicodeDecodeError, JSONDecodeError
        pass
    import json

    return json.loads(body)


def file_name(run_span_id):
    """The spool file of the child whose mp.process.run span has this id."""
    return "%016x%s" % (run_span_id, SUFFIX)


# A writer that cannot write says so in the name of an empty file beside its
# spool file: "<spool file>.lost-<errno name>-<spans lost>". Creating an empty
# file and renaming it need no data blocks, so this works on a full disk and
# under RLIMIT_FSIZE, where the spool file itself can grow no more.
LOST_MARK = ".lost-"
_END_PREFIX = b'{"t":"end"'


def lost_marker(spool_name, reason, count):
    return "%s%s%s-%d" % (spool_name, LOST_MARK, reason, count)


def parse_lost_marker(name):
    """(spool file name, reason, spans lost) of a marker file name, or None."""
    spool_name, mark, rest = name.partition(LOST_MARK)
    reason, _, count = rest.rpartition("-")
    if not mark or not spool_name.endswith(SUFFIX) or not reason or not count.isdigit():
        return None
    return spool_name, reason, int(count)


_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class SpoolWriter:
    """Appends records to this process's spool file.

    The file is opened on the first write. A process forked from this one
    outside multiprocessing (``os.fork``) inherits the writer; it notices the
    new pid and opens a file of its own rather than writing into ours.
    """

    def __init__(self, directory, name, resource_attributes, per_process=None, header=None):
        """``per_process``: string values that replace or add to ``resource_attributes`` for this writer;
        ``header``: the header template they make, if a parent made it already (see header_template)."""
        self.directory = directory
        self.name = name
        # Joined here: a fork child's writer is built by its parent. Not by os.path.join, Python code that a
        # parent starting fork children would run at every start (the directory is mptrace's own, absolute).
        self._path = directory + name if directory.endswith(os.sep) else directory + os.sep + name
        self._fd = None
        self._pid = None
        self.broken = False
        self.lost = 0  # spans whose END this process could not write
        self._marker = None  # the name of this writer's lost-span marker file, once it has one
        self._failure = None  # the errno name of the write that broke it
        # Fields: pid, process.pid, process.parent_pid.
        self.header = header if header is not None else header_template(resource_attributes, per_process or {})

    def write(self, record):
        self.write_body(encode_body(record))

    def write_body(self, body):
        """Append one record body (see ``encode_body`` and ``template``)."""
        if self.broken and self._pid == os.getpid():
            self._count_lost(body)
            return
        try:
            # A new file's header goes out with its first record: one write (a system call in a child that
            # has just begun, where each is slow) rather than two.
            data = self._open() + frame(body) if self._pid != os.getpid() else frame(body)
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as error:
            # The spool directory is gone, the disk is full, the file may grow no
            # more: the program runs on unaffected, and the root learns what was lost.
            self.broken, self._pid = True, os.getpid()
            self._failure = errno.errorcode.get(error.errno, "OSError")
            self._count_lost(body)

    def _count_lost(self, body):
        """Count a span whose END could not be written, in the marker's name (best effort)."""
        if not body.startswith(_END_PREFIX):
            return
        self.lost += 1
        marker = lost_marker(self.name, self._failure, self.lost)
        try:
            if self._marker is None:
                os.close(os.open(os.path.join(self.directory, marker), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            else:
                os.rename(os.path.join(self.directory, self._marker), os.path.join(self.directory, marker))
            self._marker = marker
        except OSError:
            pass  # the directory itself is gone: the root sees that on its own

    def _open(self):
        """Open this process's file; returns its header record, for the caller to write."""
        pid = os.getpid()
        if self._pid is not None:  # inherited through a plain os.fork()
            self.name = "pid%d-%s%s" % (pid, os.urandom(4).hex(), SUFFIX)
            self._path = os.path.join(self.directory, self.name)
            self.broken, self.lost, self._marker = False, 0, None
        self._fd = os.open(self._path, _OPEN_FLAGS, 0o600)
        self._pid = pid
        return frame(self.header % (pid, pid, os.getppid()))
