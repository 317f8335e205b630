"""``mptrace run`` and ``mptrace compare`` from a shell, as users run them."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mptrace import _jaeger_json
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, environment, eventually

PROGRAM = os.path.join(ROOT, "tests", "programs", "cli_program.py")
LEAVES_PROCESSES = os.path.join(ROOT, "tests", "programs", "leaves_processes.py")
FOUNDING = os.path.join(ROOT, "examples", "founding", "main.py")
MPTRACE = os.path.join(os.path.dirname(sys.executable), "mptrace")


def mptrace(*args, cwd=ROOT, env=None, timeout=120, command=None):
    """Run the mptrace command; (returncode, stdout, stderr)."""
    done = subprocess.run((command or [MPTRACE]) + list(args), capture_output=True, text=True, cwd=cwd,
                          env=environment(env), timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def load_trace(path):
    with open(path) as f:
        return _jaeger_json.parse(json.load(f))


@pytest.mark.parametrize("start_method", START_METHODS)
def test_run_a_script_keeps_argv_exit_code_and_writes_a_trace(start_method, tmp_path):
    trace_file = tmp_path / "trace.json"
    code, out, err = mptrace("run", "--start-method", start_method, "--trace-file", str(trace_file), PROGRAM,
                             "exit3", "--flag", "two words", cwd=str(tmp_path))
    assert code == 3, err
    assert "argv ['exit3', '--flag', 'two words']" in out
    assert "main __main__ None" in out  # as python script.py: no __spec__
    assert "env []\n" in out, "the program saw variables that mptrace run set for install()"
    assert "child got tag-1" in out and "child exit 0" in out, "the %s child did not run the target" % start_method
    # the tree, on stderr
    assert "cli_program" in err and "Process-1" in err and start_method in err
    assert "trace written to %s" % trace_file in err
    spans = load_trace(str(trace_file))
    assert {s.name for s in spans} >= {"mp.process", "mp.process.run"}
    assert {s.resource["service.name"] for s in spans} == {"cli_program"}


@pytest.mark.parametrize("start_method", START_METHODS)
def test_run_a_module_with_dash_m(start_method, tmp_path):
    code, out, err = mptrace("run", "--start-method", start_method, "--trace-file", str(tmp_path / "t.json"),
                             "-m", "tests.programs.cli_program", "ok", "x", env={"OTEL_SERVICE_NAME": "given"})
    assert code == 0, err
    assert "argv ['ok', 'x']" in out
    assert "env ['OTEL_SERVICE_NAME']\n" in out  # what the shell gave is kept; what mptrace run set is not
    assert "main __main__ tests.programs.cli_program" in out  # as python -m: __spec__ names the module
    assert "child got tag-1" in out and "child exit 0" in out


def test_the_trace_file_holds_the_same_spans_the_exporter_saw(tmp_path):
    """The Jaeger JSON file against the console exporter's view of the very same run."""
    trace_file = tmp_path / "trace.json"
    code, out, err = mptrace("run", "--exporter", "tree,console", "--trace-file", str(trace_file),
                             "--start-method", "spawn", PROGRAM, "ok")
    assert code == 0, err
    printed = [json.loads(chunk) for chunk in _json_objects(out)]
    assert printed, "the console exporter printed nothing"
    expected = {(int(p["context"]["trace_id"], 16), int(p["context"]["span_id"], 16),
                 int(p["parent_id"], 16) if p["parent_id"] else None, p["name"],
                 p["resource"]["attributes"].get("process.pid")) for p in printed}
    found = {(s.trace_id, s.span_id, s.parent_span_id, s.name, s.resource.get("process.pid"))
             for s in load_trace(str(trace_file))}
    assert found == expected


def _json_objects(text):
    """The top-level JSON objects the console exporter printed, among the program's own lines."""
    decoder, index, found = json.JSONDecoder(), 0, []
    while True:
        start = text.find("{", index)
        if start < 0:
            return found
        obj, index = decoder.raw_decode(text, start)
        found.append(json.dumps(obj))


def test_an_uncaught_exception_exits_1_with_python_s_traceback(tmp_path):
    code, out, err = mptrace("run", "--no-trace-file", PROGRAM, "raise")
    assert code == 1
    traceback = err[err.index("Traceback"):]
    assert "ValueError: raised by the program" in traceback
    assert "runpy" not in traceback and "_runner" not in traceback  # as python would show it


def test_an_uncaught_keyboard_interrupt_ends_by_sigint_after_the_trace(tmp_path):
    trace_file = tmp_path / "t.json"
    code, out, err = mptrace("run", "--trace-file", str(trace_file), PROGRAM, "interrupt")
    assert code == -signal.SIGINT
    assert "KeyboardInterrupt" in err and trace_file.exists()


def test_a_signal_from_outside_ends_the_program_as_without_mptrace(tmp_path):
    process = subprocess.Popen([MPTRACE, "run", "--no-trace-file", PROGRAM, "wait"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while process.stdout.readline().strip() != "ready":
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == -signal.SIGTERM
    finally:
        process.kill()
        process.wait()


def test_python_dash_m_mptrace_is_the_same_program(tmp_path):
    code, out, err = mptrace("run", "--no-trace-file", PROGRAM, "exit3", command=[sys.executable, "-m", "mptrace"])
    assert code == 3 and "child exit 0" in out and "Process-1" in err


@pytest.mark.parametrize("args, message", [
    (["run", "nowhere.py"], "no such file: 'nowhere.py'"),
    (["run", "-m", "no_such_module_here"], "no module named 'no_such_module_here'"),
    (["run", "--start-method", "teleport", PROGRAM, "ok"], "--start-method must be one of"),
    (["run", "--exporter", "carrier-pigeon", PROGRAM, "ok"], "OTEL_TRACES_EXPORTER has an unknown exporter "
                                                            "'carrier-pigeon'"),
    (["run"], "no program to run"),
    (["fly", PROGRAM], "unknown command 'fly'"),
    (["compare", "nowhere.py"], "no such file: 'nowhere.py'"),
    (["compare", "--start-methods", "fork,teleport", PROGRAM, "ok"], "--start-methods must name some of"),
])
def test_what_cannot_run_gets_one_line_and_exit_2(args, message):
    code, out, err = mptrace(*args)
    assert code == 2, (out, err)
    assert err.strip().splitlines() == ["mptrace: error: " + err.strip().split("mptrace: error: ", 1)[-1]]
    assert message in err


def test_compare_names_what_the_founding_program_shows():
    code, out, err = mptrace("compare", FOUNDING)
    assert code == 0, err
    differences = out[out.index("What differs:"):]
    for needle in ("import_mock.to_mock", "A.__getstate__", "args[0]", "args[0].c: was 3, arrived 0"):
        assert needle in differences, "compare did not name %s:\n%s" % (needle, out)
    assert "program standard output differs" in differences
    for method in START_METHODS:
        assert "%s: exit 0" % method in out


def test_compare_reports_a_program_that_fails_under_one_method_and_still_exits_0(tmp_path):
    program = tmp_path / "fails_without_fork.py"
    program.write_text(
        "import multiprocessing, sys\n"
        "settings = {}\n"
        "def work():\n"
        "    sys.exit(0 if settings.get('ready') else 5)\n"
        "if __name__ == '__main__':\n"
        "    settings['ready'] = True\n"
        "    p = multiprocessing.Process(target=work)\n"
        "    p.start(); p.join()\n"
        "    sys.exit(p.exitcode)\n")
    code, out, err = mptrace("compare", "--start-methods", "fork,spawn", str(program), cwd=str(tmp_path))
    assert code == 0, err
    assert "fork: exit 0" in out and "spawn: exit 5" in out
    assert "ended differs: fork: exit 0; spawn: exit 5" in out
    assert "program exit code differs" in out


@pytest.mark.parametrize("args, variables, message", [
    (["run", "--trace-file", "/no/such/dir/t.json", PROGRAM, "ok"], {},
     "cannot write the trace file /no/such/dir/t.json: no directory /no/such/dir"),
    (["run", PROGRAM, "ok"], {"MPTRACE_TRACE_FILE": "/no/such/dir/t.json"}, "cannot write the trace file"),
    (["run", "--trace-file", ROOT, PROGRAM, "ok"], {}, "cannot write the trace file %s: it is a directory" % ROOT),
    (["run", "--no-such-option", PROGRAM, "ok"], {}, "unrecognized arguments: --no-such-option"),
    (["run", PROGRAM, "ok"], {"MPTRACE_PICKLE_SPAN_BYTES": "lots"}, "MPTRACE_PICKLE_SPAN_BYTES must be"),
    (["run", PROGRAM, "ok"], {"MPTRACE_SPOOL_DIR": "/no/such/dir"}, "MPTRACE_SPOOL_DIR is not a directory"),
    (["compare", "--timeout", "soon", PROGRAM, "ok"], {}, "invalid float value: 'soon'"),
    (["compare", "--timeout", "inf", PROGRAM, "ok"], {}, "--timeout must be a positive number of seconds"),
    (["compare", PROGRAM, "ok"], {"MPTRACE_PICKLE_SPAN_BYTES": "lots"}, "MPTRACE_PICKLE_SPAN_BYTES must be"),
    (["compare", PROGRAM, "ok"], {"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER has an unknown sampler"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_option_or_variable_stops_before_the_program_starts(args, variables, message):
    code, out, err = mptrace(*args, env=variables)
    assert code == 2, (out, err)
    assert out == "", "the program ran"
    assert len(err.splitlines()) == 1 and err.startswith("mptrace: error: "), err
    assert message in err


def test_a_plain_install_that_cannot_write_its_trace_file_says_so_in_one_line(tmp_path):
    program = tmp_path / "installs.py"
    program.write_text("import multiprocessing, sys\n"
                       "import mptrace\n"
                       "if __name__ == '__main__':\n"
                       "    mptrace.install()\n"
                       "    p = multiprocessing.Process(target=print, args=('child',))\n"
                       "    p.start(); p.join()\n"
                       "    sys.exit(5)\n")
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path), env=environment({"OTEL_TRACES_EXPORTER": "mptrace", "MPTRACE_TREE": "off",
                                                               "MPTRACE_TRACE_FILE": "/no/such/dir/t.json"}))
    assert done.returncode == 5 and done.stdout == "child\n"
    assert done.stderr.splitlines() == [
        "mptrace: cannot write the trace file /no/such/dir/t.json: No such file or directory"]


# -- nothing left behind -----------------------------------------------------------------


def marked(variables):
    """``variables`` plus a marker every process of the run inherits: (the environment, the marker)."""
    marker = uuid.uuid4().hex
    return dict(variables, MPTRACE_TEST_MARKER=marker), marker


def processes_marked(marker):
    """The pids of the live processes whose environment holds ``marker``."""
    needle = ("MPTRACE_TEST_MARKER=%s" % marker).encode()
    found = []
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                environ = f.read()
            with open("/proc/%s/stat" % name, "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except (OSError, ValueError, IndexError):
            continue
        if needle in environ.split(b"\0") and not zombie:
            found.append(int(name))
    return found


def kill_marked(marker):
    for pid in processes_marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_compare_kills_every_process_of_a_run_that_times_out(tmp_path):
    """The forkserver, its child and a subprocess: after the timeout, none is left."""
    variables, marker = marked({})
    ready = tmp_path / "ready"
    try:
        code, out, err = mptrace("compare", "--timeout", "20", "--start-methods", "forkserver", LEAVES_PROCESSES,
                                 "hang", str(ready), env=variables)
        assert "forkserver: exit None" in out and "timed out after 20 s" in out, (out, err)
        assert ready.exists(), "the run did not get going within its timeout: the check is blind"
        assert eventually(lambda: not processes_marked(marker)), "left behind: %s" % processes_marked(marker)
    finally:
        kill_marked(marker)


def test_compare_kills_what_a_finished_run_left_behind(tmp_path):
    variables, marker = marked({})
    try:
        code, out, err = mptrace("compare", "--timeout", "100", "--start-methods", "fork", LEAVES_PROCESSES,
                                 "leave", str(tmp_path / "ready"), env=variables)
        assert code == 0 and "fork: exit 0" in out, (out, err)
        assert eventually(lambda: not processes_marked(marker)), "left behind: %s" % processes_marked(marker)
    finally:
        kill_marked(marker)


@contextlib.contextmanager
def compare_waiting_for_a_hanging_run(tmp_path):
    """(compare, the marker of its run's processes): compare running a spawn run that hangs, once that run
    has got going; compare and every process marked are killed afterwards."""
    variables, marker = marked({})
    ready = tmp_path / "ready"
    compare = subprocess.Popen([MPTRACE, "compare", "--start-methods", "spawn", LEAVES_PROCESSES, "hang", str(ready)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=environment(variables))
    try:
        assert eventually(ready.exists, 120), "the run never got going"
        yield compare, marker
    finally:
        compare.kill()
        compare.communicate()
        kill_marked(marker)


def test_compare_stopped_by_sigterm_kills_its_run_and_dies_by_it(tmp_path):
    with compare_waiting_for_a_hanging_run(tmp_path) as (compare, marker):
        compare.send_signal(signal.SIGTERM)
        assert compare.wait(60) == -signal.SIGTERM
        assert eventually(lambda: not processes_marked(marker)), "left behind: %s" % processes_marked(marker)


def _blocked_signals(pid, tid):
    """The signals thread ``tid`` of process ``pid`` blocks (Linux's /proc)."""
    with open("/proc/%d/task/%d/status" % (pid, tid)) as status:
        mask = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads each thread's signal mask from /proc")
def test_compare_leaves_its_stopping_signals_to_its_main_thread(tmp_path):
    """A signal sent to a process goes to any thread that does not block it: one that reached a thread reading
    the run's output left the main thread waiting for a run that hangs, and compare never stopped (SIGINT:
    Ctrl-C, which Python raises in the main thread, but only once that thread's wait is interrupted)."""
    with compare_waiting_for_a_hanging_run(tmp_path) as (compare, _):
        threads = [int(tid) for tid in os.listdir("/proc/%d/task" % compare.pid) if int(tid) != compare.pid]
        assert threads, "compare reads the run's output in threads of its own"
        stopping = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
        for tid in threads:
            assert stopping <= _blocked_signals(compare.pid, tid)
        assert not stopping & _blocked_signals(compare.pid, compare.pid)


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("ending", ["raise", "os_exit", "SIGTERM", "SIGKILL"])
def test_run_removes_its_spool_directory_however_the_program_ends(start_method, ending, tmp_path):
    """Without a signal handler in the program: a watcher removes it once the program is gone."""
    spool = tmp_path / "spool"
    spool.mkdir()
    variables, marker = marked({"MPTRACE_SPOOL_DIR": str(spool)})
    mode = ending if ending in ("raise", "os_exit") else "wait"
    run = subprocess.Popen([MPTRACE, "run", "--start-method", start_method, "--no-trace-file", "--no-tree", PROGRAM,
                            mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env=environment(variables))
    try:
        if mode == "wait":
            assert _read_until_ready(run), run.stderr.read()
            assert os.listdir(str(spool)), "the run's spool directory is not where the test looks"
            run.send_signal(getattr(signal, ending))
        run.communicate(timeout=60)
        assert run.returncode == {"raise": 1, "os_exit": 4}.get(ending, -getattr(signal, ending, 0))
        assert eventually(lambda: not os.listdir(str(spool))), "left in the spool: %s" % os.listdir(str(spool))
        assert eventually(lambda: not processes_marked(marker)), "left behind: %s" % processes_marked(marker)
    finally:
        run.kill()
        run.communicate()
        kill_marked(marker)


def _read_until_ready(process):
    deadline = time.monotonic() + 60
    while process.stdout.readline().strip() != "ready":
        if time.monotonic() > deadline or process.poll() is not None:
            return False
    return True
