"""Process start+join under two versions of mptrace, each arm in a fresh interpreter.

Answers "did this change make starting a process slower?" the way a user runs
a program: every arm is a new interpreter with the same OpenTelemetry provider
(a BatchSpanProcessor whose exporter drops spans, set as the global provider)
and, in the traced arms, ``install()`` before the first start. Arms alternate
run by run, so machine drift hits them alike; each run times ``--starts``
start+join of an empty target (after 3 warm-up starts) and reports its median.
Printed: the median over runs of each arm, its ratio to the provider-only
arm, and every run's figure (the spread says how far to trust a difference).

    python benchmarks/start_versions.py OLD_REF [NEW_REF] [--method fork] [--runs 7] [--starts 60]
                                        [--cpu | --faults | --child-cpu] [--app]

OLD_REF and NEW_REF are git revisions of this repository (NEW_REF: the
working tree when left out); ``--cpu`` reports CPU time per start (the
program, its children and a fork server with its children) instead of wall
time, ``--faults`` their page faults, which a shared machine's noise moves
far less than time, ``--child-cpu`` a child's CPU time when its target
begins (ms, the median over the children: what the child did before
``run()``, fork server's copy or new interpreter, its re-imports and
mptrace's share); ``--app`` runs the program
as a file that imports an application's libraries first, which spawn and
forkserver children re-import (see ``process_start.py --app``).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arms_python import arms_python  # noqa: E402
from process_start import PROVIDER_AND_TARGET, TARGET_MODULE, program_command  # noqa: E402

PROGRAM = PROVIDER_AND_TARGET + r'''
import multiprocessing, multiprocessing.forkserver, os, resource, statistics, time


def usage():
    """(CPU seconds, page faults) so far of this program, of the children it reaped (fork, spawn) and, under
    forkserver, of the fork server with the children it reaped (the server is not this program's to reap
    until it exits, so getrusage leaves it and them out)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    faults = own.ru_minflt + own.ru_majflt + children.ru_minflt + children.ru_majflt
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if server:
        with open("/proc/%d/stat" % server) as stat:  # after its name: minflt cminflt majflt cmajflt at 7-10,
            fields = stat.read().rpartition(")")[2].split()  # utime stime cutime cstime (ticks) at 11-14
        faults += sum(int(fields[i]) for i in (7, 8, 9, 10))
        cpu += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return cpu, faults


if __name__ == "__main__":
    from process_start_target import note_cpu_at_start

    context = multiprocessing.get_context(sys.argv[2])
    starts, wall = int(sys.argv[3]), []
    child_cpu = os.path.abspath("child-cpu-%d.txt" % os.getpid())
    for i in range(starts + 3):
        if i == 3:
            began_using = usage()
        began = time.perf_counter()
        if sys.argv[4] == "child-cpu":
            process = context.Process(target=note_cpu_at_start, args=(child_cpu if i >= 3 else os.devnull,))
        else:
            process = context.Process(target=noop)
        process.start()
        process.join()
        wall.append(time.perf_counter() - began)
        if process.exitcode != 0:
            sys.exit("a child exited with %s" % process.exitcode)
    cpu, faults = ((now - then) / starts for now, then in zip(usage(), began_using))
    if sys.argv[4] == "child-cpu":
        with open(child_cpu) as noted:
            cpu_at_start = statistics.median(float(line) for line in noted)
        os.remove(child_cpu)
        print(cpu_at_start * 1e3)
    else:
        print({"cpu": cpu * 1e3, "faults": faults, "wall": statistics.median(wall[3:]) * 1e3}[sys.argv[4]])
'''


def export_version(ref, into):
    """The ``mptrace`` package of git revision ``ref``, unpacked under ``into`` and compiled (see
    process_start.compile_mptrace); None: the working tree."""
    import compileall

    if ref is not None:
        archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "mptrace"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    path = ROOT if ref is None else into
    compileall.compile_dir(os.path.join(path, "mptrace"), quiet=1)
    with open(os.path.join(into, "process_start_target.py"), "w") as module:
        module.write(TARGET_MODULE)
    return path, into


def one_run(paths, traced, method, starts, measure, cwd, app=False, python=sys.executable):
    """``python``: the interpreter of the arms (see arms_python: not one that loads an editable mptrace, which
    would also be the version a fork server of either arm finds first)."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    program = program_command(PROGRAM, cwd, app)  # with app: a file importing an application's libraries first
    result = subprocess.run([python] + program + ["traced" if traced else "plain", method, str(starts),
                             measure], env=environment, capture_output=True, text=True, cwd=cwd)
    if result.returncode:
        raise SystemExit("a run failed:\n" + result.stderr)
    return float(result.stdout)


MEASURES = (
    ("cpu", "CPU ms per start (program, children and fork server; the server's in 10 ms ticks), not wall"),
    ("faults", "page faults per start (program, children and fork server), not wall: steadier than time on a "
               "shared machine"),
    ("child-cpu", "the child's CPU ms when its target begins (median over the children): what it did before "
                  "run(), mptrace's share included, without the rest of the machine's noise"),
)
UNITS = {"faults": "page faults", "child-cpu": "a child's CPU ms at its target"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="git revision of the first version, e.g. HEAD~3")
    parser.add_argument("new", nargs="?", help="git revision of the second version (default: the working tree)")
    parser.add_argument("--method", default="fork", choices=("fork", "spawn", "forkserver"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--starts", type=int, default=60)
    measures = parser.add_mutually_exclusive_group()  # what is reported per start; wall time by default
    for measure, help_text in MEASURES:
        measures.add_argument("--" + measure, dest="measure", action="store_const", const=measure, help=help_text)
    parser.set_defaults(measure="wall")
    parser.add_argument("--app", action="store_true",
                        help="the program as a file that imports an application's libraries at top level, which "
                             "spawn and forkserver children re-import (see process_start.py --app)")
    options = parser.parse_args()
    measure = options.measure
    # Each program runs in an empty directory of its own, as a program runs in its project's: not in the
    # temporary directory, whose thousands of entries on a busy machine every spawn and forkserver child
    # would list at its first import (the current directory is on a -c program's sys.path).
    with tempfile.TemporaryDirectory() as old_dir, tempfile.TemporaryDirectory() as new_dir, \
            tempfile.TemporaryDirectory() as run_dir, tempfile.TemporaryDirectory() as venv_dir:
        python = arms_python(venv_dir)
        paths = {options.old: export_version(options.old, old_dir),
                 options.new or "working tree": export_version(options.new, new_dir)}
        arms = {"provider only": []}
        arms.update((name, []) for name in paths)
        for _ in range(options.runs):
            arms["provider only"].append(one_run(paths[options.old], False, options.method, options.starts, measure,
                                                 run_dir, options.app, python))
            for name, path in paths.items():
                arms[name].append(one_run(path, True, options.method, options.starts, measure, run_dir, options.app,
                                          python))
    baseline = statistics.median(arms["provider only"])
    print("%s start+join%s, %s per start, median of %d runs of %d starts" % (
        options.method, " (--app)" if options.app else "",
        UNITS.get(measure, measure + " ms"),
        options.runs, options.starts))
    for name, values in arms.items():
        median = statistics.median(values)
        print("%-14s %8.2f  %5.2fx   %s" % (name, median, median / baseline, " ".join("%.2f" % v for v in values)))


if __name__ == "__main__":
    main()
