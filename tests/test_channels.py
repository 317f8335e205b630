"""Pickling on queues and connections: totals on the enclosing span, spans for big ones, failures."""

import multiprocessing
import pickle
from multiprocessing import connection, queues, reduction

import pytest

import mptrace
from mptrace import _trailer
from mptrace._state import state
from tests import targets
from tests.conftest import traced_with
from tests.programs import in_memory_pipeline
from tests.spans import assert_no_orphans, assert_one_trace, is_error, named, one, parent_of, pid_of

SPAN_BYTES = 64 * 1024
MESSAGES = [{"task": i, "payload": list(range(i))} for i in range(20)]
BIG = b"x" * (3 * SPAN_BYTES)


def pickled_size(*messages):
    return sum(len(reduction.ForkingPickler.dumps(m)) for m in messages)


@pytest.fixture
def traced():
    """Installed with a 64 KiB threshold for a span of its own."""
    yield from traced_with(pickle_span_bytes=SPAN_BYTES, pickle_span_seconds=10.0)


def echo_through(context, traced, messages, target=targets.echo):
    """In a span "work": send ``messages`` to a child that echoes them back."""
    with traced.tracer.start_as_current_span("work"):
        inbox, outbox = context.Queue(), context.Queue()
        child = context.Process(target=target, args=(inbox, outbox))
        child.start()
        for message in messages:
            inbox.put(message)
            assert outbox.get(timeout=30) == message
        inbox.put(None)
        child.join(30)
        inbox.close()
        inbox.join_thread()  # the feeder thread has pickled everything
    assert child.exitcode == 0
    return traced.spans()


def totals(span, channel):
    """{"pickled": (count, bytes), "unpickled": (count, bytes)} on ``channel``, from span attributes."""
    a = span.attributes
    return {
        "pickled": (a.get("mp.pickle.%s.count" % channel), a.get("mp.pickle.%s.bytes" % channel)),
        "unpickled": (a.get("mp.unpickle.%s.count" % channel), a.get("mp.unpickle.%s.bytes" % channel)),
    }


def test_small_queue_messages_are_counted_on_the_enclosing_span(traced, context):
    spans = echo_through(context, traced, MESSAGES)
    sent, echoed = pickled_size(*MESSAGES, None), pickled_size(*MESSAGES)
    work, run = one(spans, "work"), one(spans, "mp.process.run")
    # The root put every message and None (pickled in its feeder thread, counted where put() ran).
    assert totals(work, "queue") == {"pickled": (len(MESSAGES) + 1, sent), "unpickled": (len(MESSAGES), echoed)}
    assert totals(run, "queue") == {"pickled": (len(MESSAGES), echoed), "unpickled": (len(MESSAGES) + 1, sent)}
    assert work.attributes["mp.pickle.queue.seconds"] > 0
    assert not named(spans, "mp.pickle") or all(
        s.attributes["mp.pickle.channel"] in ("process", "preparation") for s in named(spans, "mp.pickle"))
    assert not named(spans, "mp.unpickle")


def test_a_users_span_in_the_child_gets_the_childs_totals(traced, context):
    spans = echo_through(context, traced, MESSAGES, target=targets.echo_in_span)
    child_work = one(spans, "child-work")
    assert totals(child_work, "queue") == {
        "pickled": (len(MESSAGES), pickled_size(*MESSAGES)),
        "unpickled": (len(MESSAGES) + 1, pickled_size(*MESSAGES, None)),
    }
    run = one(spans, "mp.process.run")
    assert "mp.pickle.queue.count" not in run.attributes
    assert parent_of(spans, child_work) is run


def test_a_big_message_gets_spans_where_it_was_put_and_got(traced, context):
    spans = echo_through(context, traced, [BIG])
    assert_one_trace(spans)
    assert_no_orphans(spans)
    work, run = one(spans, "work"), one(spans, "mp.process.run")
    pickles = [s for s in named(spans, "mp.pickle") if s.attributes["mp.pickle.channel"] == "queue"]
    unpickles = named(spans, "mp.unpickle")
    assert sorted(parent_of(spans, s).name for s in pickles) == ["mp.process.run", "work"]
    assert sorted(parent_of(spans, s).name for s in unpickles) == ["mp.process.run", "work"]
    for span in pickles + unpickles:
        assert span.attributes["mp.pickle.bytes"] == pickled_size(BIG)
        assert span.attributes["mp.pickle.type"] == "bytes"
        assert span.attributes["mp.pickle.channel"] == "queue"
        assert span.end_time > span.start_time
    # Each consumer's mp.unpickle links back to the producer's mp.pickle (a link, not a parent).
    for unpickle in unpickles:
        [link] = unpickle.links
        [producer] = [s for s in pickles if s.context.span_id == link.context.span_id]
        assert producer.context.trace_id == link.context.trace_id
        assert pid_of(producer) != pid_of(unpickle)
    [root_pickle] = [s for s in pickles if parent_of(spans, s) is work]
    assert root_pickle.resource is work.resource  # made in the root (children's spans carry their own)
    # The big message is counted in the totals too.
    assert totals(work, "queue")["pickled"] == (2, pickled_size(BIG, None))
    assert totals(run, "queue")["unpickled"] == (2, pickled_size(BIG, None))


def test_pipe_traffic_is_counted_on_the_connection_channel(traced, context):
    with traced.tracer.start_as_current_span("work"):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=targets.send_over, args=(writer, MESSAGES + [BIG]))
        child.start()
        writer.close()
        received = [reader.recv() for _ in range(len(MESSAGES) + 1)]
        child.join(30)
    assert received == MESSAGES + [BIG]
    spans = traced.spans()
    work, run = one(spans, "work"), one(spans, "mp.process.run")
    size = pickled_size(*MESSAGES, BIG)
    assert totals(work, "connection")["unpickled"] == (len(MESSAGES) + 1, size)
    assert totals(run, "connection")["pickled"] == (len(MESSAGES) + 1, size)
    big_send = one(spans, "mp.pickle", **{"mp.pickle.channel": "connection"})
    big_receive = one(spans, "mp.unpickle", **{"mp.pickle.channel": "connection"})
    assert parent_of(spans, big_send) is run
    assert parent_of(spans, big_receive) is work


def test_a_queue_a_child_makes_while_it_runs_counts_with_the_trees_thresholds(traced, context):
    """A spawn child loads what counts pickles only when its code imports a channel module: it counts from
    then on, with the thresholds of the process tree (64 KiB here, not the default 1 MiB)."""
    child = context.Process(target=targets.queue_made_here, args=(len(BIG),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    spans = traced.spans()
    run = one(spans, "mp.process.run")
    big_put = one(spans, "mp.pickle", **{"mp.pickle.channel": "queue"})
    big_get = one(spans, "mp.unpickle", **{"mp.pickle.channel": "queue"})
    assert parent_of(spans, big_put) is run and parent_of(spans, big_get) is run
    assert totals(run, "queue")["unpickled"] == (1, pickled_size(BIG))


def test_a_queue_a_child_makes_in_its_own_span_counts_on_that_span(traced, context):
    """A spawn child wires OpenTelemetry at run() and loads what counts pickles only when its code imports a
    channel module: from then on, pickles count on the span current where they are made, not on the run."""
    child = context.Process(target=targets.queue_made_in_a_span, args=(len(BIG),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    spans = traced.spans()
    work, run = one(spans, "child-work"), one(spans, "mp.process.run")
    if context.get_start_method() == "spawn":
        assert work.attributes["test.channels_loaded_before"] is False  # else this test shows nothing
    big_put = one(spans, "mp.pickle", **{"mp.pickle.channel": "queue"})
    big_get = one(spans, "mp.unpickle", **{"mp.pickle.channel": "queue"})
    assert parent_of(spans, big_put) is work and parent_of(spans, big_get) is work
    assert totals(work, "queue")["unpickled"] == (1, pickled_size(BIG))
    assert "mp.unpickle.queue.count" not in run.attributes


def test_simple_queue_traffic_is_counted_on_the_queue_channel(traced, context):
    with traced.tracer.start_as_current_span("work"):
        inbox, outbox = context.SimpleQueue(), context.SimpleQueue()
        child = context.Process(target=targets.echo, args=(inbox, outbox))
        child.start()
        for message in MESSAGES:
            inbox.put(message)
            assert outbox.get() == message
        inbox.put(None)
        child.join(30)
    spans = traced.spans()
    work = one(spans, "work")
    assert totals(work, "queue") == {
        "pickled": (len(MESSAGES) + 1, pickled_size(*MESSAGES, None)),
        "unpickled": (len(MESSAGES), pickled_size(*MESSAGES)),
    }


def test_traffic_outside_any_span_is_counted_for_the_process(traced):
    reader, writer = multiprocessing.Pipe(duplex=False)
    for message in MESSAGES:
        writer.send(message)
        reader.recv()
    counts = mptrace.stats()
    assert counts["mp.pickle.connection.count"] == len(MESSAGES)
    assert counts["mp.unpickle.connection.bytes"] == pickled_size(*MESSAGES)


def test_a_queue_message_that_cannot_be_pickled_is_an_error_span_where_it_was_put(traced, capfd):
    queue = multiprocessing.Queue()
    with traced.tracer.start_as_current_span("producer"):
        queue.put({"handler": lambda: None})  # fails later, in the feeder thread
        queue.close()
        queue.join_thread()
    assert "Traceback" in capfd.readouterr().err  # multiprocessing reports it there, as always
    spans = traced.spans()
    failed = one(spans, "mp.pickle", **{"mp.pickle.channel": "queue"})
    assert is_error(failed)
    assert parent_of(spans, failed).name == "producer"
    assert failed.attributes["mp.pickle.path"] == "message['handler']"
    assert "lambda" in failed.attributes["mp.pickle.hint"]
    assert failed.attributes["mp.pickle.type"] == "dict"
    assert [e.name for e in failed.events] == ["exception"]


def test_a_failed_send_raises_the_users_exception_unchanged(traced):
    def local():
        pass

    reader, writer = multiprocessing.Pipe(duplex=False)
    with pytest.raises(Exception) as traced_error:
        writer.send([local])
    mptrace.uninstall()
    with pytest.raises(Exception) as plain_error:
        writer.send([local])
    assert type(traced_error.value) is type(plain_error.value)
    assert str(traced_error.value) == str(plain_error.value)
    mptrace.install(tracer_provider=traced.provider)  # for the fixture's uninstall
    [failed] = named(list(traced.exporter.get_finished_spans()), "mp.pickle")
    assert failed.attributes["mp.pickle.path"] == "message[0]"
    assert "local" in failed.attributes["mp.pickle.hint"]


def test_a_message_that_cannot_be_rebuilt_names_its_class(traced, context):
    queue = context.Queue()
    child = context.Process(target=targets.put_unrebuildable, args=(queue,))
    child.start()
    with pytest.raises(TypeError):
        queue.get(timeout=30)
    child.join(30)
    spans = traced.spans()
    failed = one(spans, "mp.unpickle")
    assert is_error(failed)
    assert failed.attributes["error.type"] == "TypeError"
    assert "tests.targets.NeedsTwo" in failed.attributes["mp.pickle.classes"]
    assert failed.attributes["mp.pickle.bytes"] > 0
    assert failed.resource is traced.provider.resource  # on the receiving side: the root


@pytest.mark.parametrize("message", [MESSAGES, BIG, {"a": (1, 2.5, None)}, targets.Point(1, 2), [b"\0" * 10] * 3])
def test_channel_pickles_are_byte_identical(traced, message):
    expected = bytes(reduction.ForkingPickler.dumps(message))
    for sent in (bytes(connection._ForkingPickler.dumps(message)), bytes(queues._ForkingPickler.dumps(message))):
        assert sent[:len(expected)] == expected
        # A notable message also carries its mp.pickle span's ids, after the pickle.
        assert len(sent) == len(expected) or (message is BIG and _trailer.read(sent)[0] == _trailer.LINK)
    assert pickle.loads(expected) == connection._ForkingPickler.loads(expected) or isinstance(message, targets.Point)


def test_uninstall_restores_the_channel_picklers():
    originals = (connection._ForkingPickler, queues._ForkingPickler, vars(queues.Queue)["_reset"])
    provider, _ = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    assert connection._ForkingPickler is not originals[0]
    mptrace.uninstall()
    assert (connection._ForkingPickler, queues._ForkingPickler, vars(queues.Queue)["_reset"]) == originals
    assert connection._ForkingPickler is reduction.ForkingPickler
    assert not any(True for _ in state.patches)


@pytest.mark.parametrize("options, error", [
    ({"pickle_span_bytes": -1}, ValueError),
    ({"pickle_span_bytes": "big"}, TypeError),
    ({"pickle_span_seconds": True}, TypeError),
])
def test_bad_thresholds_are_named(options, error):
    with pytest.raises(error, match=list(options)[0]):
        mptrace.install(tracer_provider=in_memory_pipeline()[0], **options)
    assert state.role is None


def test_a_bad_threshold_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("MPTRACE_PICKLE_SPAN_BYTES", "lots")
    with pytest.raises(ValueError, match="MPTRACE_PICKLE_SPAN_BYTES.*lots"):
        mptrace.install(tracer_provider=in_memory_pipeline()[0])


def test_each_put_is_counted_in_the_context_it_was_made_in(traced):
    """The feeder thread pickles later; each message still counts where its put() ran."""
    queue = multiprocessing.get_context("fork").Queue()
    for name, count in (("a", 1), ("b", 2), ("c", 1), ("b2", 3)):
        with traced.tracer.start_as_current_span(name):
            for i in range(count):
                queue.put(i)
            for i in range(count):
                assert queue.get(timeout=30) == i  # the feeder pickled it before the span ends
    queue.close()
    queue.join_thread()
    spans = traced.spans()
    for name, count in (("a", 1), ("b", 2), ("c", 1), ("b2", 3)):
        assert totals(one(spans, name), "queue")["pickled"][0] == count, name


def test_a_child_waits_for_the_channel_modules_this_module_instruments():
    """mptrace._child names them itself, so that a spawn child need not load this module to wait for them."""
    from mptrace import _channels, _child

    assert _child.CHANNEL_MODULES == _channels.CHANNEL_MODULES
