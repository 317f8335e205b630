"""Process start+join when the main module holds state: a program's results, as users write it.

``process_start.py`` runs a ``-c`` program, whose main module has no source
and so no state mptrace compares. A real program is a file, and it often
keeps what it has done in a global: a list of results that grows as it goes,
say. mptrace looks at the watched modules' globals at every ``start()``
(``mp.state.*``: what a fork child inherits that a spawned one would not, what
a spawn or forkserver child's parent holds), and the content of a large
container is digested to tell whether it changed. So the cost of a start can
grow with the program's state; this measures by how much.

The program (a file, run as ``__main__``) fills ``results`` with ``--items``
items in its main block, then times start+join of an empty target. With
``--where module`` the list is a module's instead, ``state_cost_module``,
which the program imports after ``install()`` (so mptrace knows its state at
import) and fills as it goes: a cache or a registry of an application's own
module, held as its program runs. ``--shape``
says what an item is: a float, a row (a tuple of an int, a string and a float),
a record (a dict of the same three, by name), nested: a row holding a record
(``(step, {"loss": ..., "accuracy": ...})``), or json: a record holding a list
and a record. Arms as in ``process_start.py``: each a fresh interpreter, the
application's provider (``BatchSpanProcessor``) in both, ``install()`` before
the first start in the traced one; runs alternate; figures are medians.

    python benchmarks/state_cost.py [--methods fork,forkserver,spawn] [--items 0,1000,10000] [--runs 3]
                                    [--starts 10] [--shape float|row|record|nested|json] [--where main|module]
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys

from process_start import APPLICATION_PROVIDER, ROOT, alternate_runs, compile_mptrace

ARMS = ("provider only", "traced")

# The program's top level runs again in every spawn and forkserver child (on 3.9-3.13 the fork server never
# preloads the main module): as in a well-made program, it only defines things; its main block sets up tracing
# and starts.
PROGRAM = r'''
import multiprocessing, statistics, sys, time

from process_start_target import noop  # importable by spawn and forkserver children

results = []


''' + APPLICATION_PROVIDER + r'''

if __name__ == "__main__":
    arm, method, items, starts, shape = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    application_provider()
    if arm == "traced":
        import mptrace
        mptrace.install()
    make = {"float": lambda i: i / 7, "row": lambda i: (i, "item %d" % i, i / 7),
            "record": lambda i: {"id": i, "name": "item %d" % i, "value": i / 7},
            "nested": lambda i: (i, {"loss": i / 7, "accuracy": 1 / (i + 1)}),
            "json": lambda i: {"id": i, "tags": ["tag %d" % i, "new"], "size": {"w": i, "h": 2}}}[shape]
    if sys.argv[6] == "module":  # an application module's list: imported after install(), as a program's are
        import state_cost_module
        state_cost_module.results.extend(make(i) for i in range(items))
    else:
        results.extend(make(i) for i in range(items))  # what the program has done so far
    context = multiprocessing.get_context(method)
    times, failed = [], 0
    for run in range(3 + starts):  # 3 warm-up starts: the fork server starts there
        began = time.perf_counter()
        process = context.Process(target=noop)
        process.start()
        process.join()
        if run >= 3:
            times.append(time.perf_counter() - began)
        failed += process.exitcode != 0
    print(statistics.median(times) * 1e3, failed)
'''


SHAPES = ("float", "row", "record", "nested", "json")


def one_run(arm, method, items, starts, shape, where, target_dir, python):
    program = os.path.join(target_dir, "state_cost_program.py")
    if not os.path.exists(program):
        with open(program, "w") as source:
            source.write(PROGRAM)
        with open(os.path.join(target_dir, "state_cost_module.py"), "w") as source:
            source.write("results = []\n")
    result = subprocess.run([python, program, "traced" if arm == "traced" else "provider", method,
                             str(items), str(starts), shape, where],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, target_dir])),
                            capture_output=True, text=True, cwd=target_dir, timeout=900)
    if result.returncode:
        raise SystemExit("the %s arm failed under %s:\n%s" % (arm, method, result.stderr))
    per_start, failed = result.stdout.split()
    if int(failed):
        raise SystemExit("%s %s: %s children exited with an error:\n%s" % (arm, method, failed, result.stderr))
    return float(per_start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(multiprocessing.get_all_start_methods()))
    parser.add_argument("--items", default="0,1000,10000", help="sizes of the results list, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per arm (at least 3)")
    parser.add_argument("--starts", type=int, default=10, help="timed starts per run")
    parser.add_argument("--shape", default="float", choices=SHAPES, help="what each item of the results is")
    parser.add_argument("--where", default="main", choices=("main", "module"),
                        help="whose list: the main module's, or an application module's")
    options = parser.parse_args()
    if options.runs < 3:
        parser.error("--runs must be at least 3, got %d" % options.runs)
    try:
        sizes = [int(size) for size in options.items.split(",")]
    except ValueError:
        parser.error("--items must be whole numbers separated by commas, got %r" % options.items)
    compile_mptrace()
    print("%-11s %8s %10s %9s %10s" % ("ms/start", "results", "provider", "traced", "/provider"))
    for method in options.methods.split(","):
        for size in sizes:
            found = alternate_runs(ARMS, options.runs,
                                   lambda arm, target_dir, python: one_run(arm, method, size, options.starts,
                                                                           options.shape, options.where,
                                                                           target_dir, python))
            provider, traced = (statistics.median(found[arm]) for arm in ARMS)
            print("%-11s %8d %10.2f %9.2f %9.2fx" % (method, size, provider, traced, traced / provider))
    print("(%d alternating runs per arm, each in a fresh interpreter; median of %d starts per run; "
          "results: the %s's list of %ss; Python %s, %d cores)" % (
              options.runs, options.starts, "main module" if options.where == "main" else "module state_cost_module",
              options.shape, sys.version.split()[0], os.cpu_count() or 0))


if __name__ == "__main__":
    main()
