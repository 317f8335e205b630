"""Process start+join, traced vs untraced, for each start method.

Runs both side by side in one process: blocks of untraced and traced starts
alternate (mptrace is installed and uninstalled between blocks), so machine
drift hits both alike. Prints the median per start and the traced/untraced
ratio of the medians.

    python benchmarks/process_start.py [--rounds 7] [--per-round 5]

Targets (issue 2): fork and forkserver <= 1.25x, spawn <= 1.15x.
"""

import argparse
import multiprocessing
import statistics
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace

TARGETS = {"fork": 1.25, "spawn": 1.15, "forkserver": 1.25}


def noop():
    pass


def time_starts(context, count):
    times = []
    for _ in range(count):
        began = time.perf_counter()
        process = context.Process(target=noop)
        process.start()
        process.join()
        times.append(time.perf_counter() - began)
    return times


def measure(method, rounds, per_round):
    context = multiprocessing.get_context(method)
    time_starts(context, 2)  # warm-up: start the fork server, fill caches
    untraced, traced = [], []
    for _ in range(rounds):
        untraced += time_starts(context, per_round)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider)
        traced += time_starts(context, per_round)
        mptrace.flush()
        runs = [s for s in exporter.get_finished_spans() if s.name == "mp.process.run"]
        assert len(runs) == per_round, "traced run lost spans"
        mptrace.uninstall()
    return statistics.median(untraced), statistics.median(traced)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--methods", default=",".join(multiprocessing.get_all_start_methods()))
    options = parser.parse_args()
    print("%-11s %12s %12s %7s %7s" % ("method", "untraced ms", "traced ms", "ratio", "target"))
    for method in options.methods.split(","):
        untraced, traced = measure(method, options.rounds, options.per_round)
        print("%-11s %12.2f %12.2f %6.2fx %6.2fx" % (
            method, untraced * 1e3, traced * 1e3, traced / untraced, TARGETS.get(method, float("nan"))))


if __name__ == "__main__":
    main()
