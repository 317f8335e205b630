"""What a traced fork child is spared: the structural facts behind the start-up figures.

No timings here (they belong to benchmarks/process_start.py): each test checks
a fact that makes a fork child cheap, in real processes.
"""

import multiprocessing
import subprocess
import sys
import threading
import time
import weakref

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace
from mptrace.testing import start_methods
from tests.programs import TEST_RESOURCE
from tests.subprocesses import ROOT

pytestmark = pytest.mark.skipif("fork" not in start_methods(), reason="no fork start method here")

QUEUED = 20
# Weak references to spans that only the parent's batch processor holds (a fork child inherits them).
_queued_spans = []


def exit_3_if_a_queued_span_was_freed():
    sys.exit(0 if all(ref() is not None for ref in _queued_spans) else 3)


@pytest.fixture
def batched():
    """mptrace installed on a provider whose BatchSpanProcessor keeps spans queued (no export for minutes)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=TEST_RESOURCE)
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=600000)
    provider.add_span_processor(processor)
    mptrace.install(tracer_provider=provider)
    yield provider, exporter, processor
    mptrace.uninstall()
    provider.shutdown()


def queue_spans(provider):
    """QUEUED spans ended, waiting in the provider's batch processor (it exports only at shutdown or flush)."""
    tracer = provider.get_tracer("tests")
    for _ in range(QUEUED):
        tracer.start_span("queued").end()


def test_a_fork_child_frees_none_of_the_spans_queued_in_its_parent(batched):
    """The SDK clears its batch queue in every fork child; the spans in it must not be freed there.

    Freeing them writes to every page that holds them: copy-on-write faults,
    0.8 ms per child with a few dozen spans queued, and growing with the queue.
    """
    provider, exporter, processor = batched
    queue_spans(provider)
    queue = _queue_of(processor)
    assert len(queue) == QUEUED
    _queued_spans[:] = [weakref.ref(span) for span in queue]  # the copies the processor queued
    del queue
    process = multiprocessing.get_context("fork").Process(target=exit_3_if_a_queued_span_was_freed)
    process.start()
    process.join(60)
    assert process.exitcode == 0, "the fork child freed spans its parent had queued for export"
    assert all(ref() is not None for ref in _queued_spans), "the parent lost queued spans"
    assert mptrace.flush()
    assert provider.force_flush()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("queued") == QUEUED and names.count("mp.process.run") == 1


def do_nothing():
    pass


# The parent's own queue object, as the fork child inherits it.
_parent_queue = []


def exit_with_the_parent_queues_length():
    sys.exit(len(_parent_queue[0]))


def test_a_fork_child_never_touches_the_spans_queued_in_its_parent(batched):
    """The child's processor gets an empty queue to clear: the parent's queue, as the child has it, keeps
    every span (clearing it would write to each span's page: a copy-on-write fault each)."""
    provider, exporter, processor = batched
    queue_spans(provider)
    _parent_queue[:] = [_queue_of(processor)]
    process = multiprocessing.get_context("fork").Process(target=exit_with_the_parent_queues_length)
    process.start()
    process.join(60)
    assert process.exitcode == QUEUED, "the fork child's processor cleared the parent's queue"
    assert _queue_of(processor) is _parent_queue[0], "the parent's processor did not get its own queue back"
    assert mptrace.flush()
    assert provider.force_flush()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("queued") == QUEUED and names.count("mp.process.run") == 1


_child_processor = []


def start_a_grandchild_then_exit_1_if_given_the_parents_queue():
    grandchild = multiprocessing.get_context("fork").Process(target=do_nothing)
    grandchild.start()
    grandchild.join(60)
    sys.exit(1 if _queue_of(_child_processor[0]) is _parent_queue[0] else 0)


def test_a_fork_child_that_forks_leaves_its_parents_swap_alone(batched):
    """A fork child inherits the record of the swap its parent was making at the fork; when it forks in
    turn, its own processor must not be handed the parent's queue (and the parent's spans) from it."""
    provider, exporter, processor = batched
    queue_spans(provider)
    _parent_queue[:] = [_queue_of(processor)]
    _child_processor[:] = [processor]
    fork = multiprocessing.get_context("fork")
    process = fork.Process(target=start_a_grandchild_then_exit_1_if_given_the_parents_queue)
    process.start()
    process.join(60)
    assert process.exitcode == 0, "the fork child gave its processor the parent's queue"
    assert mptrace.flush()
    assert provider.force_flush()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("queued") == QUEUED and names.count("mp.process.run") == 2


def test_spans_ended_while_a_fork_has_the_queue_swapped_are_all_exported():
    """Spans ended inside the fork window (at-fork hooks registered before install() run there) land in
    the detour and come back; a late writer that kept the detour is forwarded to the queue."""
    result = subprocess.run([sys.executable, "-m", "tests.programs.fork_window_spans"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    ended, exported, runs, swapped = map(int, result.stdout.split())
    assert swapped == 10, "the processor's queue was not swapped for every fork"
    assert exported == ended == 22, "spans ended during a fork were lost or doubled"
    assert runs == 10


def test_spans_another_thread_ends_during_forks_are_all_exported():
    """A thread ending spans all the time while the main thread forks: none is lost, and the
    processor's worker keeps exporting (its queue is large enough that the SDK itself drops nothing)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=TEST_RESOURCE)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=10 ** 7, schedule_delay_millis=50))
    mptrace.install(tracer_provider=provider)
    try:
        _end_spans_while_forking(provider, exporter)
    finally:
        mptrace.uninstall()
        provider.shutdown()


def _end_spans_while_forking(provider, exporter):
    tracer = provider.get_tracer("tests")
    stop = threading.Event()
    ended = []

    def end_spans():
        while not stop.is_set() and len(ended) < 20000:
            tracer.start_span("busy").end()
            ended.append(1)
            time.sleep(0)

    thread = threading.Thread(target=end_spans)
    thread.start()
    try:
        context = multiprocessing.get_context("fork")
        for _ in range(30):
            process = context.Process(target=do_nothing)
            process.start()
            process.join(60)
            assert process.exitcode == 0
    finally:
        stop.set()
        thread.join()
    assert mptrace.flush(timeout=120)
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("busy") == len(ended) and names.count("mp.process.run") == 30


def _queue_of(processor):
    """The processor's queue of spans to export (SDK 1.3x and later, then before)."""
    batch = getattr(processor, "_batch_processor", processor)
    queue = getattr(batch, "_queue", None)
    return queue if queue is not None else batch.queue


def _output_lines(program):
    """The lines ``tests.programs.<program>`` printed; it must exit with 0."""
    result = subprocess.run([sys.executable, "-m", "tests.programs." + program], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


# What a traced fork child may run of mptrace before its target: every function a fork child runs for the
# first time costs it copy-on-write faults (its code and the objects it touches), about 3 us each on a VM
# (benchmarks/fault_cost.py).
FORK_CHILD_BUDGET = 22


def test_a_fork_child_runs_few_of_mptraces_functions_before_its_target():
    *ran, writes, exit_line = _output_lines("fork_child_work")
    assert exit_line == "exit code 0"
    assert writes == "writes 1", "the spool file's header and the run span's START go in one write"
    assert "_otel_child:wire" not in ran, "the parent should have found nothing to wire in a fork child"
    assert "_randomstate:states" not in ran, "the parent should have recorded that there is nothing to hash"
    assert len(ran) <= FORK_CHILD_BUDGET, "a fork child runs %d of mptrace's functions before its target:\n%s" % (
        len(ran), "\n".join(ran))


# What a traced fork child may run of mptrace after its target: its run span's END, from the template its
# parent built (see prepare_fork_child). Every function it runs for the first time there costs it
# copy-on-write faults while os._exit, and so its parent's join(), waits. One of them is the hook of
# multiprocessing.util._exit_function, which names the message of a sys.exit("...") ending run().
FORK_CHILD_END_BUDGET = 6


def test_a_fork_child_runs_few_of_mptraces_functions_after_its_target():
    *ran, exit_line, clean_runs = _output_lines("fork_child_end_work")
    assert exit_line == "exit code 0"
    assert clean_runs == "1", "the child's run span did not arrive ended by the child, with exit code 0"
    assert len(ran) <= FORK_CHILD_END_BUDGET, "a fork child runs %d of mptrace's functions after its target:\n%s" % (
        len(ran), "\n".join(ran))
