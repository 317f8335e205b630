"""Pickling on multiprocessing's channels, traced vs untraced.

    python benchmarks/pickling.py [--rounds 7]

Two loops, each run in alternating untraced and traced blocks in one process:
a tight ``ForkingPickler.dumps`` of a small message, and a ``Queue`` round
trip (put in this process, get back from a fork child that echoes it). Prints
medians per operation and the traced/untraced ratio.
"""

import argparse
import multiprocessing
import statistics
import time
from multiprocessing.reduction import ForkingPickler

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import mptrace

MESSAGE = {"task": 42, "payload": [1, 2, 3], "name": "small"}


def dumps_loop(count):
    began = time.perf_counter()
    for _ in range(count):
        ForkingPickler.dumps(MESSAGE)
    return (time.perf_counter() - began) / count


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
    untraced, traced = [], []
    for _ in range(rounds):
        untraced.append(loop(count))
        mptrace.install(tracer_provider=TracerProvider(resource=Resource({"service.name": "bench"})))
        traced.append(loop(count))
        mptrace.uninstall()
    return statistics.median(untraced), statistics.median(traced)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    print("%-22s %14s %14s %7s" % ("loop", "untraced us/op", "traced us/op", "ratio"))
    for name, loop, count in (("ForkingPickler.dumps", dumps_loop, 20000), ("Queue round trip", queue_round_trips, 2000)):
        untraced, traced = measure(loop, count, options.rounds)
        print("%-22s %14.2f %14.2f %6.2fx" % (name, untraced * 1e6, traced * 1e6, traced / untraced))


if __name__ == "__main__":
    main()
