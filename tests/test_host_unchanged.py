"""mptrace never changes what the traced program does, and never breaks it."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

import mptrace
from mptrace._state import state
from tests import targets
from tests.spans import is_error, one
from tests.subprocesses import ROOT


def run_module(module, *args, python_args=()):
    return subprocess.run([sys.executable, *python_args, "-m", module, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_output_and_exit_code_are_unchanged(start_method):
    plain = run_module("tests.programs.behaviour", start_method)
    traced = run_module("tests.programs.behaviour", start_method, "--traced")
    assert plain.returncode == traced.returncode == 3
    assert traced.stdout == plain.stdout
    added = [line for line in traced.stderr.splitlines() if line not in plain.stderr.splitlines()]
    assert not added, "mptrace wrote to stderr: %s" % added  # (a path may hold "mptrace": compare lines)
    assert traced.stderr == plain.stderr


def test_after_uninstall_children_run_as_without_mptrace(start_method):
    """Under forkserver, the fork server mptrace started holds the patches it made for its children (see
    _child.prepare_server): after uninstall() its children must not be traced, and run exactly as untraced."""
    plain = run_module("tests.programs.behaviour", start_method, "--quiet-first")
    uninstalled = run_module("tests.programs.behaviour", start_method, "--uninstalled")
    assert plain.returncode == uninstalled.returncode == 3
    assert uninstalled.stdout == plain.stdout
    assert uninstalled.stderr == plain.stderr


def test_pickling_errors_propagate_unchanged(context, start_method):
    if start_method == "fork":
        pytest.skip("fork does not pickle the target")

    def local_target():
        pass

    def start_local():
        process = context.Process(target=local_target)
        try:
            process.start()
        except Exception as exc:
            return exc
        finally:
            if process._popen is not None:
                process.join()

    untraced = start_local()
    from tests.conftest import Traced

    t = Traced()
    mptrace.install(tracer_provider=t.provider)
    try:
        traced = start_local()
        spans = t.spans()
    finally:
        mptrace.uninstall()
    assert untraced is not None and type(traced) is type(untraced)
    assert str(traced) == str(untraced)
    launch = one(spans, "mp.process")
    assert is_error(launch)
    assert [e.attributes["exception.type"] for e in launch.events] == [type(untraced).__name__]


def test_internal_failure_is_logged_and_the_call_goes_on(traced, context, caplog):
    class BrokenTracer:
        def start_span(self, *args, **kwargs):
            raise RuntimeError("mptrace bug")

    state.tracer = BrokenTracer()
    with caplog.at_level(logging.WARNING, logger="mptrace"):
        p = context.Process(target=targets.exit_with, args=(5,))
        p.start()
        p.join(30)
    assert p.exitcode == 5
    assert "opening mp.process failed" in caplog.text
    assert traced.spans() == []  # the child was left alone, as if untraced


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the fork-with-threads warning exists from 3.12")
def test_traced_fork_adds_no_deprecation_warning():
    control = run_module("tests.programs.fork_quietly", "--thread", python_args=("-W", "always::DeprecationWarning"))
    assert control.returncode == 0, control.stderr
    assert "DeprecationWarning" in control.stderr, "the control should warn: the check would be blind"
    quiet = run_module("tests.programs.fork_quietly", python_args=("-W", "always::DeprecationWarning"))
    assert quiet.returncode == 0, quiet.stderr
    assert "DeprecationWarning" not in quiet.stderr, quiet.stderr
    assert quiet.stdout.strip() == "9 spans"  # 3 children x (mp.process, mp.process.run, user-work)


def test_children_not_joined_are_ended_at_parent_exit(start_method, tmp_path):
    output = tmp_path / "spans.json"
    result = run_module("tests.programs.exit_without_join", start_method, str(output))
    assert result.returncode == 0, result.stderr
    spans = json.loads(output.read_text())
    by_name = {}
    for span in spans:
        by_name.setdefault((span["name"], span["attributes"].get("mp.process.name")), span)
    assert_no_orphans_json(spans)
    worker = by_name[("mp.process", "worker")]
    assert worker["attributes"]["mp.exitcode"] == 0 and worker["status"] == "UNSET"
    assert ("mp.process.run", "worker") in by_name
    daemon = by_name[("mp.process", "daemon")]
    assert daemon["attributes"]["mp.exit.signal"] == "SIGTERM"  # multiprocessing terminates daemons at exit
    # Killed by a signal, so an error; and said who sent it.
    assert daemon["attributes"]["mp.process.end_reason"] == "terminated at exit: a daemon process"
    assert daemon["status"] == "ERROR"
    daemon_run = by_name[("mp.process.run", "daemon")]
    assert daemon_run["attributes"]["mp.span.synthesized"] is True


def assert_no_orphans_json(spans):
    ids = {s["span_id"] for s in spans}
    orphans = [s["name"] for s in spans if s["parent"] is not None and s["parent"] not in ids]
    assert orphans == [], orphans


PRERUN_PROGRAMS = [("prerun_no_guard.py",), ("prerun_failures.py", "syntax"), ("prerun_failures.py", "setstate")]


@pytest.mark.parametrize("program", PRERUN_PROGRAMS, ids="-".join)
def test_a_child_that_dies_before_run_prints_the_same_traceback(start_method, program, tmp_path):
    """The failure is recorded from sys.excepthook, and no frame of mptrace's shows in what the child prints."""
    if start_method == "fork":
        pytest.skip("a fork child neither re-imports the main module nor unpickles its process object")
    script, args = os.path.join(ROOT, "tests", "programs", program[0]), (start_method,) + program[1:]
    plain = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    traced = run_module("tests.programs.run_traced", str(tmp_path / "spans.json"), script, *args)
    assert plain.returncode == traced.returncode == 0
    assert traced.stdout == plain.stdout == "exit code 1\n"
    temporary = re.compile(r"/tmp\w{8}/")  # the syntax case writes its broken module to a fresh directory
    assert "Traceback" in plain.stderr
    assert temporary.sub("/", traced.stderr) == temporary.sub("/", plain.stderr)
