"""A changed value is never invisible: keyed digests, per-path differences, 'cannot tell'."""

import multiprocessing
import subprocess
import sys
import textwrap

import pytest

from mptrace import _fingerprint
from mptrace._state import state
from mptrace.testing import SpanRecorder
from tests.subprocesses import ROOT, environment, run_traced
from tests.test_cli import mptrace as mptrace_command

# What tests/programs/digest_program.py changes in digest_settings, sizes kept, and how the child tells.
SAME_SIZE_CHANGES = {
    "digest_settings.MODE": "digest_settings.MODE: changed (same size)",  # str
    "digest_settings.PAYLOAD": "digest_settings.PAYLOAD: changed (same size)",  # bytes
    "digest_settings.BUFFER": "digest_settings.BUFFER: changed (same size)",  # bytearray, changed in place
    "digest_settings.HOSTS": "digest_settings.HOSTS: changed (same size)",  # a set
    "digest_settings.FROZEN": "digest_settings.FROZEN: changed (same size)",  # a frozenset
    "digest_settings.TABLE": "digest_settings.TABLE: changed (same size)",  # a dict item past 16
    "digest_settings.ROWS": "digest_settings.ROWS: changed (same size)",  # a list item past 16
    "digest_settings.LONG": "digest_settings.LONG: changed (same size)",  # item 4000 of 5000 floats
    "digest_settings.SCORES": "digest_settings.SCORES: changed (same size)",  # the last of 3000 dict items
    # a container at the depth limit
    "digest_settings.NESTED": "digest_settings.NESTED['outer']['inner']: changed (same size)",
    # an object at the depth limit, one of its attributes changed
    "digest_settings.SETTINGS": "digest_settings.SETTINGS.db.connection: changed",
}


def test_a_same_size_change_made_after_import_shows_for_every_kind_of_leaf(start_method, tmp_path):
    _, spans = run_traced(tmp_path, "tests/programs/digest_program.py", start_method)
    [launch] = [s for s in spans if s["name"] == "mp.process"]
    [run] = [s for s in spans if s["name"] == "mp.process.run"]
    assert launch["attributes"]["mp.state.not_portable"] == sorted(SAME_SIZE_CHANGES)
    if start_method == "fork":
        assert run["attributes"]["mp.state.diverged"] == []
        return
    assert run["attributes"]["mp.state.diverged"] == sorted(SAME_SIZE_CHANGES)
    events = {e["attributes"]["mp.state.name"]: e["attributes"] for e in run["events"]
              if e["name"] == "mp.state.diverged"}
    for name, difference in SAME_SIZE_CHANGES.items():
        assert events[name]["mp.state.differences"] == [difference]
    # The described sides stay as they were, without digests: they agree, only the content differs.
    assert events["digest_settings.MODE"]["mp.state.parent"] == "str(len=4)"
    assert events["digest_settings.MODE"]["mp.state.child"] == "str(len=4)"


class Masked:
    """Pickling replaces the token with another string of the same length."""

    def __init__(self):
        self.token = "live-secret"

    def __getstate__(self):
        return {"token": "xxxx-xxxxxx"}


def show(value):
    pass


def test_an_argument_pickling_changed_to_the_same_size_shows(pickled_context):
    with SpanRecorder() as recorder:
        process = pickled_context.Process(target=show, args=(Masked(),))
        process.start()
        process.join(30)
        recorder.assert_arg_changed("args[0]")
        [event] = [e for e in recorder.process().run.events if e.name == "mp.arg.changed"]
        assert event.attributes["mp.arg.differences"] == "args[0].token: changed (same size)"
        with pytest.raises(AssertionError, match="but args\\[0\\] changed"):
            recorder.assert_args_unchanged()


def start_masked_grandchild():
    grandchild = multiprocessing.get_context("spawn").Process(target=show, args=(Masked(),), name="grandchild")
    grandchild.start()
    grandchild.join(30)


@pytest.fixture
def traced_capturing():
    from tests.conftest import traced_with

    yield from traced_with(capture_values=True)


def test_a_grandchild_shows_argument_values_when_the_root_captures_them(traced_capturing):
    """capture_values is the root's option: a fork child starting a grandchild keeps it."""
    child = multiprocessing.get_context("fork").Process(target=start_masked_grandchild)
    child.start()
    child.join(60)
    [run] = [s for s in traced_capturing.spans()
             if s.name == "mp.process.run" and s.attributes["mp.process.name"] == "grandchild"]
    [event] = [e for e in run.events if e.name == "mp.arg.changed"]
    assert event.attributes["mp.arg.differences"] == "args[0].token: was 'live-secret', arrived 'xxxx-xxxxxx'"


@pytest.fixture(params=["spawn", "forkserver"])
def pickled_context(request):
    return multiprocessing.get_context(request.param)


KEYED_DIGEST = """
import mptrace
from mptrace import _fingerprint
from mptrace._state import state
from tests.programs import in_memory_pipeline

mptrace.install(tracer_provider=in_memory_pipeline()[0])
print(_fingerprint.fingerprint([("MODE", "prod")], key=bytes.fromhex(state.tree["dk"]))["MODE"])
"""


def test_digests_are_keyed_per_run():
    """The same value digests differently in two runs: a digest cannot be looked up or brute-forced."""
    outputs = [subprocess.run([sys.executable, "-c", KEYED_DIGEST], capture_output=True, text=True, cwd=ROOT,
                              env=environment(), timeout=60).stdout.strip() for _ in range(2)]
    assert all(output.startswith("str(len=4) #") for output in outputs), outputs
    assert outputs[0] != outputs[1]


def test_the_key_never_reaches_a_span_and_digests_never_reach_a_human(tmp_path, monkeypatch):
    (tmp_path / "digest_key_settings.py").write_text("MODE = 'prod'\n\ndef show():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with SpanRecorder(ignore_modules=["__main__"]) as recorder:  # pytest-xdist's __main__ is not the test's
        import digest_key_settings

        key = state.tree["dk"]
        digest_key_settings.MODE = "test"
        process = multiprocessing.get_context("spawn").Process(target=digest_key_settings.show)
        process.start()
        process.join(30)
        spans = recorder.spans
        lines = recorder.tree()
    sys.modules.pop("digest_key_settings", None)
    text = repr([(s.attributes, [e.attributes for e in s.events], s.resource.attributes) for s in spans])
    assert key not in text
    assert " #" not in text  # no digest in what is exported either
    assert "state diverged: digest_key_settings.MODE: changed (same size)" in "\n".join(lines)


def test_the_tree_shows_each_differing_path_with_both_sides(tmp_path, monkeypatch):
    (tmp_path / "tree_config_settings.py").write_text(textwrap.dedent("""
        CONFIG = {"db_url": "postgres://db/prod", "retries": 1, "timeout": 30}
        LIMITS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}

        def show():
            pass
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with SpanRecorder(ignore_modules=["__main__"]) as recorder:  # pytest-xdist's __main__ is not the test's
        import tree_config_settings as settings

        settings.CONFIG["retries"] = 5
        settings.LIMITS.update(a=10, b=20, c=30, d=40)
        process = multiprocessing.get_context("spawn").Process(target=settings.show)
        process.start()
        process.join(30)
        lines = recorder.tree()
    sys.modules.pop("tree_config_settings", None)
    [line] = [line for line in lines if "state diverged" in line]
    assert line.endswith("state diverged: tree_config_settings.CONFIG['retries']: parent 5, child 1; "
                         "tree_config_settings.LIMITS['a']: parent 10, child 1; "
                         "tree_config_settings.LIMITS['b']: parent 20, child 2; +2 more"), line


def test_compare_shows_the_differing_path_with_both_sides(tmp_path):
    (tmp_path / "compare_settings.py").write_text(
        'CONFIG = {"db_url": "postgres://db/prod", "retries": 1}\n')
    program = tmp_path / "compare_program.py"
    program.write_text(textwrap.dedent("""
        import multiprocessing

        import compare_settings


        def work():
            pass


        if __name__ == "__main__":
            compare_settings.CONFIG["retries"] = 5
            process = multiprocessing.Process(target=work)
            process.start()
            process.join()
        """))
    code, out, err = mptrace_command("compare", "--start-methods", "fork,spawn", str(program), cwd=str(tmp_path))
    assert code == 0, err
    assert "state diverged differs: fork: -; spawn: compare_settings.CONFIG['retries']: parent 5, child 1" \
        in " ".join(out.split()), out


def test_a_list_of_processes_in_main_is_not_state(start_method, tmp_path):
    _, spans = run_traced(tmp_path, "tests/programs/process_handles.py", start_method)
    runs = [s for s in spans if s["name"] == "mp.process.run"]
    launches = [s for s in spans if s["name"] == "mp.process"]
    assert len(runs) == 3
    for launch in launches:  # the source says mixed is [1] at import; workers and queues hold only handles
        assert launch["attributes"]["mp.state.not_portable"] == ["__main__.mixed"]
    for run in runs:
        # __main__.mixed really differs under spawn and forkserver: the child never ran the append.
        assert run["attributes"]["mp.state.diverged"] == ([] if start_method == "fork" else ["__main__.mixed"])
        differences = [d for e in run["events"] if e["name"] == "mp.state.diverged"
                       for d in e["attributes"]["mp.state.differences"]]
        assert differences == ([] if start_method == "fork" else
                               ["__main__.mixed[1]: parent multiprocessing.queues.Queue, child <missing>"])


def test_a_container_of_plain_values_is_digested_in_one_pass(monkeypatch):
    """A program's results (thousands of numbers or strings) are digested at every start(): as one marshal
    form, not with a token per item (8 ms for 10,000 floats, where one pass takes some 0.4 ms)."""
    tokens = []
    token = _fingerprint._Walk.token

    def counted(walk, value, depth):
        tokens.append(value)
        return token(walk, value, depth)

    monkeypatch.setattr(_fingerprint._Walk, "token", counted)
    key = b"k" * 16
    for value in ([index / 8 for index in range(10000)], tuple(range(10000)), {"k%d" % i: i for i in range(5000)},
                  {"w%d" % i for i in range(5000)}, frozenset(range(5000)),
                  # tables: rows, records, and dicts of them
                  [(i, "name%d" % i, i / 8) for i in range(4000)], {(i, "a") for i in range(3000)},
                  [{"id": i, "name": "name%d" % i, "value": i / 8} for i in range(3000)],
                  {"k%d" % i: [i, i / 8] for i in range(3000)},
                  {"section%d" % i: {"host": "h%d" % i, "port": i} for i in range(3000)},
                  # rows holding records and rows: results kept as (step, {metrics}), or as nested pairs
                  [(i, {"loss": i / 8, "accuracy": 0.5}) for i in range(3000)],
                  [[i, (i / 8, {"ok": True})] for i in range(3000)], {"run%d" % i: (i, [i, i]) for i in range(3000)},
                  # records holding rows or records, JSON-like
                  [{"id": i, "tags": ["t%d" % i, "b"], "size": {"w": i, "h": 2}} for i in range(2000)]):
        del tokens[:]
        entries = _fingerprint.fingerprint([("x", value)], key=key)
        assert " #" in entries["x"] and not entries["x"].endswith("#?")  # digested, not "cannot tell"
        # The container's own token, and those of what the fingerprint shows of its first 16 items: none per item.
        assert len(tokens) <= 1 + _fingerprint.MAX_ITEMS * 3, (type(value), len(tokens))


@pytest.mark.parametrize("plain, other", [
    ([{"a": 1, "b": 2}] * 20, [{"a": 1, "b": 2}] * 19 + [{"a": 1, "b": 3}]),  # a record's value
    ([{"a": 1, "b": 2}] * 20, [{"a": 1, "b": 2}] * 19 + [{"a": 1, "c": 2}]),  # a record's key
    ([{"a": 1}] * 20, [[("a", 1)]] * 20),  # a record is not its pairs
    ([(1, 2)] * 20, [[1, 2]] * 20),  # nor a tuple a list
    ([(1, 2)] * 20, [(1, 2)] * 19 + [(1, 2, 3)]),
    ({"k%d" % i: [i] for i in range(20)}, {**{"k%d" % i: [i] for i in range(19)}, "k19": [19.0]}),
    ([1, 2.5, "a", b"b", None, True, 3j], [1, 2.5, "a", b"b", None, 1, 3j]),  # True is not 1
    ([0.0] * 20, [0.0] * 19 + [-0.0]),  # nor -0.0 0.0
    ([1.0] * 20, [1.0] * 19 + [1]),  # nor 1 1.0
    (["a"] * 20, ["a"] * 19 + [b"a"]),
    ({"k%d" % i: i for i in range(20)}, {**{"k%d" % i: i for i in range(19)}, "k19": 19.0}),
    ({"k%d" % i: i for i in range(20)}, {**{"k%d" % i: i for i in range(19)}, "k20": 19}),
    (set(range(20)), set(range(19)) | {20}),
    ({1.5, float("inf")} | set(range(18)), {1.5, float("-inf")} | set(range(18))),
    # rows holding records or rows
    ([(i, {"loss": 0.5}) for i in range(20)], [(i, {"loss": 0.5}) for i in range(19)] + [(19, {"loss": 0.25})]),
    ([(i, {"loss": 0.5}) for i in range(20)], [(i, {"loss": 0.5}) for i in range(19)] + [(19, {"lost": 0.5})]),
    ([(i, {"a": 1}) for i in range(20)], [(i, [("a", 1)]) for i in range(20)]),  # a record is not its pairs
    ([(i, (1, 2)) for i in range(20)], [(i, [1, 2]) for i in range(20)]),  # nor a tuple a list, deeper down
    ([[i, (1, 2)] for i in range(20)], [(i, (1, 2)) for i in range(20)]),
    ([(i, (1, (2, 3))) for i in range(20)], [(i, (1, (2, 3))) for i in range(19)] + [(19, (1, (2, 4)))]),
    ([(i, {"a": 1}) for i in range(20)], [({"a": 1}, i) for i in range(20)]),  # columns are not interchangeable
    # records holding rows or records
    ([{"id": i, "tags": ["a"]} for i in range(20)],
     [{"id": i, "tags": ["a"]} for i in range(19)] + [{"id": 19, "tags": ["b"]}]),
    ([{"id": i, "tags": ["a"]} for i in range(20)], [{"id": i, "tags": ("a",)} for i in range(20)]),
    ([{"id": i, "tags": ["a"]} for i in range(20)], [{"id": i, "tag": ["a"]} for i in range(20)]),
    ([{"id": i, "at": {"x": 1}} for i in range(20)],
     [{"id": i, "at": {"x": 1}} for i in range(19)] + [{"id": 19, "at": {"y": 1}}]),
])
def test_a_plain_container_that_differs_anywhere_has_another_digest(plain, other):
    key = b"k" * 16
    assert _fingerprint.fingerprint([("x", plain)], key=key) != _fingerprint.fingerprint([("x", other)], key=key)


class Level(int):
    pass


def test_a_container_holding_a_subclass_is_digested_item_by_item():
    """marshal would refuse a subclass or lose what it carries: such items take the walk's own tokens."""
    key = b"k" * 16
    before = [Level(1)] * 20
    after = [Level(1)] * 19 + [Level(2)]
    assert _fingerprint.fingerprint([("x", before)], key=key) != _fingerprint.fingerprint([("x", after)], key=key)
    assert _fingerprint.fingerprint([("x", before)], key=key) != _fingerprint.fingerprint([("x", [1] * 20)], key=key)


def test_items_only_one_side_holds_are_told_by_their_container_when_there_are_many():
    """A results list the parent filled and the child never did: one line with both sizes, not the first
    sixteen items each missing on one side; a few such items are told one by one; paths in their order."""
    from mptrace import _descriptions

    def told(parent, child):
        before = _fingerprint.fingerprint([("results", parent)], max_depth=2)
        after = _fingerprint.fingerprint([("results", child)], max_depth=2)
        return [(path, before.get(path), after.get(path)) for path, _ in _descriptions.differences(before, after)]

    assert told([n / 8 for n in range(20000)], []) == [("results", "list(len=20000)", "list(len=0)")]
    assert told({"k%d" % n: n for n in range(40)}, {}) == [("results", "dict(len=40)", "dict(len=0)")]
    assert told([1, 2], [1, 2, "late", 4]) == [("results[2]", None, "str(len=4)"), ("results[3]", None, "4")]
    # An item that differs on both sides is told, and so is every item only one side holds, in index order.
    assert [path for path, _, _ in told(list(range(12)), [0, -1] + list(range(2, 16)))] == \
        ["results[1]", "results[12]", "results[13]", "results[14]", "results[15]"]
    assert [path for path, _, _ in told(list(range(12)), list(range(8)) + [-8, -9, -10, -11])] == \
        ["results[8]", "results[9]", "results[10]", "results[11]"]


def test_paths_are_told_in_the_order_of_their_numbers_whatever_their_digits():
    """Indices in numeric order; a key holding a digit that is no decimal (``²``), or a number too long for
    int(), is ordered too, never an error (an error here would leave a child's comparison untold)."""
    from mptrace import _descriptions

    paths = ["x[10]", "x[2]", "x", "x[1].a", "x[0][10]", "x[0][9]", "x['06²']", "x[%s]" % ("9" * 5000), "x[007]"]
    assert sorted(paths, key=_descriptions._path_order) == [
        "x", "x[0][9]", "x[0][10]", "x[1].a", "x[2]", "x[007]", "x[10]", "x[%s]" % ("9" * 5000), "x['06²']"]
    before = {"x": "dict(len=2)", "x['²']": "1", "x['10']": "2"}
    assert _descriptions.differences(before, dict(before, **{"x['²']": "3"})) == [("x['²']", "visible")]


def test_a_fingerprint_too_large_to_digest_cannot_tell(monkeypatch):
    monkeypatch.setattr(_fingerprint, "MAX_DIGEST_BYTES", 1000)
    key = b"k" * 16
    big = _fingerprint.fingerprint([("args[0]", "x" * 2000)], key=key)
    assert big == {"args[0]": "str(len=2000) #?"}
    assert _fingerprint.changed_arguments(big, big) == {}
    assert _fingerprint.uncompared_arguments(big, big) == {"args[0]": ["args[0]"]}
    assert _fingerprint.visible(big["args[0]"]) == "str(len=2000)"


# -- no false pass: what a child could not compare, assert_state_inherited cannot vouch for


@pytest.fixture
def app_modules(tmp_path, monkeypatch):
    """A target module that imports its settings only inside the target, and a settings module with a blob."""
    (tmp_path / "lazy_settings.py").write_text("MODE = 'prod'\nBLOB = 'x' * (9 << 20)\n")
    (tmp_path / "lazy_worker.py").write_text(textwrap.dedent("""
        def work():
            import lazy_settings  # imported by run(), after the comparison

        def work_with_settings_loaded():
            pass

        import lazy_settings as _loaded_at_import
        """))
    (tmp_path / "lazy_worker_alone.py").write_text(textwrap.dedent("""
        def work():
            import lazy_settings  # imported by run(), after the comparison
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("lazy_settings", "lazy_worker", "lazy_worker_alone"):
        sys.modules.pop(name, None)


def run_one(recorder, target, method="spawn"):
    process = multiprocessing.get_context(method).Process(target=target)
    process.start()
    process.join(30)
    return recorder.process()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_module_the_child_had_not_imported_cannot_tell(app_modules, method):
    with SpanRecorder(ignore_modules=["__main__"]) as recorder:
        import lazy_settings  # noqa: F401  (watched, unchanged)
        import lazy_worker_alone

        found = run_one(recorder, lazy_worker_alone.work, method)
        assert "lazy_settings" in found.state_unknown
        with pytest.raises(AssertionError, match="cannot tell whether .* inherited lazy_settings.MODE from its "
                                                 "parent: lazy_settings: not imported in the child when run"):
            recorder.assert_state_inherited("lazy_settings.MODE")


def test_a_value_too_large_to_compare_cannot_tell(app_modules):
    with SpanRecorder(ignore_modules=["__main__"]) as recorder:
        import lazy_worker

        found = run_one(recorder, lazy_worker.work_with_settings_loaded)
        assert "lazy_settings.BLOB" in found.state_unknown
        recorder.assert_state_inherited("lazy_settings.MODE")  # compared, and the same
        with pytest.raises(AssertionError, match="cannot tell whether .* inherited lazy_settings.BLOB from its "
                                                 "parent: lazy_settings.BLOB: too large to compare in full"):
            recorder.assert_state_inherited("lazy_settings.BLOB")
        assert any("state not compared (too large to compare in full): lazy_settings.BLOB" in line
                   for line in recorder.tree())


def test_a_module_that_is_not_watched_cannot_tell(app_modules):
    with SpanRecorder(ignore_modules=["__main__", "lazy_settings"]) as recorder:
        import lazy_worker

        run_one(recorder, lazy_worker.work_with_settings_loaded)
        with pytest.raises(AssertionError, match="cannot tell whether .* inherited lazy_settings.MODE from its "
                                                 "parent: the child compared no module holding it"):
            recorder.assert_state_inherited("lazy_settings.MODE")


def test_a_fork_child_inherits_what_it_never_compared(app_modules):
    """A fork child's memory is the parent's: nothing to compare, nothing unknown."""
    with SpanRecorder(ignore_modules=["__main__"]) as recorder:
        import lazy_worker_alone

        found = run_one(recorder, lazy_worker_alone.work, "fork")
        assert found.state_unknown == ()
        recorder.assert_state_inherited("lazy_settings.MODE")
