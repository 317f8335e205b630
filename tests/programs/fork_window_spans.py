"""Spans ended while a fork has the batch processor's queue swapped out (see mptrace/_forkhold.py).

    python -m tests.programs.fork_window_spans
Registers at-fork hooks before install(), so that they run inside the window
mptrace's own hooks open and close: the "before" one after mptrace has given
the processor its detour, the "after" one before mptrace gives the queue back.
Each ends a span there; after the fork the program also appends a span to a
detour it kept, as a thread that read the detour and wrote late would.
Prints "<spans ended> <spans exported> <run spans exported> <detours seen>".
"""

import multiprocessing
import os
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace

FORKS = 10


def do_nothing():
    pass


def main():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=600000)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("window")
    ended = []
    detours = []

    def in_window(name):
        span = tracer.start_span(name)
        span.end()
        ended.append(span)

    def before():
        detours.append(processor._batch_processor._queue)
        in_window("before-fork")

    # Registered before install(): "before" hooks run in reverse order (this one after mptrace's),
    # "after" hooks in order (this one before mptrace's).
    os.register_at_fork(before=before, after_in_parent=lambda: in_window("after-fork"))
    tracer.start_span("queued").end()  # so that the queue is not empty at the first fork
    ended.append(None)
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context("fork")
    for _ in range(FORKS):
        process = context.Process(target=do_nothing)
        process.start()
        process.join(60)
        if process.exitcode != 0:
            sys.exit("a child exited with %s" % process.exitcode)
    late = TracerProvider().get_tracer("elsewhere").start_span("late")  # ended where no processor sees it
    late.end()
    detours[-1].appendleft(late)  # a late writer holding the last detour: forwarded to the queue
    ended.append(late)
    queue = processor._batch_processor._queue
    swapped = sum(1 for detour in detours if detour is not queue)
    if not mptrace.flush(timeout=60):
        sys.exit("flush() timed out")
    names = [span.name for span in exporter.get_finished_spans()]
    window = sum(1 for name in names if name in ("before-fork", "after-fork", "queued", "late"))
    print(len(ended), window, names.count("mp.process.run"), swapped)


if __name__ == "__main__":
    main()
