"""Children that die before run(): while they prepare, re-import the main module or unpickle the process object.

Each test runs a real program (tests/programs/prerun_*.py) under mptrace and
asserts what the child's mp.process.run, the parent's mp.process, the tree and
``mptrace compare`` say: the exception, the phase, where, and for the missing
main guard what to do.
"""

import os

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode

from mptrace import _compare, _tree, semconv
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT, run_traced

PROGRAMS = os.path.join(ROOT, "tests", "programs")
FRESH = ["spawn", "forkserver"]
PACKAGE = os.path.dirname(os.path.abspath(_compare.__file__)) + os.sep  # mptrace's frames are from here
GUARD_HINT = 'under `if __name__ == "__main__":`'
BOOTSTRAP = "An attempt has been made to start a new process before the current process has finished its " \
            "bootstrapping phase."


def program(name):
    return os.path.join(PROGRAMS, name)


def readable(span):
    """A span of run_traced's JSON as the SDK's ReadableSpan, for the tree and compare."""
    context = SpanContext(span["trace_id"], span["span_id"], is_remote=False)
    parent = SpanContext(span["trace_id"], span["parent"], is_remote=False) if span["parent"] else None
    resource = Resource({"process.pid": span["pid"]} if span["pid"] else {})
    events = [Event(e["name"], e["attributes"]) for e in span["events"]]
    status = Status(StatusCode[span["status"]], span["description"] if span["status"] == "ERROR" else None)
    return ReadableSpan(name=span["name"], context=context, parent=parent, resource=resource,
                        attributes=span["attributes"], events=events, status=status, start_time=span["start"],
                        end_time=span["end"])


def parsed(span):
    """A span as compare reads it from a trace file."""
    return _compare._jaeger_json.ParsedSpan(
        span["trace_id"], span["span_id"], span["parent"], span["name"], "INTERNAL", span["start"], span["end"],
        {k: tuple(v) if isinstance(v, list) else v for k, v in span["attributes"].items()}, {}, span["status"],
        span["description"], [(e["name"], 0, e["attributes"]) for e in span["events"]], [])


def spans_named(spans, name):
    return [s for s in spans if s["name"] == name]


def the_child(spans):
    """(mp.process, mp.process.run) of the program's one child."""
    [launch] = spans_named(spans, semconv.SPAN_PROCESS)
    runs = [s for s in spans_named(spans, semconv.SPAN_PROCESS_RUN) if s["parent"] == launch["span_id"]]
    assert len(runs) == 1, spans
    return launch, runs[0]


def ended(spans, method):
    run = _compare.Run(method, 0, "", "", [parsed(s) for s in spans], 1.0)
    [child] = _compare.children_of(run).values()
    return child.facts["ended"]


def shows_mptrace(text):
    """Whether ``text`` holds a frame of mptrace's or a message of its (not merely a path with "mptrace" in it,
    as a clone's has)."""
    return PACKAGE in text or "mptrace:" in text


def assert_failed_before_run(span, phase, kind, message, location=None):
    attributes = span["attributes"]
    assert span["status"] == "ERROR", span
    assert attributes[semconv.CHILD_FAILURE_PHASE] == phase
    assert attributes[semconv.CHILD_FAILURE_TYPE] == kind.rsplit(".", 1)[-1]
    assert message in " ".join(attributes[semconv.CHILD_FAILURE_MESSAGE].split())
    assert attributes[semconv.OTEL_ERROR_TYPE] == kind
    assert span["description"].startswith("%s in %s" % (kind.rsplit(".", 1)[-1], phase))
    if location is None:
        assert semconv.CHILD_FAILURE_LOCATION not in attributes
    else:
        assert attributes[semconv.CHILD_FAILURE_LOCATION].endswith(location), attributes


@pytest.mark.parametrize("start_method", FRESH)
def test_a_process_started_without_the_main_guard_names_the_runtime_error_and_the_fix(start_method, tmp_path):
    result, spans = run_traced(tmp_path, program("prerun_no_guard.py"), start_method)
    assert "exit code 1" in result.stdout
    assert not shows_mptrace(result.stderr)  # the trampoline no longer loads the instrumentation in the child
    launch, run = the_child(spans)
    for span in (launch, run):
        assert_failed_before_run(span, semconv.PHASE_MAIN_IMPORT, "RuntimeError", BOOTSTRAP,
                                 "prerun_no_guard.py:19")
        assert GUARD_HINT in span["attributes"][semconv.CHILD_FAILURE_HINT]
    assert launch["attributes"][semconv.EXITCODE] == 1
    [event] = [e for e in run["events"] if e["name"] == "exception"]
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert "prerun_no_guard.py\", line 19" in event["attributes"]["exception.stacktrace"]
    assert not shows_mptrace(event["attributes"]["exception.stacktrace"])
    assert len(spans_named(spans, semconv.SPAN_PROCESS)) == 1  # the child's failed start() left no span

    lines = _tree.summary_lines([readable(s) for s in spans])
    process_line = [line for line in lines if "Process-1" in line]
    assert len(process_line) == 1 and "RuntimeError: %s in main-module import" % BOOTSTRAP in process_line[0]
    assert any("failed before run(), in main-module import, at " in line and "prerun_no_guard.py:19" in line
               for line in lines), lines
    assert any(line.strip(" │├└─").startswith("hint: put the code that starts processes") for line in lines), lines

    text = ended(spans, start_method)
    assert text.startswith("exit 1: failed in main-module import: RuntimeError: " + BOOTSTRAP), text
    assert "prerun_no_guard.py:19" in text and GUARD_HINT in text

    if "fork" in START_METHODS:  # what compare sets beside it: under fork the same program runs
        result, spans = run_traced(tmp_path, program("prerun_no_guard.py"), "fork")
        assert "exit code 0" in result.stdout and ended(spans, "fork") == "exit 0"


@pytest.mark.parametrize("start_method", FRESH)
def test_pool_workers_that_all_fail_alike_are_one_counted_finding(start_method, tmp_path):
    result, spans = run_traced(tmp_path, program("prerun_no_guard_pool.py"), start_method)
    assert "workers kept failing" in result.stdout
    # A worker can record its failure and be terminated by the pool before it exits: its mp.process
    # then says SIGTERM, and its mp.process.run still says how it failed.
    recorded = [s for s in spans if s["attributes"].get(semconv.CHILD_FAILURE_PHASE) == semconv.PHASE_MAIN_IMPORT]
    failed = {s["span_id"] if s["name"] == semconv.SPAN_PROCESS else s["parent"] for s in recorded}
    assert len(failed) >= 2, spans
    lines = _tree.summary_lines([readable(s) for s in spans])
    findings = [line for line in lines if "RuntimeError" in line]
    assert len(findings) == 1, lines
    assert "×%d workers failed in main-module import: RuntimeError: %s" % (len(failed), BOOTSTRAP) in findings[0], \
        lines
    assert "prerun_no_guard_pool.py:23" in findings[0]
    assert len([line for line in lines if "hint: put the code that starts processes" in line]) == 1, lines


CASES = [
    # (case, phase, qualified exception type, message, location)
    ("import", semconv.PHASE_MAIN_IMPORT, "ModuleNotFoundError", "No module named 'prerun_module_the_child_lacks'",
     "prerun_failures.py:24"),
    ("syntax", semconv.PHASE_MAIN_IMPORT, "SyntaxError", "invalid syntax", "prerun_broken_plugin.py:2"),
    ("setstate", semconv.PHASE_UNPICKLING, "ValueError", "Fragile cannot be rebuilt here", "prerun_failures.py:34"),
    ("missing-target", semconv.PHASE_UNPICKLING, "ModuleNotFoundError", "No module named 'prerun_loaded_by_path'",
     None),
]


@pytest.mark.parametrize("case, phase, kind, message, location", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("start_method", FRESH)
def test_a_child_that_dies_before_run_says_how(start_method, case, phase, kind, message, location, tmp_path):
    result, spans = run_traced(tmp_path, program("prerun_failures.py"), start_method, case)
    assert "exit code 1" in result.stdout
    launch, run = the_child(spans)
    for span in (launch, run):
        assert_failed_before_run(span, phase, kind, message, location)
        assert semconv.CHILD_FAILURE_HINT not in span["attributes"]
    lines = _tree.summary_lines([readable(s) for s in spans])
    detail = "failed before run(), in %s%s" % (phase, ", at " if location else "")
    assert any(detail in line and (location is None or location in line) for line in lines), lines
    [process_line] = [line for line in lines if "Process-1" in line]
    assert "%s: %s" % (kind, message) in process_line, lines
    text = ended(spans, start_method)
    assert text.startswith("exit 1: failed in %s: %s: %s" % (phase, kind, message)), text
