"""Faults lose nothing silently: whatever breaks, the program runs as it would
untraced, nothing hangs, and every span that does not arrive is counted in
``mptrace.stats()`` and said once on the ``mptrace`` logger.

Each test runs tests/programs/faults.py twice, untraced and traced, in a fresh
interpreter, and compares what it printed and its exit status.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.subprocesses import ROOT, environment

SPOOL_WARNING = "mptrace: "


def run_both(tmp_path, scenario, method, variables=None):
    """(untraced result, traced result, stats of the traced run); both printed the same."""
    results = []
    for traced in ("0", "1"):
        stats_file = str(tmp_path / ("stats-%s.json" % traced))
        env = environment(dict(variables or {}, FAULTS_TRACE=traced, FAULTS_STATS=stats_file))
        results.append(subprocess.run([sys.executable, "-m", "tests.programs.faults", scenario, method],
                                      capture_output=True, text=True, timeout=120, cwd=ROOT, env=env))
    untraced, traced = results
    assert untraced.returncode == 0, untraced.stderr
    assert (traced.stdout, traced.returncode) == (untraced.stdout, untraced.returncode), traced.stderr
    with open(str(tmp_path / "stats-1.json")) as f:
        return untraced, traced, json.load(f)


def warnings_about(result, words):
    return [line for line in result.stderr.splitlines() if line.startswith(SPOOL_WARNING) and words in line]


def assert_nothing_lost(stats):
    assert (stats["lost_spans"], stats["lost_files"], stats["lost_reasons"]) == (0, 0, {})
    assert stats["corrupt_records"] == 0


def test_spool_directory_removed_while_children_run(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "spool_removed", start_method)
    assert "exit code 3" in traced.stdout and "exit codes [4]" in traced.stdout
    assert stats["lost_files"] == 2, stats  # the child running then, and the one started after
    assert stats["lost_reasons"] == {"the spool directory was removed": 2}
    assert len(warnings_about(traced, "the spool directory was removed")) == 1, traced.stderr
    assert len(warnings_about(traced, "")) == 1, traced.stderr  # and nothing else


def test_a_child_that_may_not_grow_its_spool_file_counts_what_it_lost(tmp_path, start_method):
    """RLIMIT_FSIZE: the spool file stops growing part way (as on a full disk)."""
    untraced, traced, stats = run_both(tmp_path, "file_size_limit", start_method)
    work = stats["exported"].count("work")
    assert 0 < work < 40, stats  # some spans fitted, the rest did not
    # Every "work" span that did not arrive whole, and the run span, were counted; those
    # whose start arrived were also ended on the child's behalf (the run span is one).
    delivered_whole = work - (stats["synthesized"] - 1)
    assert stats["lost_spans"] == 40 - delivered_whole + 1, stats
    (reason,) = stats["lost_reasons"]
    assert "EFBIG" in reason, reason
    assert len(warnings_about(traced, "could not write its spool file")) == 1, traced.stderr
    assert stats["synthesized"] >= 1  # the run span, ended on the child's behalf


def test_a_span_processor_that_raises_loses_only_what_it_was_handed(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "processor_raises", start_method)
    assert stats["lost_reasons"] == {"a span processor raised": stats["lost_spans"]}
    assert stats["lost_spans"] >= 5 + 2  # the user's spans and the run spans
    assert stats["spans"] == 0
    assert len(warnings_about(traced, "a span processor raised")) == 1, traced.stderr


def test_an_exporter_that_raises_changes_nothing(tmp_path, start_method):
    """The SDK's processor catches (and logs) an exporter's exception: mptrace loses nothing."""
    untraced, traced, stats = run_both(tmp_path, "exporter_raises", start_method)
    assert_nothing_lost(stats)
    assert stats["exported"].count("work") == 5


def test_spans_after_the_provider_is_shut_down_are_counted(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "shut_down_early", start_method)
    if not _simple_processor_refuses_after_shutdown():
        assert_nothing_lost(stats)  # older SDKs export on regardless: nothing is lost
        assert stats["exported"].count("work") == 4
        return
    assert stats["spans"] == 0
    assert stats["lost_spans"] >= 4 + 1, stats  # the child's own spans and its run span
    assert list(stats["lost_reasons"]) == ["the tracer provider was shut down before these spans arrived"]
    assert len(warnings_about(traced, "shut down")) == 1, traced.stderr


def _simple_processor_refuses_after_shutdown():
    """Whether a shut-down SimpleSpanProcessor drops what it gets (opentelemetry-sdk 1.45 does, 1.41 does not)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    return hasattr(SimpleSpanProcessor(SpanExporter()), "_shutdown")


def test_a_child_that_floods_the_exporter_queue(tmp_path):
    untraced, traced, stats = run_both(tmp_path, "flood", "fork")
    children_exported = [name for name in stats["exported"] if name != "mp.process"]
    assert len(children_exported) == stats["spans"], "a span handed over was dropped uncounted"
    assert stats["spans"] + stats["lost_spans"] == 3000 + 1  # every work span and the run span
    assert stats["lost_spans"] > 0
    assert len(warnings_about(traced, "queue was full")) == 1, traced.stderr


def test_a_signal_during_start(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "signal_during_start", start_method)
    assert traced.stdout.count("0") == 8
    assert_nothing_lost(stats)
    assert stats["exported"].count("mp.process.run") == 8


def test_managers_and_shared_memory(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "managers_and_shared_memory", start_method)
    assert "list [0, 10, 20]" in traced.stdout and "memory b'\\x01\\x02\\x03\\x00'" in traced.stdout
    assert_nothing_lost(stats)
    assert stats["exported"].count("work") == 3
    assert stats["exported"].count("mp.process.run") == 4  # the manager's server, and three workers


def test_os_fork_called_directly(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "plain_fork", start_method)
    assert "forked 9" in traced.stdout and "exit codes [7]" in traced.stdout
    assert_nothing_lost(stats)
    assert "forked" in stats["exported"] and "before-fork" in stats["exported"]


@pytest.mark.parametrize("runtime_dir", ["/proc", "/no/such/directory"])
def test_spool_directory_falls_back_when_runtime_dir_is_unusable(tmp_path, runtime_dir):
    """$XDG_RUNTIME_DIR unusable and (in the program) no /dev/shm: the system temporary directory."""
    untraced, traced, stats = run_both(tmp_path, "no_memory_dirs", "spawn",
                                       {"XDG_RUNTIME_DIR": runtime_dir, "TMPDIR": str(tmp_path)})
    assert_nothing_lost(stats)
    assert stats["spool_parent"] == str(tmp_path)
    assert stats["exported"].count("work") == 2
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith("mptrace-")], "spool left behind"


GAVE_UP = "the span processors did not return in time"
# Python 3.12+ refuses to start a thread once the interpreter shuts down, so mptrace's exit
# work (an atexit handler) cannot wait on a hanging exporter with a bound there (see README).
exit_wait_unbounded = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="no thread can start during interpreter shutdown on Python 3.12+")


@exit_wait_unbounded
def test_an_exporter_that_hangs_behind_a_simple_processor(tmp_path, start_method):
    """The exporter hangs while the last child runs: mptrace's exit work waits for it a while, then
    counts what it could not hand over; the program's atexit handlers run and it exits as untraced.
    (A deadlock shows as the run's timeout.)"""
    untraced, traced, stats = run_both(tmp_path, "hang_simple", start_method)
    assert traced.stdout.endswith("atexit ran\n") and "exit codes [0, 3]" in traced.stdout
    # The first hand-over still running when the wait ran out is the processor's (the exporter has
    # it); the rest, the last child's three spans and its run span among them, were counted
    # (and any of the first children's not collected before the hang).
    ((reason, count),) = stats["lost_reasons"].items()
    assert reason.startswith(GAVE_UP) and count == stats["lost_spans"], stats
    assert stats["lost_spans"] >= 3 + 1, stats
    assert len(warnings_about(traced, GAVE_UP)) == 1, traced.stderr
    assert "exit" not in untraced.stderr


@exit_wait_unbounded
@pytest.mark.parametrize("shutdown_on_exit", ["1", "0"])
def test_an_exporter_that_hangs_behind_a_batch_processor(tmp_path, start_method, shutdown_on_exit):
    """flush(timeout) returns in time; at exit, mptrace flushes (when the SDK will not) for a while
    only; the batch processor holds every span, so mptrace loses none."""
    untraced, traced, stats = run_both(tmp_path, "hang_batch", start_method,
                                       {"FAULTS_SHUTDOWN_ON_EXIT": shutdown_on_exit})
    assert traced.stdout.endswith("atexit ran\n") and "exit codes [0, 3]" in traced.stdout
    assert stats["flushed"] is False  # the export it started hangs
    assert_nothing_lost(stats)
    did_not_flush = warnings_about(traced, "did not flush")
    assert len(did_not_flush) == (shutdown_on_exit == "0"), traced.stderr


def test_uninstall_returns_while_the_exporter_hangs(tmp_path, start_method):
    untraced, traced, stats = run_both(tmp_path, "hang_batch", start_method, {"FAULTS_END": "uninstall"})
    assert traced.stdout.endswith("atexit ran\n")
    after = stats["after_uninstall"]
    assert (after["lost_spans"], after["lost_reasons"]) == (0, {})
    assert len(warnings_about(traced, "did not flush")) == 1, traced.stderr
