"""The root's memory and descriptors over a long life of children: flat, or growing per child?

A program starts ``--children`` children (an empty target, default 10,000
under fork) one after another (``sequential``) and then again with as many
alive at once as there are cores (``burst``), each in a fresh interpreter, in
two arms set up as ``benchmarks/process_start.py``'s:

* ``provider only``: the application's ``TracerProvider`` with a
  ``BatchSpanProcessor`` (its exporter counts the spans and drops them) set
  as the global provider, no mptrace;
* ``traced``: the same plus ``mptrace.install()`` before the first start.

Every ``--every`` children, once every child so far is joined (reaped), the
program samples: its RSS (VmRSS), its open descriptors (/proc/self/fd), the
objects the garbage collector tracks, the files in mptrace's spool directory,
the length of the BatchSpanProcessor's queue, and the size of every structure
of mptrace's in the root that is filled per child (the children not yet seen
to exit, the collector's files, exits, lost markers, pending and deferred hand-overs,
the Popens and Connections the descriptor listing remembers, pools and
submissions, thread roles, caches). ``--tracemalloc`` adds the same two arms
again with tracemalloc on (slower), for the bytes Python allocated.

The figures are the growth per 1,000 children after the warm-up (the first
``--warmup`` children: the allocator, the SDK and mptrace's caches settle):
the least-squares slope over the samples, with the first and last sample.
A traced run also checks that every child's run span arrived.

    python benchmarks/memory_children.py [--children 10000] [--every 500] [--warmup 1000]
                                         [--method fork|forkserver|spawn] [--modes sequential,burst]
                                         [--tracemalloc]

forkserver and spawn children are slower to start: their default is 1,000.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_start import TARGET_MODULE  # noqa: E402
ARMS = ("provider only", "traced")
DEFAULT_CHILDREN = {"fork": 10000, "forkserver": 1000, "spawn": 1000}

PROGRAM = r'''
import gc, json, multiprocessing, os, sys

ARM, METHOD, MODE, CHILDREN, EVERY, TRACEMALLOC, RATIO = (
    sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1", float(sys.argv[7]))
if TRACEMALLOC:
    import tracemalloc
    tracemalloc.start()

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased


class CountRuns(SpanExporter):
    runs = 0

    def export(self, spans):
        CountRuns.runs += sum(1 for span in spans if span.name == "mp.process.run")
        return SpanExportResult.SUCCESS


processor = BatchSpanProcessor(CountRuns())
provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(RATIO)))
provider.add_span_processor(processor)
trace.set_tracer_provider(provider)
if ARM == "traced":
    import mptrace
    mptrace.install()


from process_start_target import noop  # importable by spawn and forkserver children: see process_start.py

failed = 0  # children that exited with an error


def batch_queue_length():
    """Spans waiting in the BatchSpanProcessor (the SDK's, bounded at max_queue_size)."""
    inner = getattr(processor, "_batch_processor", processor)  # the SDK moved it in 1.29
    for name in ("_queue", "queue"):
        queue = getattr(inner, name, None)
        if queue is not None:
            return len(queue)
    return -1


def mptrace_structures():
    """{name: size} of everything mptrace fills per child in the root."""
    if ARM != "traced":
        return {}
    from mptrace import _channels, _fds, _modstate, _pool, _tasks
    from mptrace._state import state

    collector = state.root.collector
    sizes = {
        "state.children": len(state.children),
        "state.forkservers": len(state.forkservers),
        "collector._files": len(collector._files),
        "collector._exited": len(collector._exited),
        "collector._lost_marked": len(collector._lost_marked),
        "collector._pending": len(collector._pending),
        "collector._later": len(collector._later),
        "collector._deferred": len(collector._deferred),
        "collector.lost_reasons": len(collector.lost_reasons),
        "_fds._plumbing": len(_fds._plumbing),
        "_fds._described": len(_fds._described[1]),
        "_pool.pools": len(_pool.pools),
        "_pool.submissions": len(_pool.submissions),
        "_tasks.open_pools": len(_tasks.open_pools),
        "_channels.roles": len(_channels.dumps_roles) + len(_channels.loads_roles),
        "_modstate.caches": sum(len(c) for c in (_modstate._class_decisions, _modstate._descriptor_types,
                                                  _modstate._atoms_of, _modstate._remembered_baselines,
                                                  _modstate._real_directories, _modstate._dotted_prefixes)),
    }
    try:
        sizes["spool files"] = len(os.listdir(state.tree["dir"]))
    except OSError:
        sizes["spool files"] = -1
    return sizes


def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def sample(started):
    found = {
        "children": started,
        "rss_kb": rss_kb(),
        "fds": len(os.listdir("/proc/self/fd")),
        "gc_objects": len(gc.get_objects()),
        "batch_queue": batch_queue_length(),
    }
    if TRACEMALLOC:
        found["tracemalloc_kb"] = tracemalloc.get_traced_memory()[0] // 1024
    found.update(mptrace_structures())
    return found


def run(context):
    alive = 1 if MODE == "sequential" else (os.cpu_count() or 2)
    running = []
    samples = [sample(0)]
    for started in range(1, CHILDREN + 1):
        if len(running) >= alive:
            reap(running.pop(0))
        process = context.Process(target=noop)
        process.start()
        running.append(process)
        if started % EVERY == 0:
            while running:  # every child so far reaped, then look
                reap(running.pop(0))
            samples.append(sample(started))
    for process in running:
        reap(process)
    return samples


def reap(process):
    global failed
    process.join()
    failed += process.exitcode != 0


if __name__ == "__main__":
    samples = run(multiprocessing.get_context(METHOD))
    arrived = -1
    if ARM == "traced":
        mptrace.flush()
        provider.force_flush()
        arrived = CountRuns.runs
    print(json.dumps({"samples": samples, "arrived": arrived, "failed": failed}))
'''


def one_run(arm, options, mode, children, every, tracemalloc):
    method = options.method
    with tempfile.TemporaryDirectory(prefix="mptrace-bench-") as target_dir:
        with open(os.path.join(target_dir, "process_start_target.py"), "w") as module:
            module.write(TARGET_MODULE)
        result = subprocess.run(
            [sys.executable, "-c", PROGRAM, arm, method, mode, str(children), str(every),
             "1" if tracemalloc else "0", str(options.sample_ratio)],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, target_dir])), capture_output=True, text=True,
            cwd=target_dir, timeout=3600)
    if result.returncode:
        raise SystemExit("the %s arm failed (%s, %s):\n%s" % (arm, method, mode, result.stderr))
    found = json.loads(result.stdout.splitlines()[-1])
    if found["failed"]:
        raise SystemExit("the %s arm (%s, %s): %d children exited with an error:\n%s" % (
            arm, method, mode, found["failed"], result.stderr[-2000:]))
    if arm == "traced" and options.sample_ratio >= 1 and found["arrived"] != children:
        raise SystemExit("traced %s %s: %d of %d children's run spans arrived" % (
            method, mode, found["arrived"], children))
    return found["samples"]


def slope_per_thousand(samples, key):
    """Least-squares growth of ``key`` per 1,000 children."""
    xs = [s["children"] for s in samples]
    ys = [s[key] for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        return 0.0
    return 1000.0 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


def report(title, by_arm, warmup):
    """One table, the arms side by side: per measure, its value after the warm-up, its highest since,
    at the end, and its growth per 1,000 children after the warm-up."""
    print("\n%s" % title)
    print("  %-24s" % "" + "".join(" | %-38s" % arm for arm in by_arm))
    print("  %-24s" % "measure" + " | %8s %8s %8s %10s" % ("warm", "max", "end", "per 1,000") * len(by_arm))
    keys = []
    for samples in by_arm.values():
        keys += [key for key in samples[-1] if key != "children" and key not in keys]
    for key in keys:
        line = "  %-24s" % key
        for samples in by_arm.values():
            settled = [s for s in samples if s["children"] >= warmup] or samples[-1:]
            if key not in settled[0]:
                line += " | %38s" % "-"
                continue
            line += " | %8d %8d %8d %+10.1f" % (settled[0][key], max(s[key] for s in settled), settled[-1][key],
                                                 slope_per_thousand(settled, key))
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="fork", choices=("fork", "forkserver", "spawn"))
    parser.add_argument("--children", type=int, help="children per run (fork: 10,000; others: 1,000)")
    parser.add_argument("--every", type=int, help="children between samples (default: children / 20)")
    parser.add_argument("--warmup", type=int, help="children before the growth is measured (default: children / 10)")
    parser.add_argument("--modes", default="sequential,burst")
    parser.add_argument("--tracemalloc", action="store_true", help="also run both arms under tracemalloc")
    parser.add_argument("--sample-ratio", type=float, default=1.0,
                        help="the provider samples this fraction of traces (each child is its own trace)")
    options = parser.parse_args()
    children = options.children or DEFAULT_CHILDREN[options.method]
    every = options.every or max(1, children // 20)
    warmup = options.warmup if options.warmup is not None else children // 10
    for mode in options.modes.split(","):
        title = "%s, %s: %d children (%s alive), sampled every %d once all are reaped; growth after %d" % (
            options.method, mode, children, 1 if mode == "sequential" else os.cpu_count() or 2, every, warmup)
        found = {arm: one_run(arm, options, mode, children, every, False) for arm in ARMS}
        report(title, found, warmup)
        if options.tracemalloc:
            found = {arm: one_run(arm, options, mode, children, every, True) for arm in ARMS}
            report(title + ", under tracemalloc", found, warmup)
    print("\n(rss_kb, tracemalloc_kb in KiB; Python %s, %d cores; each arm a fresh interpreter)" % (
        sys.version.split()[0], os.cpu_count() or 0))


if __name__ == "__main__":
    main()
