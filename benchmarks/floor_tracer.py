"""The floor of mptrace's fork design: the least a tracer built like mptrace does per fork child.

A measuring stick, not a tracer. ``process_start.py --floor`` runs it as an
arm of its own, so that each run shows how far mptrace is from the least its
design must do; nothing in mptrace uses it, and no program should.

The design: the parent opens a span per child, the child writes its own span
to a spool file, and the parent reads the file after the child's exit and
hands both spans to its provider's span processors. Per fork child the floor
does only this:

* in the parent, at ``BaseProcess.start()``: three random ids (trace,
  ``mp.process``, ``mp.process.run``), the start time, the spool file's path
  and the child's START record, handed to the child through a thread-local
  that the fork copies (nothing is pickled), then kept under ``id(popen)``;
* in the child, at ``BaseProcess._bootstrap()``: one ``open`` of its spool
  file, one ``write`` of START (pid, time) before ``run()`` and one of END
  (time) after it. The descriptor is left for the exit to close;
* in the parent, the exit observed where mptrace observes it, in
  ``popen_fork.Popen.__setattr__`` (``poll()`` storing ``returncode``): the
  child's entry moves to a queue of exits, with the time;
* in the parent, at every fork: each batch processor with spans queued gets
  an empty queue for the instant of the fork, and its own back right after,
  in the parent (below);
* in the parent, a collection at the next ``start()`` at least 100 ms after
  the last one (or when the caller calls the function ``install`` returns):
  per exited child, read its file, remove it, and hand two ``ReadableSpan``
  objects (``mp.process`` with the name and exit code, ``mp.process.run``
  with the start method and pid) to the provider's processors.

What mptrace does and the floor leaves out (each is work per child that a
real tracer of this design may or may not need; the floor needs none):

* module state: no record of the watched modules' state at start (the
  ``mp.state.*`` attributes), nor of the arguments' classes;
* descriptors: no record of the descriptors the child inherits
  (``mp.fork.fds``), nor of those a sibling shares;
* threads: no record of the parent's other threads at the fork;
* random generators: no look for the generators the child inherits, no
  hash of them in the child;
* context propagation: ``mp.process`` is the root of a trace of its own (the
  caller's current span is not read); in the child the run span is not the
  current span, and a span the child makes goes to the provider it inherited,
  outside the trace; grandchildren are not traced (their starts go through
  the floor too, but nobody collects them);
* sampler: every child is sampled; the provider's sampler is never asked;
* attributes and spans: two attributes a span, no events, no status, no
  ``mp.process.name`` changes, no exit signal, no span ended for a child
  that was killed (its END is missing and the collection fails);
* error handling: nothing is caught. A failing ``start()``, a missing or
  short spool file or a processor that raises breaks the program, which
  mptrace must never do;
* threads racing: an exit observed by another thread before ``start()``
  has recorded the child is missed; two threads forking at once may let one
  child copy a queue (a cost, not a loss: the child clears its copy);
* collection at exit: children collected only at a ``start()`` or when
  asked; nothing is ended at interpreter exit; the spool directory is the
  caller's to make and remove; no bound on a hanging processor;
* spawn and forkserver: fork only. The child's half comes through the
  fork's copy of the parent's memory; a spawn or forkserver child would get
  nothing and its parent would fail to read the file.

Queued spans and fork children: a ``BatchSpanProcessor`` clears its queue in
every fork child (its at-fork handler), and freeing a queued span writes to
every page that holds it, its attributes and context, each a copy-on-write
fault in the child. Up to 512 spans (two per child) wait in that queue until
the next export. Like mptrace (``mptrace/_forkhold.py``), the floor
gives each batch processor that has spans queued an empty queue for the
instant of the fork, its export lock held so that its worker cannot pop
meanwhile (if the worker holds it, that fork is left alone: the child pays),
and gives the queue back right after, in the parent. Simpler than mptrace's:
only the layout of recent SDKs (a shared ``BatchProcessor`` with ``_queue``
and ``_export_lock``; an older SDK's processor is left alone, its children
pay), one empty queue per processor made at ``install`` (a
processor added later is left alone), and a span another thread appends to
that queue after it was given back waits there until a later fork's swap
moves it back (mptrace forwards it at once). Measured on 3.11 (medians of 9
alternating runs of 200 fork start+joins of an empty target after 20
warm-ups, each in a fresh interpreter, the provider's BatchSpanProcessor
exporting nowhere), the child's faults per start are 639 with the swap and
673 without it (provider only: 616), the parent's 181 and 179 (provider only:
147). Without the swap the floor would pay some 34 faults per child (about
0.1 ms) that mptrace does not, and look that much closer to mptrace.
"""

import collections
import json
import os
import random
import threading
import time

import multiprocessing.popen_fork as popen_fork
import multiprocessing.process as mp_process

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

COLLECT_INTERVAL = 0.1  # seconds, as mptrace's collector
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("floor", "0")
# A child's spool records, one JSON line each. START is formatted twice: the run span's id in the parent
# ("%%d" becomes "%d"), then the pid and time in the child.
_START = b'{"t":"start","sid":"%016x","pid":%%d,"st":%%d}\n'
_END = b'{"t":"end","et":%d,"code":0}\n'


def install(provider, directory):
    """Trace fork children of this process into ``provider`` the floor's way; return ``collect()``, which
    hands every exited child's two spans to ``provider``'s span processors (call it before flushing).

    ``directory``: an existing, private directory for the spool files (str or bytes). Once per process.
    """
    directory = os.fsencode(directory)
    emit = provider._active_span_processor.on_end
    resource = provider.resource
    launching = threading.local()  # the launch of the start() this thread is in; the fork child inherits it
    children = {}  # id(popen) -> (trace id, mp.process id, run span id, start time, spool path, name)
    exits = collections.deque()  # (child, exit code, time) observed, not collected yet
    last_collect = [0.0]
    original_start = mp_process.BaseProcess.start
    original_bootstrap = mp_process.BaseProcess._bootstrap
    original_setattr = popen_fork.Popen.__setattr__
    getrandbits, time_ns, monotonic = random.getrandbits, time.time_ns, time.monotonic

    def start(self):
        run_span_id = getrandbits(64)
        launch = (self, getrandbits(128), getrandbits(64), run_span_id, time_ns(),
                  b"%s/%016x" % (directory, run_span_id), _START % run_span_id)
        launching.launch = launch
        try:
            original_start(self)
        finally:
            launching.launch = None
        children[id(self._popen)] = launch[1:6] + (self._name,)
        if exits and monotonic() - last_collect[0] >= COLLECT_INTERVAL:
            collect()

    def _bootstrap(self, *args, **kwargs):  # in the child, from the fork
        launch = getattr(launching, "launch", None)
        if launch is None or launch[0] is not self:  # not a start() of the floor's (spawn, forkserver)
            return original_bootstrap(self, *args, **kwargs)
        spool = os.open(launch[5], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(spool, launch[6] % (os.getpid(), time_ns()))
        code = original_bootstrap(self, *args, **kwargs)
        os.write(spool, _END % time_ns())
        return code

    def __setattr__(self, name, value):
        original_setattr(self, name, value)
        if name == "returncode" and value is not None:
            child = children.pop(id(self), None)
            if child is not None:
                exits.append((child, value, time_ns()))

    def collect():
        last_collect[0] = monotonic()
        while exits:
            (trace_id, process_span_id, run_span_id, began, path, name), code, ended = exits.popleft()
            with open(path, "rb") as spool:
                records = [json.loads(line) for line in spool]
            os.unlink(path)
            process = SpanContext(trace_id, process_span_id, False, _SAMPLED)
            emit(ReadableSpan(name="mp.process", context=process, resource=resource, kind=SpanKind.CLIENT,
                              attributes={"mp.process.name": name, "mp.exitcode": code}, start_time=began,
                              end_time=ended, instrumentation_scope=_SCOPE))
            emit(ReadableSpan(name="mp.process.run", context=SpanContext(trace_id, run_span_id, False, _SAMPLED),
                              parent=process, resource=resource, kind=SpanKind.SERVER,
                              attributes={"mp.start_method": "fork", "process.pid": records[0]["pid"]},
                              start_time=records[0]["st"], end_time=records[-1]["et"],
                              instrumentation_scope=_SCOPE))

    _keep_queues_out_of_forks(provider)
    mp_process.BaseProcess.start = start
    mp_process.BaseProcess._bootstrap = _bootstrap
    popen_fork.Popen.__setattr__ = __setattr__
    return collect


def _batch_processors(provider):
    """The shared ``BatchProcessor`` of each ``BatchSpanProcessor`` of ``provider`` (recent SDKs' layout)."""
    found = []
    for processor in provider._active_span_processor._span_processors:
        batch = getattr(processor, "_batch_processor", None)
        if isinstance(getattr(batch, "_queue", None), collections.deque) and hasattr(batch, "_export_lock"):
            found.append(batch)
    return found


def _keep_queues_out_of_forks(provider):
    """At every fork, give each batch processor with spans queued an empty queue for the instant of the fork
    (its export lock held: its worker pops only under it), and its queue back right after, in the parent."""
    empty = [(batch, collections.deque((), batch._queue.maxlen)) for batch in _batch_processors(provider)]
    if not empty or not hasattr(os, "register_at_fork"):
        return
    swapped = []

    def before():
        for batch, detour in empty:
            queue = batch._queue
            # (a fork child's processor keeps the empty queue: if that child forks, there is nothing to swap)
            if queue and queue is not detour and batch._export_lock.acquire(False):
                batch._queue = detour
                swapped.append((batch, queue, detour))

    def after_in_parent():
        while swapped:
            batch, queue, detour = swapped.pop()
            batch._queue = queue
            if detour:  # spans another thread ended during the fork: newer than all queued
                queue.extendleft(reversed(detour))  # the worker pops from the right: oldest first
                detour.clear()
            batch._export_lock.release()

    # The child keeps the empty queue, which the processor's own at-fork handler clears; its lock is new.
    os.register_at_fork(before=before, after_in_parent=after_in_parent)
