"""A few bytes after a pickle: the sender's trace context, for the receiver.

``pickle.loads`` stops at the pickle's STOP opcode and ignores whatever
follows it. So bytes appended after a message's pickle reach a traced
receiver, while every receiver, traced or not, unpickles exactly the object
that was sent. mptrace appends a fixed-size trailer:

* to Pool and executor task messages: the caller's context, so the worker's
  span nests under the caller's;
* to notable queue and connection messages: the producer's ``mp.pickle`` span,
  so the consumer's ``mp.unpickle`` span can link back to it.

Layout (34 bytes): trace id (16) | span id (8) | flags (1) | kind (1) | MAGIC (8).
A pickle always ends with STOP (``b"."``), so only a message whose last byte
is something else can carry a trailer, and the magic confirms it. The
trailer is read as fixed-width integers and is never unpickled.

Standard library only: spawn children read trailers on their task path.
"""

import struct

MAGIC = b"\x00mptr\x01tr"  # ends with a byte that is not STOP
STOP = 0x2E  # b"."
_LAYOUT = struct.Struct(">QQQBc8s")
SIZE = _LAYOUT.size

# Kinds.
TASK = b"T"  # a task: the worker's span nests under this span
LINK = b"L"  # a notable message: the consumer links to this span

# Flags.
SAMPLED = 1
TASK_SPAN = 2  # the worker records an mp.task.run span (else it only adopts the context)
ITEM_SPANS = 4  # ... and one mp.task.item span per item of a chunk


def encode(kind, trace_id, span_id, flags):
    return _LAYOUT.pack(trace_id >> 64, trace_id & 0xFFFFFFFFFFFFFFFF, span_id, flags, kind, MAGIC)


def read(data):
    """(kind, trace_id, span_id, flags) from the end of ``data``, or None if it has no trailer."""
    if len(data) < SIZE or data[-1] == STOP:
        return None
    high, low, span_id, flags, kind, magic = _LAYOUT.unpack_from(data, len(data) - SIZE)
    if magic != MAGIC:
        return None
    return kind, (high << 64) | low, span_id, flags
