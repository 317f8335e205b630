"""Pickling on multiprocessing's channels, traced vs untraced.

    python benchmarks/pickling.py [--rounds 9]

Each loop runs in alternating untraced and traced blocks in one process
(mptrace is installed and uninstalled between blocks), and the medians of the
blocks are compared. The message is small, so no span is made: this measures
the per-message cost of counting.

* ``dumps`` / ``loads``: a tight loop over the pickler multiprocessing's
  connections use (``multiprocessing.connection._ForkingPickler``), with no
  span open, and again inside a recording span (its totals are kept per span);
* ``Pipe send+recv``: both ends in this process;
* ``Queue round trip``: put here, a fork child echoes it back.

Target (issue 3): the hook adds well under 1 us to a small dumps.
"""

import argparse
import multiprocessing
import statistics
import time
from multiprocessing import connection

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import mptrace

MESSAGE = {"task": 42, "payload": [1, 2, 3], "name": "small"}
PICKLED = bytes(multiprocessing.reduction.ForkingPickler.dumps(MESSAGE))

_provider = TracerProvider(resource=Resource({"service.name": "bench"}))
_tracer = _provider.get_tracer("bench")


def dumps_loop(count):
    dumps = connection._ForkingPickler.dumps  # looked up per block: mptrace replaces the name
    began = time.perf_counter()
    for _ in range(count):
        dumps(MESSAGE)
    return (time.perf_counter() - began) / count


def loads_loop(count):
    loads = connection._ForkingPickler.loads
    began = time.perf_counter()
    for _ in range(count):
        loads(PICKLED)
    return (time.perf_counter() - began) / count


def in_a_span(loop):
    def run(count):
        with _tracer.start_as_current_span("enclosing"):
            return loop(count)

    return run


def pipe_loop(count):
    reader, writer = multiprocessing.Pipe(duplex=False)
    began = time.perf_counter()
    for _ in range(count):
        writer.send(MESSAGE)
        reader.recv()
    elapsed = (time.perf_counter() - began) / count
    reader.close()
    writer.close()
    return elapsed


def echo(inbox, outbox):
    for message in iter(inbox.get, None):
        outbox.put(message)


def queue_round_trips(count):
    context = multiprocessing.get_context("fork")
    inbox, outbox = context.Queue(), context.Queue()
    child = context.Process(target=echo, args=(inbox, outbox))
    child.start()
    began = time.perf_counter()
    for _ in range(count):
        inbox.put(MESSAGE)
        outbox.get()
    elapsed = (time.perf_counter() - began) / count
    inbox.put(None)
    child.join()
    return elapsed


def measure(loop, count, rounds):
    loop(count // 10)  # warm-up
    untraced, traced = [], []
    for _ in range(rounds):
        untraced.append(loop(count))
        mptrace.install(tracer_provider=_provider)
        traced.append(loop(count))
        mptrace.uninstall()
    return statistics.median(untraced), statistics.median(traced)


LOOPS = (
    ("dumps, no span open", dumps_loop, 100000),
    ("dumps, in a span", in_a_span(dumps_loop), 100000),
    ("loads, no span open", loads_loop, 100000),
    ("loads, in a span", in_a_span(loads_loop), 100000),
    ("Pipe send+recv", pipe_loop, 20000),
    ("Queue round trip", queue_round_trips, 2000),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()
    print("%-22s %14s %14s %10s %7s" % ("loop (median)", "untraced us/op", "traced us/op", "added us", "ratio"))
    for name, loop, count in LOOPS:
        untraced, traced = measure(loop, count, options.rounds)
        print("%-22s %14.2f %14.2f %10.2f %6.2fx" % (
            name, untraced * 1e6, traced * 1e6, (traced - untraced) * 1e6, traced / untraced))


if __name__ == "__main__":
    main()
