"""The terminal view of a traced run: one line per process, nested by who started it.

Every test but the last draws real spans from real processes; the last feeds
it garbage, because the view runs as the traced program exits and must never
raise.
"""

import io
import multiprocessing
import os
import re
import sys
import textwrap

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode

from mptrace import _tree
from tests import pool_targets, targets

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOLD_RED = "\x1b[1;31m"


def run_children(context, target, *argument_lists):
    """Start one child of ``target`` per argument tuple, one after the other; return them joined."""
    processes = []
    for args in argument_lists:
        process = context.Process(target=target, args=args)
        process.start()
        process.join(30)
        processes.append(process)
    return processes


def line_with(lines, text):
    found = [line for line in lines if text in line]
    assert len(found) == 1, "expected one line with %r in:\n%s" % (text, "\n".join(lines))
    return found[0]


def depth(line):
    """How deep a line sits in the tree: rich draws four columns of guides per level."""
    return (len(line) - len(line.lstrip("│├└─ "))) // 4


def rendered(spans, color):
    out = io.StringIO()
    _tree.render(spans, file=out, color=color)
    return out.getvalue()


def rendered_on_a_terminal(spans):
    """What render() writes, with no ``color`` argument, to a real terminal (a pty)."""
    reader, writer = os.openpty()
    try:
        with open(writer, "w", closefd=False) as terminal:
            _tree.render(spans, file=terminal)
        return os.read(reader, 1 << 16).decode()
    finally:
        os.close(reader)
        os.close(writer)


def test_a_child_shows_its_start_method_pid_and_exit(traced, context, start_method):
    [process] = run_children(context, targets.succeed, ())
    lines = _tree.summary_lines(traced.spans())
    assert "pid %d " % os.getpid() in lines[0]
    assert "1 child process" in lines[0] and "no errors" in lines[0]
    child = line_with(lines, "pid %d " % process.pid)
    assert depth(child) == 1
    assert "%s (context)" % start_method in child
    assert "exit 0" in child and "tests.targets.succeed" in child
    assert ("pickled" in child) == (start_method != "fork")


def test_a_failing_child_is_red_with_its_exception(traced):
    context = multiprocessing.get_context("fork")
    failing, cut_short = run_children(context, targets.raise_error, ()) + run_children(
        context, targets.os_exit_with, (3,))
    spans = traced.spans()
    lines = _tree.summary_lines(spans)
    assert "2 errors" in lines[0]
    child = line_with(lines, "pid %d " % failing.pid)
    assert "exit 1" in child and "ValueError: boom in child" in child
    at = lines[lines.index(child) + 1]
    assert depth(at) == 2 and "tests/targets.py" in at and "raise_error" in at
    killed = lines.index(line_with(lines, "pid %d " % cut_short.pid))
    assert "exit 3" in lines[killed] and "exited before it could report" in lines[killed + 1]

    coloured = rendered(spans, color=True)
    before_message = coloured[:coloured.index("ValueError: boom in child")]
    assert before_message.rsplit("\x1b[", 1)[-1] == BOLD_RED[2:], "the exception is not bold red"
    assert ANSI.sub("", coloured).count("ValueError: boom in child") == 1
    assert "\x1b" not in rendered(spans, color=False)
    assert "\x1b" not in rendered(spans, color=None), "a StringIO is no terminal: no colours"


def test_colours_follow_the_terminal_unless_no_color(traced, monkeypatch):
    run_children(multiprocessing.get_context("fork"), targets.raise_error, ())
    spans = traced.spans()
    for variable in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLORTERM"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert BOLD_RED in rendered_on_a_terminal(spans)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in rendered_on_a_terminal(spans)


def test_a_stream_that_only_takes_ascii_gets_ascii(traced):
    run_children(multiprocessing.get_context("fork"), targets.succeed, *[()] * 10)
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    _tree.render(traced.spans(), file=stream, color=False)
    stream.flush()
    assert "x10 identical children" in raw.getvalue().decode("ascii")


FOUNDING_MOCK = "to_mock = None\n"
FOUNDING_MAIN = textwrap.dedent("""\
    import tree_founding_mock as import_mock


    class A:
        def __init__(self):
            self.a, self.b, self.c = 1, 2, 3

        def __getstate__(self):
            state = self.__dict__.copy()
            state["c"] = 0
            return state


    def show(obj):
        return obj.a, obj.b, obj.c, import_mock.to_mock
    """)


@pytest.fixture
def founding_modules(tmp_path):
    """The founding program's two modules, importable, and imported after install() (so watched)."""
    (tmp_path / "tree_founding_mock.py").write_text(FOUNDING_MOCK)
    (tmp_path / "tree_founding_main.py").write_text(FOUNDING_MAIN)
    sys.path.insert(0, str(tmp_path))
    try:
        import tree_founding_main
        import tree_founding_mock

        yield tree_founding_main, tree_founding_mock
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("tree_founding_main", "tree_founding_mock"):
            sys.modules.pop(name, None)


def test_the_founding_program_under_spawn_shows_what_arrived_different(traced, founding_modules):
    main, mock = founding_modules
    mock.to_mock = 1  # set after import: a spawn child re-imports the module and sees None
    [process] = run_children(multiprocessing.get_context("spawn"), main.show, (main.A(),))
    lines = _tree.summary_lines(traced.spans())
    child = lines.index(line_with(lines, "pid %d " % process.pid))
    details = lines[child + 1:]
    assert all(depth(line) == 2 for line in details), "\n".join(lines)
    assert "args[0] arrived changed: args[0].c: was 3, arrived 0" in line_with(details, "arrived changed")
    assert "tree_founding_mock.to_mock: parent 1, child None" in line_with(details, "state diverged")
    assert "tree_founding_main.A.__getstate__" in line_with(details, "pickling hooks")
    assert "1 hook" in lines[child] and "exit 0" in lines[child]


def test_a_start_that_cannot_pickle_names_the_culprit(traced):
    with pytest.raises(Exception):
        multiprocessing.get_context("spawn").Process(target=targets.accept, args=(lambda: None,)).start()
    lines = _tree.summary_lines(traced.spans())
    assert "not started" in line_with(lines, "tests.targets.accept")
    assert "lambda" in line_with(lines, "could not pickle args[0]")


def without_test_runner_threads(lines):
    """The tree's lines without what the test runner brings to every fork child: the native-thread warnings
    of its own thread (pytest-xdist's execnet runs one that threading does not know), and the modules whose
    state has no baseline: those it imported before the test installed mptrace, and its main module
    (execnet's has no source)."""
    return [line for line in lines if "native thread alive at fork" not in line
            and "state not known (nothing to compare it with)" not in line]


def test_grandchildren_nest_under_the_child_that_started_them(traced):
    [child] = run_children(multiprocessing.get_context("fork"), targets.start_grandchild, ("fork",))
    lines = without_test_runner_threads(_tree.summary_lines(traced.spans()))
    child_line = lines.index(line_with(lines, "pid %d " % child.pid))
    grandchild_line = lines.index(line_with(lines, "tests.targets.user_span"))
    assert depth(lines[child_line]) == 1
    assert grandchild_line == child_line + 1 and depth(lines[grandchild_line]) == 2
    assert "2 child processes" in lines[0]


def test_a_pool_shows_its_workers_and_tasks(traced):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(pool_targets.square, range(10), chunksize=2) == [x * x for x in range(10)]
        with pytest.raises(ValueError):
            pool.apply(pool_targets.fail, (1,))
    lines = _tree.summary_lines(traced.spans())
    pool_line = line_with(lines, "Pool(2)")
    assert depth(pool_line) == 1
    assert "2 workers started" in pool_line and "6 tasks (6 traced)" in pool_line
    assert "1 task failed: ValueError: task failed on 1" in line_with(lines, "task failed")
    assert "Pool.map tests.pool_targets.square" in line_with(lines, "submitted:")
    workers = [line for line in lines if "ForkPoolWorker" in line]
    assert len(workers) == 2 and all(depth(line) == 2 for line in workers)
    assert sum(int(re.search(r"(\d+) tasks?\b", line).group(1)) for line in workers) == 6


def test_many_identical_children_collapse_into_one_line(traced, founding_modules):
    main, mock = founding_modules
    context = multiprocessing.get_context("fork")
    plain = run_children(context, targets.succeed, *[()] * 9)
    mock.to_mock = 1  # from here on, every start notes state a spawn child would not see
    warned = run_children(context, main.show, *[(main.A(),)] * 9)
    lines = without_test_runner_threads(_tree.summary_lines(traced.spans()))
    assert "18 child processes" in lines[0]
    collapsed = line_with(lines, "×9 identical children · tests.targets.succeed")
    assert "exit 0" in collapsed and pid_range(plain) in collapsed
    shared = lines.index(line_with(lines, "×9 identical children · tree_founding_main.show"))
    assert pid_range(warned) in lines[shared]
    assert "not portable" in lines[shared + 1] and "tree_founding_mock.to_mock" in lines[shared + 1]
    assert len(lines) == 4, "\n".join(lines)


def pid_range(processes):
    pids = sorted(p.pid for p in processes)
    return "pids %d–%d" % (pids[0], pids[-1])


def garbage_span(name, span_id, parent_id=None, pid=None, attributes=None, events=(), error=False):
    """A real SDK span with whatever the test wants in it."""
    resource = Resource({"process.pid": pid}) if pid is not None else None
    return ReadableSpan(
        name=name, context=SpanContext(1, span_id, False),
        parent=SpanContext(1, parent_id, False) if parent_id else None, resource=resource,
        attributes=attributes, events=events, start_time=span_id, end_time=span_id + 1,
        status=Status(StatusCode.ERROR, "broken") if error else Status(StatusCode.UNSET))


def test_garbage_renders_without_raising():
    spans = [
        None, "not a span", object(),
        garbage_span("mp.process", 1),  # no attributes at all
        garbage_span("mp.process.run", 2, parent_id=999, pid=77, error=True,  # its launch never arrived
                     attributes={"mp.exitcode": "x", "mp.state.diverged": 5, "mp.args.changed": ["args[0]"]},
                     events=[Event("exception", {}), Event("mp.arg.changed", {"mp.arg": 3})]),
        garbage_span("mp.process", 3, pid=55, attributes={"mp.child.pid": 55}),  # claims to start itself
        garbage_span("mp.process", 4, pid=60, attributes={"mp.child.pid": 61}),  # these two claim to have
        garbage_span("mp.process", 5, pid=61, attributes={"mp.child.pid": 60}),  # started each other
        garbage_span("mp.pool", 6, attributes={"mp.pool.tasks": "many", "mp.pool.type": 7}),
        garbage_span("mp.task.run", 7, parent_id=998, pid=88, error=True),
        garbage_span("mp.pickle", 8, parent_id=1, error=True, attributes={"mp.pickle.bytes": -1}),
        garbage_span("something else", 9, parent_id=997, pid=89),
    ]
    lines = _tree.summary_lines(spans)
    assert not lines[0].startswith("mptrace: could not draw"), "\n".join(lines)
    unattached = lines.index(line_with(lines, "(unattached)"))
    below = "\n".join(lines[unattached:])
    assert "pid 77" in below and "pid 88" in below and "mp.task.run" in below and "something else" in below
    assert "pid 55" in below and "pid 60" in below and "pid 61" in below
    for color in (True, False, None):
        rendered(spans, color)
    closed = io.StringIO()
    closed.close()
    _tree.render(spans, file=closed)  # logged, not raised
    assert _tree.summary_lines([]) and _tree.summary_lines(None)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_the_tree_and_compare_show_one_pickled_size(traced, method):
    """The process object's pickle (target and arguments), not the start-up data added to it."""
    from mptrace import _compare

    context = multiprocessing.get_context(method)
    [process] = run_children(context, targets.succeed, ("an argument", list(range(50))))
    spans = traced.spans()
    [pickled] = [s for s in spans if s.name == "mp.pickle" and s.attributes["mp.pickle.channel"] == "process"]
    size = _tree.format_size(pickled.attributes["mp.pickle.bytes"])
    child = line_with(_tree.summary_lines(spans), "pid %d " % process.pid)
    assert "pickled %s" % size in child
    [launch] = [s for s in spans if s.name == "mp.process"]

    class Parsed:  # what compare reads from a trace file
        def __init__(self, span):
            self.name, self.attributes = span.name, span.attributes
            self.span_id = span.context.span_id
            self.parent_span_id = span.parent.span_id if span.parent else None

    assert _compare._pickled(Parsed(launch), [Parsed(s) for s in spans]) == "yes, %s" % size


def test_a_child_that_ran_untraced_says_why():
    """The parent's mp.process knows the child could not load mptrace: the tree says so under it."""
    launch = garbage_span("mp.process", 10, attributes={
        "mp.process.name": "Process-1", "mp.child.pid": 4242, "mp.exitcode": 0,
        "mp.child.traced": False, "mp.child.untraced_reason": "cannot load /gone/mptrace/__init__.py"})
    lines = _tree.summary_lines([launch])
    child = line_with(lines, "Process-1")
    note = line_with(lines, "not traced: cannot load /gone/mptrace/__init__.py")
    assert depth(note) == depth(child) + 1
