"""Pool.map, traced against untraced, one map at a time: pairs a few hundred ms apart.

    python benchmarks/pool_map_paired.py [--programs 8] [--pairs 25] [--start-method fork] [--noise]

``pool_throughput.py`` times blocks of maps, each on its own pool, a second or
two apart; on a shared machine whose speed drifts over seconds, that spread
alone moves a ratio by several percent. Here two programs stay up side by side,
each with its own warm ``Pool(2)``: one untraced, one with mptrace installed
(defaults; the same provider and dropping exporter as ``pool_throughput.py``).
They take turns running one ``map`` of 200,000 items in chunks of 1000, who
goes first alternating, so each traced map is compared with an untraced one
run right next to it. While one program maps, the other is idle: its pool's
threads are blocked, not spinning.

A program's own speed differs from the next one's by a few percent (where its
memory landed, its hash seed), so one pair of programs is not enough either:
``--programs`` pairs are started one after the other, each runs ``--pairs``
pairs of maps, and each gets the median of its pairs' ratios. ``ratio`` is the
median of those, with the lowest and highest beside it. ``--noise`` pairs two
untraced programs instead: how far apart two identical ones come out.

The traced program flushes after each of its maps (untimed), so its spool
stays as small as in a long-running program that exports as it goes.
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(traced, start_method):
    """One side: a warm pool, then one timed map per "map" line on stdin."""
    sys.path.insert(0, HERE)
    import pool_throughput

    if traced:
        import mptrace

        mptrace.install(tracer_provider=pool_throughput.provider)
    with pool_throughput.tracer.start_as_current_span("bench"):
        pool = multiprocessing.get_context(start_method).Pool(2)
        pool_throughput.map_block(pool)  # every worker started and warm
        _settle(traced)
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "map":
                break
            elapsed = pool_throughput.map_block(pool)
            _settle(traced)
            print(repr(elapsed), flush=True)
        pool.close()
        pool.join()


def _settle(traced):
    if traced:
        import mptrace

        assert mptrace.flush(30), "flush timed out"


class Side:
    """A serving program, driven over its stdin and stdout."""

    def __init__(self, traced, start_method):
        command = [sys.executable, os.path.abspath(__file__), "--serve", "traced" if traced else "untraced",
                   "--start-method", start_method]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit("a side did not start: %r" % line)

    def map(self):
        self.process.stdin.write("map\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self):
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(60)


def compare(first, second, pairs):
    """([seconds of first], [seconds of second], median of the pairs' second/first ratios)."""
    times, ratios = ([], []), []
    for pair in range(pairs):
        if pair % 2 == 0:
            a = first.map()
            b = second.map()
        else:
            b = second.map()
            a = first.map()
        times[0].append(a)
        times[1].append(b)
        ratios.append(b / a)
    return times[0], times[1], statistics.median(ratios)


def one_program_pair(traced, start_method, pairs):
    first = Side(False, start_method)
    try:
        second = Side(traced, start_method)
        try:
            return compare(first, second, pairs)
        finally:
            second.close()
    finally:
        first.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=8, help="pairs of programs, one after the other")
    parser.add_argument("--pairs", type=int, default=25, help="pairs of maps per pair of programs")
    parser.add_argument("--start-method", default="fork", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--noise", action="store_true", help="pair two untraced programs instead")
    parser.add_argument("--serve", choices=("traced", "untraced"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        return serve(options.serve == "traced", options.start_method)
    began = time.perf_counter()
    untraced, other, ratios = [], [], []
    for _ in range(options.programs):
        first, second, ratio = one_program_pair(not options.noise, options.start_method, options.pairs)
        untraced += first
        other += second
        ratios.append(ratio)
    label = "untraced" if options.noise else "traced"
    print("Python %d.%d, %s, Pool(2).map of 200,000 items in chunks of 1000; %d x %d pairs in %.0f s" % (
        sys.version_info[0], sys.version_info[1], options.start_method, options.programs, options.pairs,
        time.perf_counter() - began))
    print("untraced %.1f ms, %s %.1f ms (medians); ratio %.3fx (programs from %.3fx to %.3fx)" % (
        statistics.median(untraced) * 1e3, label, statistics.median(other) * 1e3, statistics.median(ratios),
        min(ratios), max(ratios)))


if __name__ == "__main__":
    main()
