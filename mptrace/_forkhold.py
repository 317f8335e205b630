"""Spans waiting in the root's batch processors, kept out of every fork child.

A ``BatchSpanProcessor`` clears its queue in every fork child (its at-fork
handler), so that the child does not export the parent's spans. Clearing
drops a reference from each queued span, and freeing one writes to every page
that holds it, its attributes, events and context: in a fork child each such
page is a copy-on-write fault, some 2.5-3 us on a virtual machine
(``benchmarks/fault_cost.py``). mptrace's own
spans (two per child) sit in that queue until the next export, which comes
after 512 spans or 5 seconds: a fork child paid for up to 512 queued spans.

So, just before each fork of the root, every batch processor of the provider
mptrace reports to gets an empty queue of its own (a ``_Detour``) for the
instant of the fork, and its own queue back right after, in the parent: the
child's processor clears the empty one and never touches a queued span, and
the parent writes nothing per span either.

Nothing is lost in the parent meanwhile:

* the processor's export lock is held for that instant (taken only if free,
  else that fork is handled as below), so its worker never pops from the
  detour what it counted in the queue;
* a span another thread ends meanwhile lands in the detour, and is moved back
  right after the fork; a thread that read the detour from the processor and
  appends to it later is forwarded to the queue.

A processor without that layout (an SDK before the shared ``BatchProcessor``,
about 1.3x) or whose export lock is taken falls back to holding: the root
takes one more reference to each queued span (``list(queue)``, one C call no
other thread can interleave with), so the child's ``clear()`` frees nothing,
and drops it right after the fork.
"""

import collections
import os
import threading

from mptrace import _log
from mptrace._state import state

_registered = False
# Per fork of the root (forks from two threads at once: the second one holds instead):
# [(batch processor, its queue, the detour it had meanwhile)], and the lists of spans held.
_swapped = []
_held = []
_fork_lock = threading.Lock()
_forking_thread = None  # the thread that holds _fork_lock: only its after-fork hook gives the queues back
_forking_pid = None  # and the process it forks from: a fork child inherits both, and must not act on them
_get_ident, _getpid = threading.get_ident, os.getpid


class _Detour(collections.deque):
    """A batch processor's queue for the instant of a fork: empty in the child; afterwards, in the parent,
    what a late writer appends goes to the processor's own queue."""

    __slots__ = ("forward",)

    def __init__(self, maxlen):
        super().__init__((), maxlen)
        self.forward = None

    def appendleft(self, item):
        forward = self.forward
        if forward is None:
            super().appendleft(item)
        else:
            forward.appendleft(item)


def register():
    """Once per process: keep the queued spans out of every fork this process makes."""
    global _registered
    if _registered or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)
    _registered = True


def _before_fork():
    global _forking_thread, _forking_pid
    if not state.is_root() or not _fork_lock.acquire(False):
        return
    _forking_thread, _forking_pid = _get_ident(), _getpid()
    try:
        for batch, queue in _queues(state.root.provider):
            if not _detour(batch, queue):
                _held.append(list(queue))
    except Exception:  # a processor mid-change, another SDK's layout: fork as without mptrace
        _log.internal_error("keeping the queued spans out of a fork")
    # Released after the fork, in the parent (the child never uses it: only the root swaps queues).


def _detour(batch, queue):
    """Give ``batch`` an empty queue for the fork; False if it cannot be done safely."""
    export_lock = getattr(batch, "_export_lock", None)
    if getattr(batch, "_queue", None) is not queue or not hasattr(export_lock, "release"):
        return False
    if not export_lock.acquire(False):  # the worker is exporting: it may be between counting and popping
        return False
    detour = _Detour(queue.maxlen)
    batch._queue = detour
    _swapped.append((batch, queue, detour))
    return True


def _after_fork_in_parent():
    # Right after the fork, each page this writes is copied (the child shares it): no Python call that is not
    # needed. The role was checked before the fork; a process that did not swap has another pid (a fork
    # child that forks in turn inherited the values) or its thread another ident.
    global _forking_thread
    if _forking_thread != _get_ident() or _forking_pid != _getpid():
        return
    _forking_thread = None
    try:
        while _swapped:
            batch, queue, detour = _swapped.pop()
            batch._queue = queue
            detour.forward = queue
            if detour:  # ended meanwhile by another thread: newer than all in the queue
                queue.extendleft(reversed(detour))
                detour.clear()
            batch._export_lock.release()
        if _held:
            del _held[:]
    except Exception:
        _log.internal_error("giving the batch processors their queues back after a fork")
    finally:
        _fork_lock.release()


def _queues(provider):
    """(batch processor, its queue) of each batch processor of ``provider`` with spans queued."""
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        batch = getattr(processor, "_batch_processor", processor)
        queue = getattr(batch, "_queue", None)
        if queue is None:
            queue = getattr(batch, "queue", None)
        if isinstance(queue, collections.deque) and queue:
            yield batch, queue
