"""Open descriptors a fork child inherits (issue 18, item 3): sockets, files and pipes, the global
holding each, and which of them running siblings share.

The programs are run for real, with a real echo server on 127.0.0.1 that the
test starts; the in-process tests use ``mptrace.testing.SpanRecorder``.
"""

import io
import multiprocessing
import multiprocessing.context
import multiprocessing.popen_fork
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading

import pytest

from mptrace import _tree
from mptrace.testing import SpanRecorder, start_methods
from tests.subprocesses import ROOT, environment, run_traced

PROGRAM = "tests/programs/inherited_fds.py"
YELLOW = "\x1b[33m"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Held by this module while a test runs: this module is the application's code, so it is watched.
HELD = None


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            for data in iter(lambda: self.request.recv(4096), b""):
                self.request.sendall(data)
        except OSError:  # the program exited with echoes unread
            pass


@pytest.fixture
def echo_server():
    """An echo server on 127.0.0.1: its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_environment(echo_server, tmp_path, monkeypatch):
    """What tests/programs/fds_app.py reads at import: (echo port, log path)."""
    log_path = os.path.realpath(str(tmp_path / "app.log"))
    monkeypatch.setenv("FDS_ECHO_PORT", str(echo_server))
    monkeypatch.setenv("FDS_LOG_PATH", log_path)
    return echo_server, log_path


def _workers(spans):
    return sorted((s for s in spans if s["name"] == "mp.process"), key=lambda s: s["attributes"]["mp.process.name"])


def _the(entries, pattern):
    found = [e for e in entries if re.fullmatch(pattern, e)]
    assert len(found) == 1, "expected one entry matching %r in %r" % (pattern, entries)
    return found[0]


def test_fork_siblings_name_the_shared_socket_its_addresses_and_the_global(app_environment, tmp_path):
    port, _ = app_environment
    result, spans = run_traced(tmp_path, PROGRAM, "fork")
    assert result.stdout == "done\n"
    first, second = _workers(spans)
    connection = None
    for worker, sibling in ((first, second), (second, first)):
        attributes = worker["attributes"]
        entry = _the(attributes["mp.fork.fds"], r"socket tcp 127\.0\.0\.1:\d+->127\.0\.0\.1:%d \(fds_app\.DB\)" % port)
        assert connection in (None, entry), "the siblings name one connection"
        connection = entry
        assert entry in attributes["mp.fork.fds.shared"]
        assert attributes["mp.fork.fds.shared_with"] == [sibling["attributes"]["mp.process.name"]]


def test_fork_child_names_the_log_file_and_the_pipe(app_environment, tmp_path):
    _, log_path = app_environment
    _, spans = run_traced(tmp_path, PROGRAM, "fork")
    for worker in _workers(spans):
        inherited = worker["attributes"]["mp.fork.fds"]
        assert "file %s (fds_app.LOG)" % log_path in inherited
        reader = _the(inherited, r"pipe \d+ read end \(fds_app\.RESULTS\)")
        inode = reader.split()[1]
        assert "pipe %s write end" % inode in inherited  # an int global: the end is listed, not named
        assert not [e for e in inherited if "mptrace" in e], "mptrace's own descriptors are left out"


@pytest.mark.parametrize("start_method", [m for m in start_methods() if m != "fork"])
def test_spawn_and_forkserver_children_are_not_said_to_inherit_descriptors(app_environment, tmp_path, start_method):
    """One worker of each: the fork one inherits the connection, the other gets none of the parent's."""
    _, spans = run_traced(tmp_path, PROGRAM, "%s,fork" % start_method)
    methods = {w["attributes"]["mp.start_method"]: w["attributes"] for w in _workers(spans)}
    assert sorted(methods) == sorted([start_method, "fork"])
    _the(methods["fork"]["mp.fork.fds"], r"socket tcp .* \(fds_app\.DB\)")
    assert "mp.fork.fds.shared" not in methods["fork"], "a %s sibling holds none of them" % start_method
    assert not [key for key in methods[start_method] if key.startswith("mp.fork.fds")], methods[start_method]


def _wait(ready):
    ready.wait(30)


def _start_siblings(count=2):
    """``count`` fork children started while all are alive; joined."""
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    children = [context.Process(target=_wait, args=(ready,)) for _ in range(count)]
    for child in children:
        child.start()
    ready.set()
    for child in children:
        child.join(30)
    return children


@pytest.fixture
def held_file(tmp_path):
    """A file this module holds open in a global while the test runs: (its real path)."""
    global HELD
    path = os.path.realpath(str(tmp_path / "held.txt"))
    HELD = open(path, "w")
    yield path
    HELD.close()
    HELD = None


def test_option_off_records_nothing(held_file):
    with SpanRecorder(inherited_fds=False) as recorder:
        _start_siblings()
        launches = recorder.named("mp.process")
    assert len(launches) == 2
    for launch in launches:
        assert not [key for key in launch.attributes if key.startswith("mp.fork.fds")], dict(launch.attributes)
    with SpanRecorder() as recorder:  # the same, on by default
        _start_siblings(1)
        assert "file %s (%s.HELD)" % (held_file, __name__) in recorder.process().inherited_fds


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_option_must_be_true_or_false(value):
    with pytest.raises(TypeError, match="option 'inherited_fds' must be True or False"):
        SpanRecorder(inherited_fds=value).start()


def test_testing_helpers_name_the_shared_file_and_the_sibling(held_file):
    with SpanRecorder() as recorder:
        first, second = _start_siblings()
        found = {p.name: p for p in recorder.processes()}
        entry = "file %s (%s.HELD)" % (held_file, __name__)
        assert entry in found[first.name].inherited_fds and entry in found[first.name].shared_fds
        assert found[first.name].fds_shared_with == (second.name,)
        assert found[second.name].fds_shared_with == (first.name,)
        with pytest.raises(AssertionError) as failed:
            recorder.assert_no_shared_fds(second.name)
        message = str(failed.value)
        assert "%s holds: " % first.name in message and entry in message
        assert "shares with %s (running)" % first.name in message  # the tree under it
        recorder.clear()
        _start_siblings(1)  # alone: nothing shared
        recorder.assert_no_shared_fds()


def test_a_queue_both_children_use_is_not_reported(held_file):
    """multiprocessing's own pipes are shared by design: never listed."""
    with SpanRecorder() as recorder:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        children = [context.Process(target=queue.put, args=(n,)) for n in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
        inodes = {str(os.fstat(queue._reader.fileno()).st_ino), str(os.fstat(queue._writer.fileno()).st_ino)}
        for process in recorder.processes():
            assert process.inherited_fds, "the held file is listed"
            assert not [e for e in process.inherited_fds if e.split()[0] == "pipe" and e.split()[1] in inodes]
        queue.close()


def test_the_popens_own_pipes_are_never_listed_and_a_pipe_the_program_opened_is():
    """The parent lists what a fork child inherits right after the fork, when the pipes the Popen made for this
    start exist: its sentinel and the end its finalizer closes (the child's ends are closed by then) are
    multiprocessing's, never listed; both ends of a pipe the program opened are."""
    with SpanRecorder() as recorder:
        program_pipe = os.pipe()
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        child = context.Process(target=_wait, args=(ready,))
        child.start()
        popen = child._popen
        popens_pipes = {str(os.fstat(fd).st_ino) for fd in [popen.sentinel] + list(popen.finalizer._args)}
        ready.set()
        child.join(30)
        inherited = recorder.process().inherited_fds
    program_inode = str(os.fstat(program_pipe[0]).st_ino)
    for fd in program_pipe:
        os.close(fd)
    pipes = [entry.split() for entry in inherited if entry.startswith("pipe ")]
    assert ["pipe", program_inode, "read", "end"] in pipes and ["pipe", program_inode, "write", "end"] in pipes, \
        inherited
    assert len(popens_pipes) == 2 and not [entry for entry in pipes if entry[1] in popens_pipes], inherited


def test_a_listening_socket_is_listed_but_not_shared(held_file):
    """A pre-forking server shares its accept queue on purpose."""
    global HELD
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    HELD, held = listener, HELD
    try:
        with SpanRecorder() as recorder:
            _start_siblings()
            for process in recorder.processes():
                entry = "socket tcp listening 127.0.0.1:%d (%s.HELD)" % (listener.getsockname()[1], __name__)
                assert entry in process.inherited_fds and entry not in process.shared_fds
    finally:
        HELD = held
        listener.close()


def test_tree_shows_one_warning_line_per_finding(held_file):
    with SpanRecorder() as recorder:
        first, second = _start_siblings()
        lines, spans = recorder.tree(), recorder.spans
    entry = "file %s (%s.HELD)" % (held_file, __name__)
    inherited = [line for line in lines if "── inherited " in line]
    assert len(inherited) == 2 and all(entry in line for line in inherited), "\n".join(lines)
    assert all(line.split(": ", 1)[1].startswith(entry) for line in inherited), "what a global holds comes first"
    for sibling in (first, second):
        shared = [line for line in lines if "── shares with %s (running): " % sibling.name in line]
        assert len(shared) == 1 and shared[0].split(": ", 1)[1].startswith(entry), "\n".join(lines)
    output = io.StringIO()
    _tree.render(spans, file=output, color=True)
    coloured = output.getvalue()
    for text in ("inherited ", "shares with %s" % first.name, "shares with %s" % second.name):
        before = coloured[:coloured.index(text)]
        assert before.endswith(YELLOW), "%r is not coloured as a warning" % text


def test_compare_has_a_row_and_names_the_difference(app_environment):
    port, _ = app_environment
    done = subprocess.run([sys.executable, "-m", "mptrace", "compare", "--start-methods", "fork,spawn", PROGRAM],
                          capture_output=True, text=True, cwd=ROOT, env=environment(
                              {"FDS_ECHO_PORT": os.environ["FDS_ECHO_PORT"],
                               "FDS_LOG_PATH": os.environ["FDS_LOG_PATH"]}), timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "│ inherited fds " in out and "│ fds shared with siblings " in out, out
    differences = out[out.index("What differs:"):].replace("\n", "")  # long entries wrap
    for row, value in (("inherited fds", r"socket tcp 127\.0\.0\.1:\d+->127\.0\.0\.1:%d \(fds_app\.DB\)" % port),
                       ("fds shared with siblings", r"with ForkProcess-2: .*\(fds_app\.DB\)")):
        assert re.search(r"Process-1 \(fds_app\.query\): %s differs: fork: [^*]*%s[^*]*; spawn: -" % (row, value),
                         differences), out


@pytest.mark.parametrize("default_timeout", [None, 5.0])
def test_reading_a_socket_leaves_it_as_it_was(default_timeout):
    """Blocking mode is a property of the open file, shared with every duplicate: describing the socket must
    not change it (with a default timeout, socket(fileno=...) would make it non-blocking: not read then)."""
    global HELD
    listener = socket.create_server(("127.0.0.1", 0))
    blocking, nonblocking = socket.create_connection(listener.getsockname()), socket.create_connection(
        listener.getsockname())
    nonblocking.setblocking(False)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(default_timeout)
    HELD = blocking
    try:
        with SpanRecorder() as recorder:
            _start_siblings(1)
            inherited = recorder.process().inherited_fds
        assert os.get_blocking(blocking.fileno()) and not os.get_blocking(nonblocking.fileno())
        assert blocking.gettimeout() is None and nonblocking.gettimeout() == 0.0
        held = _the(inherited, r"socket.* \(%s\.HELD\)" % re.escape(__name__))
        if default_timeout is None:
            assert held == "socket tcp %s:%d->%s:%d (%s.HELD)" % (
                blocking.getsockname() + blocking.getpeername() + (__name__,))
        else:
            assert held == "socket (%s.HELD)" % __name__
    finally:
        socket.setdefaulttimeout(previous)
        HELD = None
        for s in (blocking, nonblocking, listener):
            s.close()


class _CountingPopen(multiprocessing.popen_fork.Popen):
    """A fork Popen that counts how often its finalizer (what holds its pipes) is read."""

    def __getattribute__(self, name):
        if name == "finalizer":
            object.__getattribute__(self, "reads").append(name)
        return object.__getattribute__(self, name)

    def __init__(self, process_obj):
        self.reads = []
        super().__init__(process_obj)


class _CountingProcess(multiprocessing.context.ForkProcess):
    @staticmethod
    def _Popen(process_obj):
        return _CountingPopen(process_obj)


def _noop():
    pass


def test_a_start_reads_none_of_the_popens_the_program_keeps():
    """A program that keeps its Process objects (a list it joins at the end) keeps their Popens and pipes:
    each Popen's pipes are recorded once as multiprocessing's, not read again at every later start (work,
    and copy-on-write faults while children share those pages, growing with the children started)."""
    with SpanRecorder() as recorder:
        kept = []
        for _ in range(8):
            child = _CountingProcess(target=_noop)
            child.start()
            child.join(30)
            kept.append(child)
        inherited = [process.inherited_fds for process in recorder.processes()]
    reads = [len(child._popen.reads) for child in kept]
    # Each read at most twice (before its launch, at its own start's listing; then once launched, at the next
    # start): not once more at every later start.
    assert max(reads) <= 2, "the earlier Popens were read at every later start: %s" % reads
    pipes = {str(os.fstat(fd).st_ino) for child in kept for fd in child._popen.finalizer._args}
    assert len(inherited) == 8 and not [entry for entries in inherited for entry in entries
                                        if entry.startswith("pipe ") and entry.split()[1] in pipes], inherited
    for child in kept:
        child.close()


def test_a_pipe_of_the_program_on_a_number_a_closed_popen_held_is_listed():
    """What sits on a descriptor decides, not its number: a Popen the program keeps after closing it leaves
    its numbers free, and the program's own pipe there is the program's."""
    context = multiprocessing.get_context("fork")
    with SpanRecorder() as recorder:
        first = context.Process(target=_noop, name="first")
        first.start()
        first.join(30)
        popen = first._popen  # kept by the program past close()
        sentinel = popen.sentinel
        first.close()
        read_end, write_end = os.pipe()  # perhaps on the sentinel's number already: else put there too
        if sentinel not in (read_end, write_end):
            os.dup2(read_end, sentinel)
        second = context.Process(target=_noop, name="second")
        second.start()
        second.join(30)
        inherited = recorder.process("second").inherited_fds
    inode = str(os.fstat(read_end).st_ino)
    on_the_sentinels_number = os.fstat(sentinel).st_ino == int(inode)
    ends = {read_end, write_end, sentinel}
    for fd in ends:
        os.close(fd)
    assert on_the_sentinels_number
    assert inherited.count("pipe %s read end" % inode) == len(ends) - 1, inherited
    assert popen.sentinel == sentinel


_MANY_CONNECTIONS = r"""
import multiprocessing, os, mptrace
from mptrace import _fds
mptrace.install()
for _ in range(5000):
    reader, writer = multiprocessing.Pipe(duplex=False)
    reader.close()
    writer.close()
reader, writer = multiprocessing.Pipe(duplex=False)
info = os.fstat(reader.fileno())
print(len(_fds._plumbing), (reader.fileno(), info.st_dev, info.st_ino) in _fds._plumbing)
"""


def test_multiprocessings_plumbing_is_forgotten_once_closed():
    """The descriptors recorded as multiprocessing's are dropped once closed: memory stays bounded in a
    program that makes many connections and never starts by fork (so never lists what a child inherits)."""
    from mptrace import _fds

    done = subprocess.run([sys.executable, "-c", _MANY_CONNECTIONS], capture_output=True, text=True, cwd=ROOT,
                          env=environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    kept, open_one_recorded = done.stdout.split()
    assert int(kept) < 2 * _fds.MIN_PRUNE_AT and open_one_recorded == "True", done.stdout
