"""Where a process start's time goes: CPU and page faults of the parent and of the child, per start.

On a fork, every page the parent or the child writes for the first time
afterwards is a page fault, 2.5-3 us while the other process still shares the
page and about 0.9 us after (``fault_cost.py``) on a virtual machine: counting
them says more than wall time on a noisy machine. Each arm is a fresh
interpreter with the same provider (a BatchSpanProcessor whose exporter drops
spans, set as the global provider), as in process_start.py; the traced arm
calls install() before its first start. Per start, medians over ``--starts``
start+join after 3 warm-ups: wall time of start() and of join(), CPU time and
minor faults of the parent (all its threads) and of the child
(``RUSAGE_CHILDREN``: fork and spawn children only, a forkserver child is the
server's).

    python benchmarks/start_faults.py [--method fork] [--starts 60] [--runs 3] [--floor] [--without-analyses]

``--floor`` (fork) adds the floor arm of process_start.py: the least a tracer of mptrace's design does per
child. ``--without-analyses`` adds the traced program with its four looks at what a fork child inherits
switched off: what they cost against the rest of mptrace's work per start.

``--burst N`` (fork) starts the children in bursts of N instead, as many alive at once as there are cores,
the Process objects kept as a program keeps them (process_start.py's burst), and reports per child, medians
over the bursts: the burst's wall time, and the CPU and page faults of the parent and of the children. While
a sibling runs, every page the parent writes at a start is copied: the parent's faults are what a burst waits on.
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_start import BURST_FUNCTION, PROVIDER_AND_TARGET, alternate_runs, compile_mptrace  # noqa: E402

ARMS = ("provider only", "traced")
FLOOR = "floor"
WITHOUT_ANALYSES = "traced, no analyses"

# The floor arm (``--floor``, fork only): provider only plus floor_tracer.py, as in process_start.py. Its spool
# files go where mptrace puts its own; at exit the last children are collected and the directory removed.
FLOOR_SETUP = r'''
if sys.argv[1] == "floor":
    import os, floor_tracer
    parents = [d for d in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm") if d and os.access(d, os.W_OK | os.X_OK)]
    spool = os.path.join((parents or [os.getcwd()])[0], "floor-" + os.urandom(8).hex())
    os.mkdir(spool, 0o700)
    collect = floor_tracer.install(provider, spool)

    def remove_spool():
        collect()
        os.rmdir(spool)

    import atexit
    atexit.register(remove_spool)
'''

# ``--without-analyses``: the traced program with the four looks at what a fork child inherits switched off
# (module state, threads, descriptors, random generators), to weigh them against the rest. For measuring
# only: it replaces mptrace's private functions, which no program should.
WITHOUT_ANALYSES_SETUP = r'''
if sys.argv[1] == "traced, no analyses":
    import mptrace
    from mptrace import _parent
    mptrace.install()
    _parent._record_module_state = lambda launch: None
    _parent._thread_attributes = lambda: {}
    _parent._record_inherited_fds = lambda launch: None
    _parent._random_generators = lambda: []
'''
COLUMNS = ("start_ms", "join_ms", "parent_cpu_ms", "child_cpu_ms", "parent_faults", "child_faults")
BURST_COLUMNS = ("wall_ms", "parent_cpu_ms", "child_cpu_ms", "parent_faults", "child_faults")

PROGRAM = PROVIDER_AND_TARGET + FLOOR_SETUP + WITHOUT_ANALYSES_SETUP + BURST_FUNCTION + r'''
import json, multiprocessing, os, resource, statistics, time


def usage():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, own.ru_minflt, children.ru_minflt)


def bursts(context, children, size):
    """Rows per child of each burst of ``size`` (``children`` in all, at least 3 bursts), after a warm-up burst."""
    rows = []
    for burst in range(max(3, children // size) + 1):
        before, began = usage(), time.perf_counter()
        exitcodes = start_burst(context, size, os.cpu_count() or 2)
        ended, after = time.perf_counter(), usage()
        if any(exitcodes):
            sys.exit("a child exited with %s" % exitcodes)
        if burst:
            rows.append([(ended - began) * 1e3 / size, (after[0] - before[0]) * 1e3 / size,
                         (after[1] - before[1]) * 1e3 / size, (after[2] - before[2]) / size,
                         (after[3] - before[3]) / size])
    return rows


if __name__ == "__main__" and int(sys.argv[4]):
    rows = bursts(multiprocessing.get_context(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps([statistics.median(column) for column in zip(*rows)]))
elif __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[2])
    rows = []
    for i in range(int(sys.argv[3]) + 3):
        before = usage()
        began = time.perf_counter()
        process = context.Process(target=noop)
        process.start()
        started = time.perf_counter()
        process.join()
        joined = time.perf_counter()
        after = usage()
        if process.exitcode != 0:
            sys.exit("a child exited with %s" % process.exitcode)
        if i >= 3:
            rows.append([(started - began) * 1e3, (joined - started) * 1e3, (after[0] - before[0]) * 1e3,
                         (after[1] - before[1]) * 1e3, after[2] - before[2], after[3] - before[3]])
    print(json.dumps([statistics.median(column) for column in zip(*rows)]))
'''


def one_run(arm, method, starts, burst, target_dir, python):
    path = [ROOT, target_dir] + ([os.path.dirname(os.path.abspath(__file__))] if arm == FLOOR else [])
    result = subprocess.run([python, "-c", PROGRAM, arm, method, str(starts), str(burst)],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)),
                            capture_output=True, text=True, cwd=target_dir, timeout=900)
    if result.returncode:
        raise SystemExit("the %s arm failed under %s:\n%s" % (arm, method, result.stderr))
    import json

    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="fork", choices=("fork", "spawn", "forkserver"))
    parser.add_argument("--starts", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per arm; medians of the runs")
    parser.add_argument("--floor", action="store_true",
                        help="fork only: also the provider-only program with floor_tracer.py (see process_start.py)")
    parser.add_argument("--without-analyses", action="store_true",
                        help="also the traced program with module state, threads, descriptors and random "
                             "generators switched off, to weigh them against the rest")
    parser.add_argument("--burst", type=int, default=0, metavar="N",
                        help="fork only: children in bursts of N, as many alive as there are cores, kept; "
                             "--starts children in all (at least 3 bursts); figures per child")
    options = parser.parse_args()
    if options.floor and options.method != "fork":
        parser.error("--floor: the floor traces fork children only")
    if options.burst and (options.method != "fork" or options.burst < 2):
        parser.error("--burst: fork only, and at least 2 children a burst")
    compile_mptrace()
    arms = ARMS + ((FLOOR,) if options.floor else ()) + ((WITHOUT_ANALYSES,) if options.without_analyses else ())
    found = alternate_runs(arms, options.runs,
                           lambda arm, target_dir, python: one_run(arm, options.method, options.starts, options.burst,
                                                                   target_dir, python))
    columns = BURST_COLUMNS if options.burst else COLUMNS
    title = "per child (burst of %d)" % options.burst if options.burst else "per start (%s)" % options.method
    print("%-20s" % title + "".join("%15s" % column for column in columns))
    medians = {arm: [statistics.median(values) for values in zip(*runs)] for arm, runs in found.items()}
    for arm in arms:
        print("%-20s" % arm + "".join("%15.2f" % value for value in medians[arm]))
    for arm in arms[1:]:
        print("%-20s" % ("%s - prov" % arm.split(",")[0] if arm != WITHOUT_ANALYSES else "no analyses - prov")
              + "".join("%+15.2f" % (t - p) for t, p in zip(medians[arm], medians["provider only"])))
    print("(medians of %d runs of %d %s; Python %s, %d cores)" % (
        options.runs, options.starts, "children in bursts of %d" % options.burst if options.burst else "starts",
        sys.version.split()[0], os.cpu_count() or 0))


if __name__ == "__main__":
    main()
