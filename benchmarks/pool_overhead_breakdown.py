"""Where a traced Pool.map spends its extra time: CPU per thread and per worker.

    python benchmarks/pool_overhead_breakdown.py [--rounds 5] [--maps 20] [--start-method fork]

Runs ``Pool(2).map`` over 200,000 items (chunksize 1000) ``--maps`` times on a
warmed pool, in each setup below, alternating, and prints medians per map of the
wall time and of the CPU time of the pool's worker-handler, task-handler and
result-handler threads and of its two workers (read from /proc's schedstat,
in nanoseconds; Linux only), and the median of each round's wall-time ratio
to the untraced setup of the same round.

The worker-handler thread is the one to watch: CPython's ``_handle_workers``
waits on the result queue's reader among its sentinels, so while a result is
waiting to be read it spins, polling every worker; any delay in the
result-handler thread feeds that spin, which takes the GIL from the others.
The setups:

* ``untraced``: mptrace not installed;
* ``counting only``: installed, but the pool itself not traced (what issue 3's
  per-message counting costs on a pool's traffic);
* ``counting, parent only`` and ``counting, workers only``: the same, with the
  workers' (or the parent's) picklers put back to multiprocessing's own, so
  only one side counts;
* ``context only``: ``task_spans_per_second=1`` (tasks carry the caller's
  context; almost none get spans);
* ``defaults``.
"""

import argparse
import multiprocessing
import multiprocessing.pool
import statistics
import sys
import threading
import time

import multiprocessing.connection
import multiprocessing.queues

import mptrace
from mptrace import _pool
from mptrace._state import state

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pool_throughput import MAP_CHUNKSIZE, MAP_ITEMS, provider, square, tracer  # noqa: E402

COLUMNS = ("wall", "handler", "tasks", "results", "workers")
# (name, install() options or None, whether the pool is traced, who counts messages)
SETUPS = (
    ("untraced", None, True, None),
    ("counting only", {}, False, "both"),
    ("counting, parent only", {}, False, "parent"),
    ("counting, workers only", {}, False, "workers"),
    ("context only", {"task_spans_per_second": 1}, True, "both"),
    ("defaults", {}, True, "both"),
)
CHANNEL_MODULES = (multiprocessing.connection, multiprocessing.queues)


def _picklers():
    """What the channel modules call ``_ForkingPickler`` now."""
    return [module._ForkingPickler for module in CHANNEL_MODULES]


def _set_picklers(picklers):
    for module, pickler in zip(CHANNEL_MODULES, picklers):
        module._ForkingPickler = pickler


def _uncounted():
    """multiprocessing's own picklers back in this process (a worker's initializer)."""
    _set_picklers([state.patches.original(module, "_ForkingPickler") for module in CHANNEL_MODULES])


def _cpu_ms(task_directory):
    with open(task_directory + "/schedstat") as f:
        return int(f.read().split()[0]) / 1e6  # nanoseconds on a CPU


def _named(name, function):
    """The pool's helper thread running ``function`` is known by ``name``."""

    def run(*args, **kwargs):
        threading.current_thread().mptrace_benchmark_name = name
        return function(*args, **kwargs)

    return staticmethod(run)


def _cpu(pool):
    cpu = {}
    for thread in threading.enumerate():
        name = getattr(thread, "mptrace_benchmark_name", None)
        if name:
            cpu[name] = _cpu_ms("/proc/self/task/%d" % thread.native_id)
    cpu["workers"] = sum(_cpu_ms("/proc/%d" % worker.pid) for worker in pool._pool)
    return cpu


def one_block(context, options, trace_pool, counting, maps):
    if options is not None:
        mptrace.install(tracer_provider=provider, **options)
    original_open = _pool._open_pool
    if not trace_pool:
        _pool._open_pool = lambda pool: None
    counting_picklers = _picklers()
    try:
        with tracer.start_as_current_span("bench"):
            pool = context.Pool(2, initializer=_uncounted if counting == "parent" else None)
            if counting == "workers":  # they have started: the parent stops counting
                _uncounted()
            try:
                pool.map(square, range(MAP_ITEMS), chunksize=MAP_CHUNKSIZE)  # warm-up
                before, walls = _cpu(pool), []
                for _ in range(maps):
                    began = time.perf_counter()
                    pool.map(square, range(MAP_ITEMS), chunksize=MAP_CHUNKSIZE)
                    walls.append(time.perf_counter() - began)
                after = _cpu(pool)
            finally:
                pool.close()
                pool.join()
    finally:
        _set_picklers(counting_picklers)
        _pool._open_pool = original_open
        if options is not None:
            mptrace.uninstall()
    row = {"wall": statistics.median(walls) * 1e3}
    row.update((key, (after[key] - before[key]) / maps) for key in COLUMNS[1:])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--maps", type=int, default=20)
    parser.add_argument("--start-method", default="fork", choices=multiprocessing.get_all_start_methods())
    options = parser.parse_args()
    pool_class = multiprocessing.pool.Pool
    pool_class._handle_workers = classmethod(_named("handler", pool_class._handle_workers.__func__).__func__)
    pool_class._handle_tasks = _named("tasks", pool_class._handle_tasks)
    pool_class._handle_results = _named("results", pool_class._handle_results)
    context = multiprocessing.get_context(options.start_method)
    rows = {name: [] for name, _, _, _ in SETUPS}
    for _ in range(options.rounds):
        for name, install_options, trace_pool, counting in SETUPS:
            rows[name].append(one_block(context, install_options, trace_pool, counting, options.maps))
        untraced_wall = rows["untraced"][-1]["wall"]
        for found in rows.values():
            found[-1]["ratio"] = found[-1]["wall"] / untraced_wall
    print("%s, per map, medians of %d rounds; ms" % (options.start_method, options.rounds))
    print("%-23s %8s %7s %15s %12s %14s %8s" % ("setup", "wall", "ratio", "worker handler", "task thread",
                                                 "result thread", "workers"))
    for name, found in rows.items():
        wall, handler, tasks, results, workers = (statistics.median(row[key] for row in found) for key in COLUMNS)
        ratio = statistics.median(row["ratio"] for row in found)
        print("%-23s %8.1f %6.3fx %15.1f %12.1f %14.1f %8.1f" % (name, wall, ratio, handler, tasks, results,
                                                                workers))


if __name__ == "__main__":
    main()
