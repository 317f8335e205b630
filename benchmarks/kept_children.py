"""Fork starts in a program that keeps every Process it started: does a start cost more as they pile up?

A program that starts its children in a loop and joins them at the end keeps
every ``Process``, its Popen and its two pipe ends open in the parent. At a fork
``start()`` mptrace lists the descriptors the child inherits (``mp.fork.fds``),
and multiprocessing's own are left out: the more children kept, the more
descriptors to look at. Each arm is a fresh interpreter with the same provider
(a BatchSpanProcessor whose exporter drops spans, set as the global provider),
as in process_start.py; the traced arm calls install() before its first start.
Each child is started and joined in turn and kept; per arm, the median start+join
time and parent page faults of the first ``--window`` starts and of the last.

    python benchmarks/kept_children.py [--children 600] [--window 50] [--runs 3]

``--no-fds`` adds the traced program with ``install(inherited_fds=False)``.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_start import APPLICATION_PROVIDER, alternate_runs, compile_mptrace  # noqa: E402

ARMS = ("provider only", "traced")
NO_FDS = "traced, inherited_fds=False"
# Each kept child holds two pipe ends, and the program a few more descriptors.
DESCRIPTORS_PER_CHILD = 2

PROGRAM = r'''
import sys
''' + APPLICATION_PROVIDER + r'''

if __name__ == "__main__":
    provider = application_provider()
    if sys.argv[1] != "provider only":
        import mptrace
        mptrace.install(inherited_fds=sys.argv[1] == "traced")
from process_start_target import noop
import json, multiprocessing, resource, statistics, time

if __name__ == "__main__":
    children, window = int(sys.argv[2]), int(sys.argv[3])
    context = multiprocessing.get_context("fork")
    kept, times, faults = [], [], []
    for _ in range(children):
        before, began = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        process = context.Process(target=noop)
        process.start()
        process.join()
        times.append((time.perf_counter() - began) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        kept.append(process)
        if process.exitcode != 0:
            sys.exit("a child exited with %s" % process.exitcode)
    first, last = slice(3, 3 + window), slice(-window, None)  # after 3 warm-ups
    print(json.dumps([statistics.median(times[first]), statistics.median(times[last]),
                      statistics.median(faults[first]), statistics.median(faults[last])]))
'''


def one_run(arm, children, window, target_dir, python):
    result = subprocess.run([python, "-c", PROGRAM, arm, str(children), str(window)],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, target_dir])),
                            capture_output=True, text=True, cwd=target_dir, timeout=900)
    if result.returncode:
        raise SystemExit("the %s arm failed:\n%s" % (arm, result.stderr))
    return json.loads(result.stdout)


def raise_descriptor_limit(children):
    """Each kept child holds DESCRIPTORS_PER_CHILD descriptors: the arms inherit a soft limit that fits them."""
    needed = DESCRIPTORS_PER_CHILD * children + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit("--children %d needs %d descriptors; the hard limit is %d" % (children, needed, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=600)
    parser.add_argument("--window", type=int, default=50, help="starts at the beginning and at the end compared")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per arm; medians of the runs")
    parser.add_argument("--no-fds", action="store_true", help="also the traced program with inherited_fds=False")
    options = parser.parse_args()
    if options.children < 2 * options.window + 3:
        parser.error("--children must be at least twice --window, plus 3 warm-ups")
    raise_descriptor_limit(options.children)
    compile_mptrace()
    arms = ARMS + ((NO_FDS,) if options.no_fds else ())
    found = alternate_runs(arms, options.runs,
                           lambda arm, target_dir, python: one_run(arm, options.children, options.window, target_dir,
                                                                   python))
    medians = {arm: [statistics.median(values) for values in zip(*runs)] for arm, runs in found.items()}
    provider = medians["provider only"]
    print("%-30s %15s %15s %15s %15s" % ("start+join, fork", "first ms", "last ms", "first faults", "last faults"))
    for arm in arms:
        print("%-30s %15.2f %15.2f %15.0f %15.0f" % ((arm,) + tuple(medians[arm])))
    for arm in arms[1:]:
        ratios = (medians[arm][0] / provider[0], medians[arm][1] / provider[1])
        print("%-30s %14.2fx %14.2fx" % ((arm.replace("traced", "traced / provider"),) + ratios))
    print("(medians of %d runs; children kept: %d, each start+join timed, first and last %d; Python %s, %d cores)" % (
        options.runs, options.children, options.window, sys.version.split()[0], os.cpu_count() or 0))


if __name__ == "__main__":
    main()
