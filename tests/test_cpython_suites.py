"""tools/cpython_suites.py's comparison: what counts as a difference between the plain and the traced run.

The runs themselves take minutes (see README, "Never breaking the host
program"); here each mode's results are small files written the way regrtest
writes them.
"""

import importlib.util
import os
import signal
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "cpython_suites.py")


def load_script():
    """The script as a module kept out of sys.modules: other tests list the application modules imported."""
    spec = importlib.util.spec_from_file_location("cpython_suites", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpython_suites = load_script()

JUNIT = """<testsuites><testsuite tests="3" errors="0" failures="0">
<testcase name="test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_map" status="run" result="completed" />
<testcase name="test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_async" status="run" result="completed">%s</testcase>
<testcase name="test.test_multiprocessing_fork.test_misc.TestForkAwareThreadLock.test_lock" status="run" result="completed"><skipped>no</skipped></testcase>
</testsuite></testsuites>
"""

LOG = """0:00:01 [1/2] test_multiprocessing_fork.test_misc passed
test_map (test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_map) ... ok
%s0:00:05 [2/2%s] test_multiprocessing_fork.test_processes %s
"""


def write_run(directory, mode, failure="", env_changed=False):
    mode_dir = os.path.join(directory, mode)
    os.makedirs(mode_dir)
    with open(os.path.join(mode_dir, "test_multiprocessing_fork.xml"), "w") as xml:
        xml.write(JUNIT % failure)
    with open(os.path.join(mode_dir, "test_multiprocessing_fork.log"), "w") as log:
        log.write(LOG % ("Warning -- Dangling processes: {<Process>}\n" if env_changed else "",
                         "/1" if env_changed else "", "failed (env changed)" if env_changed else "passed"))


def compare(directory):
    return cpython_suites.compare(str(directory), ["test_multiprocessing_fork"])


def test_identical_runs_differ_in_nothing(tmp_path):
    write_run(tmp_path, "plain")
    write_run(tmp_path, "traced")
    files = compare(tmp_path)
    assert sorted(files) == ["test_multiprocessing_fork.test_misc", "test_multiprocessing_fork.test_processes"]
    assert all(not f.unexpected() for f in files.values())
    assert files["test_multiprocessing_fork.test_processes"].count("traced", "passed") == 2


def test_a_test_failing_only_traced_is_unexpected(tmp_path):
    write_run(tmp_path, "plain")
    write_run(tmp_path, "traced", failure="<failure>AssertionError</failure>")
    processes = compare(tmp_path)["test_multiprocessing_fork.test_processes"]
    assert processes.unexpected() == [
        ("test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_async",
         "passed plain, failed traced")]


def test_env_changed_only_traced_is_unexpected_and_names_the_test_before_the_warning(tmp_path):
    write_run(tmp_path, "plain")
    write_run(tmp_path, "traced", env_changed=True)
    processes = compare(tmp_path)["test_multiprocessing_fork.test_processes"]
    assert processes.unexpected() == [("test_multiprocessing_fork.test_processes", "env changed traced only")]
    assert processes.warnings["traced"] == [
        ("test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_map",
         "Dangling processes: {<Process>}")]


def test_a_test_missing_traced_is_unexpected(tmp_path):
    write_run(tmp_path, "plain")
    os.makedirs(os.path.join(str(tmp_path), "traced"))  # the traced run crashed before writing its XML
    misc = compare(tmp_path)["test_multiprocessing_fork.test_processes"]
    assert len(misc.unexpected()) == 2
    assert "missing traced" in misc.unexpected()[0][1]


def test_the_script_exits_1_on_a_difference_and_prints_the_table(tmp_path):
    write_run(tmp_path, "plain")
    write_run(tmp_path, "traced", failure="<error>RuntimeError</error>")
    done = subprocess.run([sys.executable, SCRIPT, "--compare-only", "--out", str(tmp_path),
                           "test_multiprocessing_fork"], stdout=subprocess.PIPE, universal_newlines=True)
    assert done.returncode == 1, done.stdout
    assert "| test_multiprocessing_fork.test_processes | 2     | 2            | 1             |" in done.stdout
    assert "UNEXPECTED  test.test_multiprocessing_fork.test_processes.WithProcessesTestPool.test_async" in done.stdout


def test_a_warning_in_a_file_that_also_failed_counts_as_env_changed(tmp_path):
    """3.10 reports such a file "failed (2 failures)", not "env changed": its warnings say it."""
    write_run(tmp_path, "plain")
    write_run(tmp_path, "traced")
    with open(os.path.join(str(tmp_path), "traced", "test_multiprocessing_fork.log"), "a") as log:
        log.write("Warning -- Dangling threads: {<Thread(Thread-3 (_handle_results), stopped daemon 1)>}\n")
    processes = compare(tmp_path)["test_multiprocessing_fork.test_processes"]
    assert processes.unexpected() == [("test_multiprocessing_fork.test_processes", "env changed traced only")]


def test_a_suite_runs_with_sigint_at_its_default_even_when_the_script_ignores_it(tmp_path):
    """A background job (``cmd &``) starts with SIGINT ignored; the suites' SIGINT tests need it back."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\ngrep SigIgn /proc/self/status\n")
    fake_python.chmod(0o755)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cpython_suites.run_suite(str(fake_python), "test_multiprocessing_fork", "plain", str(tmp_path), 60)
    finally:
        signal.signal(signal.SIGINT, previous)
    with open(os.path.join(str(tmp_path), "plain", "test_multiprocessing_fork.log")) as log:
        ignored = int(log.read().split()[1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1))
