"""The work mptrace adds to a Pool.map, counted in instructions (valgrind), thread by thread.

    python benchmarks/pool_map_instructions.py [--maps 3]

Wall-clock ratios of a 40 ms map swing by several percent from one run to the
next on a shared 2-core machine (``pool_throughput.py --noise`` shows how
much). Instructions do not: this runs the ``map`` workload of
``pool_throughput.py`` (``Pool(2)``, fork, 200,000 items in chunks of 1000)
under callgrind, untraced and traced, once with a warm-up map only and once
with ``--maps`` more, and reports the difference per map: the instructions
each thread executed for one map, and what mptrace added.

The pool's worker-handler thread is shown but left out of the total: CPython
wakes it whenever a result is waiting to be read, so it spins for as long as
the result-handler thread lags behind, and under valgrind (which runs one
thread at a time) how long that is depends on scheduling, not on the work.

Needs valgrind on PATH; takes about a minute on 2 cores.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
# The parent's threads in the order they start: the workload's provider starts
# its batch exporter at import, then Pool() starts its three helper threads.
PARENT_THREADS = ("main", "span exporter", "worker handler (spin)", "task handler", "result handler")
LEFT_OUT = "worker handler (spin)"
SUMMARY = re.compile(r"^summary:\s*(\d+)", re.MULTILINE)


def workload(traced, maps):
    """The measured program: a warm-up map, then ``maps`` more, on one Pool(2)."""
    import multiprocessing

    sys.path.insert(0, HERE)
    import pool_throughput

    if traced:
        import mptrace

        # Under valgrind every message takes about a millisecond, which would make each a "notable" one
        # with a span of its own; at full speed they take a few microseconds.
        mptrace.install(tracer_provider=pool_throughput.provider, pickle_span_seconds=3600)
    with pool_throughput.tracer.start_as_current_span("bench"):
        pool = multiprocessing.get_context("fork").Pool(2)
        for _ in range(1 + maps):
            pool_throughput.map_block(pool)
        pool.close()
        pool.join()


def counted(directory, traced, maps):
    """{thread or "workers": instructions} of one run under callgrind."""
    prefix = os.path.join(directory, "%s%d" % ("t" if traced else "u", maps))
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--trace-children=yes",
               "--callgrind-out-file=%s.%%p" % prefix, sys.executable, os.path.abspath(__file__),
               "--workload", "traced" if traced else "untraced", "--maps", str(maps)]
    environment = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    by_pid = {}
    for path in glob.glob(prefix + ".*-*"):
        pid, thread = os.path.basename(path).split(".")[1].split("-")
        with open(path) as f:
            found = SUMMARY.search(f.read())
        by_pid.setdefault(int(pid), {})[int(thread)] = int(found.group(1)) if found else 0
    parent = min(by_pid)  # the first process valgrind started
    threads = by_pid.pop(parent)
    if len(threads) != len(PARENT_THREADS):
        raise SystemExit("expected %d threads in the parent, found %d: the thread names below would be wrong"
                         % (len(PARENT_THREADS), len(threads)))
    counts = {name: threads[index + 1] for index, name in enumerate(PARENT_THREADS)}
    counts["workers (both)"] = sum(sum(worker.values()) for worker in by_pid.values())
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep callgrind's files (for callgrind_annotate)")
    parser.add_argument("--workload", choices=("traced", "untraced"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.workload:
        return workload(options.workload == "traced", options.maps)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: this benchmark counts instructions with callgrind")
    directory = tempfile.mkdtemp(prefix="mptrace-callgrind-")
    try:
        runs = [(traced, maps) for traced in (False, True) for maps in (0, options.maps)]
        with ThreadPoolExecutor(2) as executor:
            results = dict(zip(runs, executor.map(lambda run: counted(directory, *run), runs)))
    finally:
        if options.keep:
            print("callgrind's files are in %s" % directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    report(results, options.maps)


def report(results, maps):
    def per_map(traced, name):
        return (results[traced, maps][name] - results[traced, 0][name]) / maps

    print("Pool(2).map of 200,000 items in chunks of 1000, fork; instructions per map (millions)")
    print("%-24s %10s %10s %10s %8s" % ("thread", "untraced", "traced", "added", "ratio"))
    totals = [0.0, 0.0]
    for name in list(PARENT_THREADS) + ["workers (both)"]:
        untraced, traced = per_map(False, name), per_map(True, name)
        shown = name + (" *" if name == LEFT_OUT else "")
        ratio = "%7.3fx" % (traced / untraced) if untraced > 1e5 else "%8s" % "-"
        print("%-24s %10.2f %10.2f %+10.2f %s" % (shown, untraced / 1e6, traced / 1e6, (traced - untraced) / 1e6,
                                                  ratio))
        if name != LEFT_OUT:
            totals[0] += untraced
            totals[1] += traced
    print("%-24s %10.2f %10.2f %+10.2f %7.3fx" % ("total (without *)", totals[0] / 1e6, totals[1] / 1e6,
                                                  (totals[1] - totals[0]) / 1e6, totals[1] / totals[0]))
    print("* spins while results wait to be read: depends on scheduling, left out of the total")


if __name__ == "__main__":
    main()
