"""Programs that meet a fault while traced (tests/test_faults.py).

    python -m tests.programs.faults SCENARIO START_METHOD

With FAULTS_TRACE=1 mptrace is installed (on the provider the scenario builds)
and, at exit after mptrace's own exit work, ``mptrace.stats()`` is written as
JSON to FAULTS_STATS. What the program prints and its exit status must be the
same either way.
"""

import atexit
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from tests.programs import TEST_RESOURCE

TRACED = os.environ.get("FAULTS_TRACE") == "1"
tracer = trace.get_tracer("tests.faults")
exported = []  # names of the spans the scenario's exporter received


class Recording(SpanExporter):
    def __init__(self, seconds_per_export=0.0):
        self.seconds_per_export = seconds_per_export

    def export(self, spans):
        time.sleep(self.seconds_per_export)
        exported.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


class Raising(SpanExporter):
    def export(self, spans):
        raise RuntimeError("exporter broke")


RELEASE = threading.Event()  # set by the program's last atexit handler (see release_at_exit)


class Hanging(SpanExporter):
    """Once ``hanging`` is set, every export in the program's main process blocks until its last
    atexit handler runs: far longer than mptrace's own waits, as a backend that never answers."""

    hanging = False

    def export(self, spans):
        if Hanging.hanging and multiprocessing.parent_process() is None:
            RELEASE.wait()
        exported.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


def release_at_exit():
    """Registered before install(): runs after mptrace's exit work, before the SDK's shutdown."""
    print("atexit ran")
    sys.stdout.flush()
    RELEASE.set()


class RaisingProcessor(SpanProcessor):
    """Raises for the spans of other processes (those mptrace hands over), as a broken processor may."""

    def on_end(self, span):
        if span.resource.attributes.get("process.pid") not in (None, os.getpid()):
            raise RuntimeError("span processor broke")


def spans_then_exit(count, code=0):
    for index in range(count):
        with tracer.start_as_current_span("work") as span:
            span.set_attribute("index", index)
    sys.exit(code)


def wait_then_spans(event, count, code):
    event.wait(60)
    spans_then_exit(count, code)


def say_then_wait_then_spans(running, event, count):
    running.set()
    wait_then_spans(event, count, 0)


def spans_under_file_size_limit(limit, count):
    import resource

    size = os.fstat(_spool_fd()).st_size if _spool_fd() is not None else 0
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    spans_then_exit(count)


def _spool_fd():
    from mptrace._state import state

    writer = state.child.writer if state.child is not None else None
    return getattr(writer, "_fd", None)


def run_children(context, target, args_list):
    processes = [context.Process(target=target, args=args) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    print("exit codes", [process.exitcode for process in processes])


# -- scenarios ----------------------------------------------------------------

def spool_removed(context, provider):
    event = context.Event()
    process = context.Process(target=wait_then_spans, args=(event, 5, 3))
    process.start()
    if TRACED:
        from mptrace._state import state

        shutil.rmtree(state.tree["dir"])
    event.set()
    process.join(60)
    print("exit code", process.exitcode)
    run_children(context, spans_then_exit, [(2, 4)])  # started after the removal


def file_size_limit(context, provider):
    run_children(context, spans_under_file_size_limit, [(3000, 40)])


def processor_raises(context, provider):
    provider.add_span_processor(RaisingProcessor())
    run_children(context, spans_then_exit, [(3, 0), (2, 5)])


def exporter_raises(context, provider):
    provider.add_span_processor(SimpleSpanProcessor(Raising()))
    run_children(context, spans_then_exit, [(3, 0), (2, 5)])


def shut_down_early(context, provider):
    event = context.Event()
    process = context.Process(target=wait_then_spans, args=(event, 4, 0))
    process.start()
    provider.shutdown()
    event.set()
    process.join(60)
    print("exit code", process.exitcode)


def flood(context, provider):
    run_children(context, spans_then_exit, [(3000, 0)])


def signal_during_start(context, provider):
    interrupted = []

    def interrupt(signum, frame):
        interrupted.append(signum)

    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        processes = [context.Process(target=spans_then_exit, args=(1, 0)) for _ in range(8)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    print("exit codes", [process.exitcode for process in processes])


def shared_list_worker(shared, name, index):
    from multiprocessing import shared_memory

    memory = shared_memory.SharedMemory(name=name)
    memory.buf[index] = index + 1
    memory.close()
    shared.append(index * 10)
    with tracer.start_as_current_span("work"):
        pass


def managers_and_shared_memory(context, provider):
    from multiprocessing import shared_memory

    memory = shared_memory.SharedMemory(create=True, size=4)
    try:
        with context.Manager() as manager:
            shared = manager.list()
            run_children(context, shared_list_worker, [(shared, memory.name, i) for i in range(3)])
            print("list", sorted(shared))
        print("memory", bytes(memory.buf[:4]))
    finally:
        memory.close()
        memory.unlink()


def exporter_hangs(context, provider):
    """Children run and end, then the exporter hangs while one still runs: it ends at exit.

    (The hang begins once the last child runs: a SimpleSpanProcessor exports the spans
    mptrace ends in start() in the thread calling it, as it does the program's own.)"""
    run_children(context, spans_then_exit, [(2, 0), (1, 3)])
    running, event = context.Event(), context.Event()
    last = context.Process(target=say_then_wait_then_spans, args=(running, event, 3))  # joined at exit
    last.start()
    running.wait(60)  # it has opened both events: they may go at exit before multiprocessing joins it
    Hanging.hanging = True
    if TRACED:
        import mptrace

        outcome["flushed"] = mptrace.flush(0.5)
    event.set()
    if TRACED and os.environ.get("FAULTS_END") == "uninstall":
        import mptrace
        from mptrace._state import state

        collector = state.root.collector
        mptrace.uninstall()
        outcome["after_uninstall"] = dict(collector.counts, lost_reasons=dict(collector.lost_reasons))
    print("the last child is running")


def fork_inside(count):
    with tracer.start_as_current_span("before-fork"):
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("forked"):
                pass
            os._exit(7)
        _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)


def plain_fork(context, provider):
    pid = os.fork()
    if pid == 0:
        os._exit(9)
    _, status = os.waitpid(pid, 0)
    print("forked", status >> 8)
    run_children(context, fork_inside, [(1,)])


def no_memory_dirs(context, provider):
    run_children(context, spans_then_exit, [(2, 0)])


SCENARIOS = {f.__name__: f for f in (no_memory_dirs, spool_removed, file_size_limit, processor_raises, exporter_raises,
                                     shut_down_early, flood, signal_during_start, managers_and_shared_memory,
                                     plain_fork)}
SCENARIOS["hang_batch"] = SCENARIOS["hang_simple"] = exporter_hangs
outcome = {}  # what the traced run saw (mptrace.flush()'s result, ...), written with the stats
# The batch processor exports only when flushed (or at shutdown): so a flush meets the hanging export.
HANGING_BATCH = lambda: BatchSpanProcessor(Hanging(), schedule_delay_millis=60000)  # noqa: E731
PIPELINES = {"flood": lambda: BatchSpanProcessor(Recording(0.01), max_queue_size=64, max_export_batch_size=32, schedule_delay_millis=60000),
             "hang_batch": HANGING_BATCH, "hang_simple": lambda: SimpleSpanProcessor(Hanging())}


def write_stats():
    import mptrace

    if not Hanging.hanging:  # a flush would wait for it as long as it hangs
        trace.get_tracer_provider().force_flush()
    stats = mptrace.stats()
    stats["exported"] = list(exported)
    stats.update(outcome)
    from mptrace._state import state

    stats["spool_parent"] = os.path.dirname(state.tree["dir"]) if state.tree else None
    with open(os.environ["FAULTS_STATS"], "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    scenario, method = sys.argv[1], sys.argv[2]
    # FAULTS_SHUTDOWN_ON_EXIT=0: the program shuts its provider down itself (or never), so mptrace flushes at exit
    provider = TracerProvider(resource=TEST_RESOURCE, shutdown_on_exit=os.environ.get("FAULTS_SHUTDOWN_ON_EXIT") != "0")
    provider.add_span_processor(PIPELINES.get(scenario, lambda: SimpleSpanProcessor(Recording()))())
    trace.set_tracer_provider(provider)
    atexit.register(release_at_exit)  # first of the program's handlers: so it runs after all of mptrace's
    if TRACED:
        import mptrace

        atexit.register(write_stats)  # registered first: runs after mptrace's own exit work
        if scenario == "no_memory_dirs":
            from mptrace import _config

            _config.SHARED_MEMORY_DIRS = ("/no/dev/shm",)
        from mptrace import _install

        _install.EXIT_WAIT_SECONDS = 1.0  # rather than the SDK's 30 s, for a shorter test
        mptrace.install(tracer_provider=provider)
    SCENARIOS[scenario](multiprocessing.get_context(method), provider)
    sys.stdout.flush()
