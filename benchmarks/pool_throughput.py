"""Pool throughput, traced vs untraced, side by side in one run.

    python benchmarks/pool_throughput.py [--rounds 7] [--start-method fork]

Two workloads on ``Pool(2)`` (issue 4):

* ``apply_async``: 20,000 tiny tasks submitted, then every result collected;
* ``map``: ``Pool.map`` over 200,000 items with ``chunksize=1000``.

Each round runs a block untraced and the same block with mptrace installed
(on an SDK provider with a ``BatchSpanProcessor`` and an exporter that drops
spans, so export costs what it would in production, minus the network), in
turn first and second. The pool is created before the clock starts and closed
after it stops; only the work is timed, after one untimed run of the workload
on the same pool (every worker started and warm). ``+flush`` adds
``mptrace.flush()`` (every worker's spans collected and exported) to the
traced time. Medians are quoted; ``ratio`` is the median of the rounds' own
ratios (traced over untraced, each round's pair run back to back), which a
machine whose speed drifts during the run disturbs less than a ratio of
medians would. ``--noise`` adds a row that compares untraced with untraced
the same way: how far apart two identical blocks come out on this machine.

Extra rows show what the defaults avoid: ``task_spans_per_second=None`` (a
span pair for every task) and ``task_spans="item"`` (a span per item of a
chunk). Targets: map <= 1.05x, apply_async <= 1.5x with the defaults.
"""

import argparse
import multiprocessing
import statistics
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import mptrace

APPLY_TASKS = 20000
MAP_ITEMS = 200000
MAP_CHUNKSIZE = 1000


def square(x):
    return x * x


class CountingExporter(SpanExporter):
    """Drops spans after counting them by name."""

    def __init__(self):
        self.counts = {}

    def export(self, spans):
        for span in spans:
            self.counts[span.name] = self.counts.get(span.name, 0) + 1
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


exporter = CountingExporter()
provider = TracerProvider(resource=Resource({"service.name": "bench"}))
provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536, max_export_batch_size=4096))
tracer = provider.get_tracer("bench")


def apply_async_block(pool):
    began = time.perf_counter()
    results = [pool.apply_async(square, (i,)) for i in range(APPLY_TASKS)]
    for result in results:
        result.get()
    return time.perf_counter() - began


def map_block(pool):
    began = time.perf_counter()
    pool.map(square, range(MAP_ITEMS), chunksize=MAP_CHUNKSIZE)
    return time.perf_counter() - began


def one_block(context, block, options, repeats):
    """([seconds of work], [seconds of work + flush]); traced when ``options`` is not None.

    One pool per block; the workload runs once untimed first, so every worker
    has started and warmed up (a worker still starting would steal a core from
    the timed work), then ``repeats`` timed times.
    """
    if options is not None:
        mptrace.install(tracer_provider=provider, **options)
    seconds, with_flush = [], []
    try:
        with tracer.start_as_current_span("bench"):
            pool = context.Pool(2)
            try:
                block(pool)
                if options is not None:
                    assert mptrace.flush(30), "flush timed out"
                for _ in range(repeats):
                    elapsed = block(pool)
                    seconds.append(elapsed)
                    if options is not None:
                        began = time.perf_counter()
                        assert mptrace.flush(30), "flush timed out"
                        elapsed += time.perf_counter() - began
                    with_flush.append(elapsed)
            finally:
                pool.close()
                pool.join()
    finally:
        if options is not None:
            mptrace.uninstall()
    return seconds, with_flush


def compare(context, block, options, rounds, repeats):
    """Medians of (untraced, traced, traced + flush, the rounds' traced/untraced ratios, and with flush).

    ``options`` None compares untraced with untraced (the machine's noise).
    """
    untraced, traced, flushed, ratios, flushed_ratios = [], [], [], [], []
    for round_number in range(rounds):
        if round_number % 2 == 0:  # who goes first alternates
            plain = one_block(context, block, None, repeats)[0]
            seconds, with_flush = one_block(context, block, options, repeats)
        else:
            seconds, with_flush = one_block(context, block, options, repeats)
            plain = one_block(context, block, None, repeats)[0]
        untraced += plain
        traced += seconds
        flushed += with_flush
        ratios.append(statistics.median(seconds) / statistics.median(plain))
        flushed_ratios.append(statistics.median(with_flush) / statistics.median(plain))
    return tuple(statistics.median(values) for values in (untraced, traced, flushed, ratios, flushed_ratios))


NOISE_ROWS = (  # untraced against untraced: the noise floor of the ratios below
    ("noise: untraced apply_async", apply_async_block, None),
    ("noise: untraced map", map_block, None),
)
ROWS = (
    ("apply_async x20000", apply_async_block, {}),
    ("map 200k, chunks of 1000", map_block, {}),
    ("apply_async, no rate limit", apply_async_block, {"task_spans_per_second": None}),
    ("map, task_spans=item", map_block, {"task_spans": "item"}),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="timed maps per pool (apply_async: 1)")
    parser.add_argument("--start-method", default="fork", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--defaults-only", action="store_true", help="skip the rows with non-default options")
    parser.add_argument("--only", choices=("apply_async", "map"), help="only the rows of this workload")
    parser.add_argument("--noise", action="store_true", help="also compare untraced with untraced")
    options = parser.parse_args()
    context = multiprocessing.get_context(options.start_method)
    rows = ROWS[:2] if options.defaults_only else ROWS
    if options.noise:
        rows = NOISE_ROWS + tuple(rows)
    if options.only:
        block = {"apply_async": apply_async_block, "map": map_block}[options.only]
        rows = [row for row in rows if row[1] is block]
    print("start method %s, %d rounds (maps: %d timed per pool), medians; ratio: of each round's pair" % (
        options.start_method, options.rounds, options.repeats))
    print("%-28s %12s %12s %12s %7s %7s" % ("workload", "untraced ms", "traced ms", "+flush ms", "ratio",
                                            "+flush"))
    for name, block, install_options in rows:
        exporter.counts.clear()
        # The rows with non-default options are slow by design: fewer rounds.
        repeats = options.repeats if block is map_block and not install_options else 1
        rounds = options.rounds if not install_options else min(options.rounds, 3)
        untraced, traced, flushed, ratio, flushed_ratio = compare(context, block, install_options, rounds, repeats)
        print("%-28s %12.1f %12.1f %12.1f %6.2fx %6.2fx" % (
            name, untraced * 1e3, traced * 1e3, flushed * 1e3, ratio, flushed_ratio))
        if install_options is None:
            continue
        provider.force_flush()
        blocks = rounds * (repeats + 1)  # the untimed warm-up is traced too
        tasks, runs = exporter.counts.get("mp.task", 0), exporter.counts.get("mp.task.run", 0)
        assert tasks and runs, "no task spans were exported: %r" % exporter.counts
        rates = ""
        if block is apply_async_block:
            rates = "; %.0f tasks/s untraced, %.0f traced" % (APPLY_TASKS / untraced, APPLY_TASKS / traced)
        print("%-28s spans per round: %d mp.task, %d mp.task.run, %d mp.task.item%s" % (
            "", tasks // blocks, runs // blocks, exporter.counts.get("mp.task.item", 0) // blocks, rates))


if __name__ == "__main__":
    main()
