"""Spans waiting in the root's batch processors, kept alive across a fork.

A ``BatchSpanProcessor`` clears its queue in every fork child (its at-fork
handler), so that the child does not export the parent's spans. Clearing
frees each queued span, and freeing writes to every page that holds a span,
its attributes, events and context: in a fork child each such page is a
copy-on-write fault. mptrace's own spans (two per child) sit in that queue
until the next export, so without this every fork child paid for freeing them:
some 260 page faults, 0.8 ms, with 26 spans queued, growing with the queue.

Just before each fork the root takes one more reference to every queued span
(``list(queue)``, one C call that no other thread can interleave with). In the
child the processor's ``clear()`` then only drops a reference from each span,
which frees nothing; the child exits through ``os._exit`` without ever freeing
the list. The parent drops its list right after the fork.

Only the batch processors of the provider mptrace reports to are looked at,
through their queue attribute (``_batch_processor._queue`` in SDK 1.3x and
later, ``queue`` before); a processor without one is left alone.
"""

import collections
import os

from mptrace import _log
from mptrace._state import state

_registered = False
# What the last fork's parent held: in a fork child, kept for its whole life.
_held = []


def register():
    """Once per process: hold the queued spans around every fork this process makes."""
    global _registered
    if _registered or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)
    _registered = True


def _before_fork():
    if state.is_root():
        try:
            _held[:] = [list(queue) for queue in _queues(state.root.provider)]
        except Exception:  # a processor mid-change, another SDK's layout: fork as without mptrace
            _log.internal_error("holding the queued spans across a fork")


def _after_fork_in_parent():
    del _held[:]


def _queues(provider):
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        batch = getattr(processor, "_batch_processor", processor)
        queue = getattr(batch, "_queue", None)
        if queue is None:
            queue = getattr(batch, "queue", None)
        if isinstance(queue, collections.deque) and queue:
            yield queue
