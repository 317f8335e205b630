"""Process start+join the way users run it: each arm a fresh interpreter.

Three arms, each a new interpreter that runs the same program:

* ``no OpenTelemetry``: the program alone;
* ``provider only``: the application's own provider, a ``TracerProvider``
  with a ``BatchSpanProcessor`` (as in production; its exporter only counts
  the spans) set as the global provider, and no mptrace;
* ``traced``: the same plus ``mptrace.install()`` before the first start, so
  a fork server is started traced, as a real program's is.

Traced/provider-only is the figure that counts: a user who compares with and
without mptrace keeps their provider either way. Arms alternate run by run
(machine drift hits them alike); each run makes 3 warm-up starts (the fork
server starts there) and times ``--starts`` more, and the figure of an arm is
the median over runs of each run's median. ``burst`` starts ``--burst``
children (fork) with as many alive at once as there are cores, and its
traced runs check that every child's run span arrived.

    python benchmarks/process_start.py [--methods fork,forkserver,spawn,burst] [--runs 3] [--starts 10]
                                       [--span-floor] [--floor] [--app]

``--span-floor`` adds a fourth arm: the provider-only program making one SDK
span of its own around each start+join, which shows what a single span per
child costs on the machine (mptrace makes one, mp.process, and hands the
child's run span to the same processors).

``--app`` runs the same program as a file, ``app.py``, that first imports
what an application using OpenTelemetry imports at its top level (the SDK,
some of the standard library). Each spawn and forkserver child re-imports it,
and those libraries with it, as an application's children do; the ``-c``
program's children re-import nothing. The re-import dominates such a start, so
the ratio says less there than the milliseconds mptrace adds, which are
printed too.

``--floor`` adds a "floor" arm under fork and burst: the provider-only
program with ``floor_tracer.install()`` (this folder) before the first start,
the least a tracer of mptrace's design does per fork child (an mp.process
span, a spool file the child writes its run span to, the exit observed, a
collection every 100 ms; see that module). Its children's run spans are
checked to arrive, as the traced arm's are. Traced/floor is how far mptrace
is from that floor. Under spawn and forkserver the floor does not apply (its
child's half comes through the fork) and the arm is not run.

Targets (issue 19), traced/provider-only: fork and forkserver <= 1.25x,
spawn <= 1.15x, burst <= 1.3x.
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile

from arms_python import arms_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"fork": 1.25, "forkserver": 1.25, "spawn": 1.15, "burst": 1.3}
ARMS = ("no OpenTelemetry", "provider only", "traced")
FLOOR_METHODS = ("fork", "burst")  # the floor arm's (floor_tracer.py traces fork children only)
BENCHMARKS = os.path.dirname(os.path.abspath(__file__))

# A burst of fork children as a program starts them: ``count`` children of the empty target, ``alive`` at a
# time, each kept until the end; their exit codes. In the programs of this benchmark and of start_faults.py.
BURST_FUNCTION = r'''
def start_burst(context, count, alive):
    running, finished = [], []
    for _ in range(count):
        if len(running) >= alive:
            finished.append(running.pop(0))
            finished[-1].join()
        process = context.Process(target=noop)
        process.start()
        running.append(process)
    for process in running:
        process.join()
    return [process.exitcode for process in finished + running]
'''

PROGRAM = r'''
import multiprocessing, os, statistics, sys, time

ARM, METHOD, STARTS, BURST = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# The program itself (as app.py, see --app, its spawn and forkserver children re-import it as __mp_main__).
if __name__ == "__main__" and ARM != "no OpenTelemetry":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class CountRuns(SpanExporter):
        runs = 0

        def export(self, spans):
            CountRuns.runs += sum(1 for span in spans if span.name == "mp.process.run")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(CountRuns()))
    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("benchmark")
if __name__ == "__main__" and ARM == "traced":
    import mptrace
    mptrace.install()
# The floor's spool directory where mptrace makes its own, the same way (no tempfile: see _install).
if __name__ == "__main__" and ARM == "floor":
    import floor_tracer
    parent = [d for d in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm") if d and os.access(d, os.W_OK | os.X_OK)]
    spool = os.path.join((parent or [os.getcwd()])[0], "floor-" + os.urandom(8).hex())
    os.mkdir(spool, 0o700)
    collect = floor_tracer.install(provider, spool)

# In a module of its own, not in this -c program: a spawn or forkserver child must find its target by import
# (a target in __main__ of a -c program fails to unpickle there, and exits 1 before it runs).
from process_start_target import noop

exitcodes = []


def one_start(context):
    span = tracer.start_span("start", attributes={"arm": ARM}) if ARM == "one span" else None
    process = context.Process(target=noop)
    process.start()
    process.join()
    exitcodes.append(process.exitcode)
    if span is not None:
        span.set_attribute("exitcode", process.exitcode)
        span.end()


''' + BURST_FUNCTION + r'''

if __name__ == "__main__":
    context = multiprocessing.get_context("fork" if METHOD == "burst" else METHOD)
    for _ in range(3):
        one_start(context)
    times = []
    for _ in range(STARTS if METHOD != "burst" else 1):
        began = time.perf_counter()
        if METHOD == "burst":
            exitcodes.extend(start_burst(context, BURST, os.cpu_count() or 2))
        else:
            one_start(context)
        times.append(time.perf_counter() - began)
    children = 3 + (BURST if METHOD == "burst" else STARTS)
    arrived = -1
    if ARM == "traced":
        mptrace.flush()
        provider.force_flush()
        arrived = CountRuns.runs
    elif ARM == "floor":
        collect()
        provider.force_flush()
        arrived = CountRuns.runs
        os.rmdir(spool)
    per_start = statistics.median(times) / (BURST if METHOD == "burst" else 1)
    failed = sum(1 for code in exitcodes if code != 0)
    print(per_start * 1e3, children, arrived, failed)
'''

# --app: the same program as a file, app.py, that first imports what an application using OpenTelemetry
# imports at its top level. Each spawn and forkserver child re-imports it, and those libraries with it (the
# -c program's children re-import nothing): mptrace's child then meets some 140 modules it did not load
# itself, and a loaded OpenTelemetry SDK to wire.
APP_IMPORTS = r'''
import argparse, dataclasses, decimal, email.utils, http.client, json, logging, sys, urllib.request, uuid
if sys.argv[1] != "no OpenTelemetry":
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
'''

TARGET_MODULE = r'''
def noop():
    pass


def note_cpu_at_start(path):
    """Append to ``path`` this process's CPU seconds so far: what the child did before its target (see
    start_versions.py --child-cpu)."""
    import time

    began = time.process_time()
    with open(path, "a") as out:
        out.write("%r\n" % began)
'''

# The start of the programs start_versions.py and start_faults.py run: the application's provider (a
# BatchSpanProcessor whose exporter drops spans) as the global provider, install() when argv[1] is
# "traced", and the empty target from its own module.
# The application's provider, a function a program defines (state_cost.py's calls it in its main block only).
APPLICATION_PROVIDER = r'''
def application_provider():
    """The application's own provider, as in production: a BatchSpanProcessor (exporting nowhere)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    return provider
'''

PROVIDER_AND_TARGET = r'''
import sys
''' + APPLICATION_PROVIDER + r'''

if __name__ == "__main__":  # not in a spawn or forkserver child re-importing app.py (see APP_IMPORTS)
    provider = application_provider()
    if sys.argv[1] == "traced":
        import mptrace
        mptrace.install()
from process_start_target import noop  # importable by spawn and forkserver children
'''


def program_command(program, directory, app):
    """The program's part of a command line: ``-c program``, or with ``app`` a file in ``directory``, app.py,
    holding APP_IMPORTS and then the program."""
    if not app:
        return ["-c", program]
    path = os.path.join(directory, "app.py")
    with open(path, "w") as file:
        file.write(APP_IMPORTS + program)
    return [path]


def one_run(arm, method, starts, burst, target_dir, app=False, python=sys.executable):
    """``python``: the interpreter of the arms (see arms_python)."""
    path = [ROOT, target_dir] + ([BENCHMARKS] if arm == "floor" else [])  # floor_tracer, for that arm only
    program = program_command(PROGRAM, target_dir, app)
    result = subprocess.run([python] + program + [arm, method, str(starts), str(burst)],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(path)),
                            capture_output=True, text=True, cwd=target_dir, timeout=900)
    if result.returncode:
        raise SystemExit("the %s arm failed under %s:\n%s" % (arm, method, result.stderr))
    per_start, children, arrived, failed = result.stdout.split()
    if int(failed):
        raise SystemExit("%s %s: %s children exited with an error:\n%s" % (arm, method, failed, result.stderr))
    if arm in ("traced", "floor") and int(arrived) != int(children):
        raise SystemExit("%s %s: %s of %s children's run spans arrived" % (arm, method, arrived, children))
    return float(per_start)


def compile_mptrace():
    """Write mptrace's bytecode now: with PYTHONDONTWRITEBYTECODE set, a module edited since its .pyc was
    written is compiled again wherever it is loaded (the parent's bundle for spawn children, the fork server,
    every program), which an installed package never is."""
    import compileall

    compileall.compile_dir(os.path.join(ROOT, "mptrace"), quiet=1)


def alternate_runs(arms, runs, one):
    """{arm: [one(arm, target_dir, python) of each run]}: runs alternate the arms, in a rotating order; ``python``
    is the interpreter every arm runs (see arms_python: not one that loads an editable mptrace); ``target_dir``
    holds the target module (TARGET_MODULE), for the arms' PYTHONPATH, and is where each program runs, as a
    program runs in its project's directory: not in the temporary directory itself, whose thousands of
    entries on a busy machine every spawn and forkserver child would list at its first import (a -c
    program has the current directory on its sys.path)."""
    found = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="mptrace-bench-") as work:
        python = arms_python(work)
        target_dir = os.path.join(work, "program")
        os.mkdir(target_dir)
        with open(os.path.join(target_dir, "process_start_target.py"), "w") as module:
            module.write(TARGET_MODULE)
        for run in range(runs):
            turn = run % len(arms)
            for arm in arms[turn:] + arms[:turn]:
                found[arm].append(one(arm, target_dir, python))
    return found


def measure(method, runs, starts, burst, arms=ARMS, app=False):
    """{arm: median ms per start}: runs alternate the arms, in a rotating order."""
    found = alternate_runs(arms, runs, lambda arm, target_dir, python: one_run(arm, method, starts, burst, target_dir,
                                                                               app, python))
    return {arm: statistics.median(values) for arm, values in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(multiprocessing.get_all_start_methods() + ["burst"]))
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per arm (at least 3)")
    parser.add_argument("--starts", type=int, default=10, help="timed starts per run")
    parser.add_argument("--burst", type=int, default=40, help="children per burst run")
    parser.add_argument("--span-floor", action="store_true",
                        help="also run the provider-only program making one SDK span of its own per start: "
                             "what a single span per child costs on this machine")
    parser.add_argument("--floor", action="store_true",
                        help="also run, under fork and burst, the provider-only program with floor_tracer.py: "
                             "the least a tracer of mptrace's design does per fork child")
    parser.add_argument("--app", action="store_true",
                        help="run the program as a file that imports an application's libraries at top level "
                             "(OpenTelemetry's SDK, some of the standard library): spawn and forkserver children "
                             "re-import them, as an application's do; also prints traced - provider in ms")
    options = parser.parse_args()
    if options.runs < 3:
        parser.error("--runs must be at least 3, got %d" % options.runs)
    compile_mptrace()
    arms = ARMS + (("one span",) if options.span_floor else ())
    one_span = options.span_floor
    print("%-11s %9s %9s %9s %10s %10s %7s%s%s" % (
        "ms/start", "no OTel", "provider", "traced", "/provider", "/no OTel", "target",
        " %9s %10s" % ("1 span", "/provider") if one_span else "",
        " %9s %10s %13s" % ("floor", "/provider", "traced/floor") if options.floor else ""))
    for method in options.methods.split(","):
        with_floor = options.floor and method in FLOOR_METHODS
        medians = measure(method, options.runs, options.starts, options.burst,
                          arms + (("floor",) if with_floor else ()), options.app)
        bare, provider, traced = (medians[arm] for arm in ARMS)
        floor_columns = ""
        if with_floor:
            floor_columns = " %9.2f %9.2fx %12.2fx" % (medians["floor"], medians["floor"] / provider,
                                                         traced / medians["floor"])
        elif options.floor:
            floor_columns = " %9s %10s %13s" % ("-", "-", "-")
        print("%-11s %9.2f %9.2f %9.2f %9.2fx %9.2fx %6.2fx%s%s" % (
            method, bare, provider, traced, traced / provider, traced / bare, TARGETS.get(method, float("nan")),
            " %9.2f %9.2fx" % (medians["one span"], medians["one span"] / provider) if one_span else "",
            floor_columns))
        if options.app:
            print("%-11s %+8.2f ms added per start (traced - provider only)" % ("", traced - provider))
    print("(%s%d alternating runs per arm, each in a fresh interpreter; %s; Python %s, %d cores)" % (
        "the program as a file importing an application's libraries (--app); " if options.app else "",
        options.runs, "median of %d starts per run, burst: %d children" % (options.starts, options.burst),
        sys.version.split()[0], os.cpu_count() or 0))
    if options.floor:
        print("(floor: the provider-only program with benchmarks/floor_tracer.py, the least a tracer of mptrace's "
              "design does per fork child;\n fork and burst only: under spawn and forkserver the floor does not "
              "apply, its child's half comes through the fork; '-' there)")


if __name__ == "__main__":
    main()
