"""What was pickled to start a child, which hooks ran, and what arrived changed."""

import json
import os
import threading

import pytest

from tests import targets
from tests.spans import is_error, named, one
from tests.subprocesses import run_traced


def start_and_join(context, *args, **kwargs):
    process = context.Process(target=targets.accept, args=args, kwargs=kwargs)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    return process


def process_pickle(spans):
    found = [s for s in named(spans, "mp.pickle") if s.attributes["mp.pickle.channel"] == "process"]
    return found[0] if found else None


def run_span(spans):
    return one(spans, "mp.process.run")


def test_founding_program(start_method, tmp_path):
    result, spans = run_traced(tmp_path, "examples/founding/main.py", start_method)
    by_name = {s["name"]: s for s in spans}
    launch, run = by_name["mp.process"]["attributes"], by_name["mp.process.run"]
    if start_method == "fork":
        assert result.stdout.split("\n")[:2] == ["1 2 3", "1"]
        assert launch["mp.args.pickled"] is False
        assert not [s for s in spans if s["name"] == "mp.pickle"]
        assert run["attributes"]["mp.args.changed"] == []
        assert run["attributes"]["mp.state.inherited"] is True
    else:
        assert result.stdout.split("\n")[:3] == ["__getstate__", "1 2 0", "None"]
        assert launch["mp.args.pickled"] is True
        assert launch["mp.pickle.hooks"] == ["__main__.A.__getstate__"]
        pickle = [s for s in spans if s["name"] == "mp.pickle" and s["attributes"]["mp.pickle.channel"] == "process"]
        assert pickle[0]["attributes"]["mp.pickle.hooks"] == ["__main__.A.__getstate__"]
        assert pickle[0]["attributes"]["mp.pickle.bytes"] > 0
        assert pickle[0]["parent"] == by_name["mp.process"]["span_id"]
        assert run["attributes"]["mp.args.changed"] == ["args[0]"]
        [event] = [e for e in run["events"] if e["name"] == "mp.arg.changed"]
        assert event["attributes"] == {"mp.arg": "args[0]", "mp.arg.differences": "args[0].c: was 3, arrived 0"}


@pytest.mark.parametrize("argument, hooks, changed", [
    (targets.Reducing(4), ["tests.targets.Reducing.__reduce__"], []),
    (targets.ReducingEx(4), ["tests.targets.ReducingEx.__reduce_ex__"], ["args[0]"]),
    (targets.Point(1, 2), ["tests.targets.reduce_point (copyreg reducer for tests.targets.Point)"], []),
    (targets.Dropping(), ["tests.targets.Dropping.__getstate__"], ["args[0]"]),
    ([1, {"k": (2, 3)}], [], []),
    (targets.WithNewArgs(3), ["tests.targets.WithNewArgs.__getnewargs_ex__"], []),
])
def test_pickling_hooks_and_changed_arguments(traced, pickled_context, argument, hooks, changed):
    start_and_join(pickled_context, argument)
    spans = traced.spans()
    assert process_pickle(spans).attributes["mp.pickle.hooks"] == tuple(hooks)
    assert list(run_span(spans).attributes["mp.args.changed"]) == changed


def test_setstate_is_reported_on_the_child_side(traced, pickled_context):
    start_and_join(pickled_context, 1, flag=targets.Restoring())
    run = run_span(traced.spans())
    assert run.attributes["mp.unpickle.hooks"] == ("tests.targets.Restoring.__setstate__",)
    assert list(run.attributes["mp.args.changed"]) == ["kwargs['flag']"]
    [event] = [e for e in run.events if e.name == "mp.arg.changed"]
    assert event.attributes["mp.arg.differences"] == "kwargs['flag'].ready: was True, arrived False"


def test_strings_are_described_by_size_not_value(traced, pickled_context):
    holder = targets.Holder("secret-token")
    start_and_join(pickled_context, holder)
    assert "secret-token" not in json.dumps([dict(s.attributes) for s in traced.spans()], default=str)


def test_fingerprints_never_call_user_code(traced, pickled_context):
    start_and_join(pickled_context, targets.Hostile())
    spans = traced.spans()
    assert list(run_span(spans).attributes["mp.args.changed"]) == []
    assert not any(is_error(s) for s in spans)


def test_large_arguments_are_measured(traced, pickled_context):
    payload = b"x" * (20 * 1024 * 1024)
    start_and_join(pickled_context, payload)
    spans = traced.spans()
    assert process_pickle(spans).attributes["mp.pickle.bytes"] > len(payload)
    assert list(run_span(spans).attributes["mp.args.changed"]) == []


@pytest.mark.parametrize("make, path, hint", [
    (lambda: (lambda: None), "args[0]", "lambda"),
    (lambda: targets.Holder(threading.Lock()), "args[0].resource", "lock"),
    (lambda: targets.Holder(open(os.devnull)), "args[0].resource", "open file"),
    (lambda: targets.Holder((i for i in range(3))), "args[0].resource", "generator"),
])
def test_pickling_failures_name_the_offending_object(traced, pickled_context, make, path, hint):
    argument = make()
    process = pickled_context.Process(target=targets.accept, args=(argument,))
    with pytest.raises(Exception) as raised:
        process.start()
    spans = traced.spans()
    pickle = process_pickle(spans)
    assert is_error(pickle) and is_error(one(spans, "mp.process"))
    assert pickle.attributes["mp.pickle.path"] == path
    assert hint in pickle.attributes["mp.pickle.hint"]
    assert [e.attributes["exception.type"] for e in pickle.events] == [type(raised.value).__name__]
    assert not named(spans, "mp.process.run")


def test_local_function_target(traced, pickled_context):
    def local_target():
        pass

    with pytest.raises(Exception):
        pickled_context.Process(target=local_target).start()
    pickle = process_pickle(traced.spans())
    assert pickle.attributes["mp.pickle.path"] == "target"
    assert "module level" in pickle.attributes["mp.pickle.hint"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+ warns about exactly this
def test_threads_alive_at_fork_are_named(traced):
    import multiprocessing

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="busy-worker")
    worker.start()
    try:
        p = multiprocessing.get_context("fork").Process(target=targets.accept)
        p.start()
        p.join(30)
    finally:
        stop.set()
        worker.join()
    launch = one(traced.spans(), "mp.process")
    assert launch.attributes["mp.fork.threads"] == 1
    assert launch.attributes["mp.fork.thread_names"] == ("busy-worker",)


def test_reduce_to_a_different_class_shows_the_type_change(traced, pickled_context):
    start_and_join(pickled_context, targets.BecomesAnother())
    spans = traced.spans()
    assert process_pickle(spans).attributes["mp.pickle.hooks"] == ("tests.targets.BecomesAnother.__reduce__",)
    run = run_span(spans)
    assert list(run.attributes["mp.args.changed"]) == ["args[0]"]
    [event] = [e for e in run.events if e.name == "mp.arg.changed"]
    differences = event.attributes["mp.arg.differences"]
    assert "args[0]: was tests.targets.BecomesAnother, arrived tests.targets.Replacement" in differences
    assert "args[0].kind: was str(len=8), arrived str(len=11)" in differences


def test_the_preparation_data_is_spied_on_when_it_could_hold_a_users_hook():
    """Multiprocessing's preparation data holds names, paths and flags: pickled with the plain pickler, as no
    hook of the user's can run. Anything else in it (a program that adds to it) gets the spying one."""
    import multiprocessing.spawn

    from mptrace._pickling import _holds_no_hook

    data = multiprocessing.spawn.get_preparation_data("child")
    assert _holds_no_hook(data)
    assert not _holds_no_hook(dict(data, extra=targets.Dropping()))
    assert not _holds_no_hook(dict(data, extra=[targets.Dropping()]))
    assert not _holds_no_hook(dict(data, extra=[[]]))  # only one level of lists is looked into
    assert not _holds_no_hook([data])
