"""A program run as a whole: one trace, its own failure shown, install() in its children a no-op."""

import json
import os

import pytest

from mptrace import _jaeger_json, _tree
from tests.conftest import START_METHODS
from tests.subprocesses import ROOT
from tests.test_cli import mptrace

INSTALL_AT_TOP = os.path.join(ROOT, "tests", "programs", "install_at_top.py")
STARTS_AT_TOP = os.path.join(ROOT, "tests", "programs", "starts_at_top.py")


def load_trace(path):
    with open(str(path)) as f:
        return _jaeger_json.parse(json.load(f))


def one_tree(spans):
    """The spans form one trace under one root, mp.program; returns that root."""
    assert len({s.trace_id for s in spans}) == 1, "spans spread over %d traces" % len({s.trace_id for s in spans})
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.name for r in roots] == ["mp.program"], "roots: %s" % [r.name for r in roots]
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s is not roots[0]), "a span lost its parent"
    return roots[0]


# -- install() in a child -----------------------------------------------------------


@pytest.mark.parametrize("start_method", START_METHODS)
def test_install_at_top_level_is_a_no_op_in_every_child(start_method, tmp_path):
    """Under mptrace run, the children see no exporter configured: they must not say so, nor set up anything."""
    code, out, err = mptrace("run", "--trace-file", str(tmp_path / "t.json"), INSTALL_AT_TOP, start_method)
    assert code == 0, err
    assert "exit codes [0, 0, 0]" in out
    assert "no exporter is configured" not in err
    for index in range(3):
        assert "child %d install machinery loaded: False" % index in out or start_method == "fork", out


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_bad_otel_value_is_reported_by_the_root_only(start_method, tmp_path):
    """--exporter overrides the bad value for the root; the children re-run install() with it: nothing may happen."""
    code, out, err = mptrace("run", "--exporter", "tree", "--trace-file", str(tmp_path / "t.json"), INSTALL_AT_TOP,
                             start_method, env={"OTEL_TRACES_EXPORTER": "no-such-exporter"})
    assert code == 0, err
    assert "exit codes [0, 0, 0]" in out
    assert "Traceback" not in err and "ConfigurationError" not in err, err


def test_install_at_top_level_reports_a_bad_value_once(tmp_path):
    """Run directly, the root's install() raises ConfigurationError (once: no child ever starts)."""
    import subprocess
    import sys

    from tests.subprocesses import environment

    done = subprocess.run([sys.executable, INSTALL_AT_TOP, "spawn"], capture_output=True, text=True, timeout=60,
                          env=environment({"OTEL_TRACES_SAMPLER": "no-such-sampler"}), cwd=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.count("mptrace.ConfigurationError:") == 1, done.stderr
    assert "no-such-sampler" in done.stderr


# -- one trace per run ---------------------------------------------------------------


@pytest.mark.parametrize("start_method", START_METHODS)
def test_mptrace_run_makes_one_trace_under_one_program_span(start_method, tmp_path):
    trace_file = tmp_path / "t.json"
    code, out, err = mptrace("run", "--trace-file", str(trace_file), STARTS_AT_TOP, start_method)
    assert code == 0, err
    assert "pool [0, 2, 4, 6]" in out
    spans = load_trace(trace_file)
    program = one_tree(spans)
    assert program.attributes["mp.program.name"] == STARTS_AT_TOP
    assert program.status_code != "ERROR"
    assert len([s for s in spans if s.name == "mp.process"]) == 4  # two processes, two workers
    assert "no errors" in err.splitlines()[0] or any(
        line.startswith("starts_at_top ·") and line.endswith("no errors") for line in err.splitlines())


def test_install_can_open_the_program_span_itself(tmp_path):
    """install(program_span=True): the same single trace for an application that installs mptrace itself."""
    import subprocess
    import sys

    from tests.subprocesses import environment

    program = tmp_path / "app.py"
    program.write_text(
        "import multiprocessing, sys\n"
        "import mptrace\n"
        "mptrace.install(program_span=True)\n"
        "sys.path.insert(0, %r)\n"
        "from tests.programs import starts_at_top\n"
        "if __name__ == '__main__':\n"
        "    for method in ('fork', 'spawn'):\n"
        "        p = multiprocessing.get_context(method).Process(target=starts_at_top.work, args=(1,))\n"
        "        p.start(); p.join()\n"
        "    raise KeyError('late')\n" % ROOT)
    trace_file = tmp_path / "t.json"
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60,
                          cwd=str(tmp_path), env=environment({"OTEL_TRACES_EXPORTER": "mptrace",
                                                              "MPTRACE_TRACE_FILE": str(trace_file)}))
    assert done.returncode == 1 and "KeyError: 'late'" in done.stderr
    spans = load_trace(trace_file)
    root = one_tree(spans)
    assert root.attributes["mp.program.name"] == str(program)
    assert root.status_code == "ERROR" and root.attributes["error.type"] == "KeyError"
    assert root.attributes["code.file.path"] == str(program) and root.attributes["code.line.number"] == 10
    assert len([s for s in spans if s.name == "mp.process.run"]) == 2


def test_without_the_option_each_top_level_start_is_its_own_trace(traced, context):
    """What the README says happens without program_span: documented, so tested."""
    from tests import targets

    for _ in range(2):
        process = context.Process(target=targets.succeed)
        process.start()
        process.join(30)
    launches = [s for s in traced.spans() if s.name == "mp.process"]
    assert len({s.context.trace_id for s in launches}) == 2


# -- a program that fails --------------------------------------------------------------


def test_a_syntax_error_is_shown_on_the_root_line_and_the_trace_kept(tmp_path):
    program = tmp_path / "broken.py"
    program.write_text("import os\nvalue = (1\n")
    trace_file = tmp_path / "t.json"
    code, out, err = mptrace("run", "--trace-file", str(trace_file), str(program), cwd=str(tmp_path))
    assert code == 1
    shown = " ".join(err.split())  # the tree wraps long lines at the terminal's width
    assert "broken · " in shown and "0 child processes · failed: SyntaxError" in shown, err
    assert "(broken.py, line 2)" in shown
    assert "no errors" not in err
    [program_span] = load_trace(trace_file)
    assert program_span.name == "mp.program" and program_span.status_code == "ERROR"
    assert program_span.attributes["error.type"] == "SyntaxError"
    assert program_span.attributes["code.line.number"] == 2


@pytest.mark.parametrize("start_method", START_METHODS)
def test_an_exception_at_top_level_is_shown_with_where_it_was_raised(start_method, tmp_path):
    trace_file = tmp_path / "t.json"
    code, out, err = mptrace("run", "--trace-file", str(trace_file), STARTS_AT_TOP, start_method, "fail")
    assert code == 1
    shown = " ".join(err.split())  # the tree wraps long lines at the terminal's width
    assert "4 child processes · failed: LookupError: the program's own failure at" in shown, err
    assert "starts_at_top.py:25" in shown
    assert "no errors" not in shown
    assert 'raise LookupError("the program\'s own failure")' in shown, err
    spans = load_trace(trace_file)
    assert one_tree(spans).attributes["error.type"] == "LookupError"


def test_a_run_that_records_nothing_keeps_the_previous_trace_file(tmp_path):
    """The tree exporter never replaces a trace file with an empty trace."""
    from mptrace.exporters import ProcessTreeExporter

    trace_file = tmp_path / "t.json"
    trace_file.write_text("the previous run's trace")
    said = tmp_path / "said.txt"
    with open(str(said), "w") as out:
        ProcessTreeExporter(trace_file=str(trace_file), tree=False, file=out).shutdown()
    assert trace_file.read_text() == "the previous run's trace"
    assert "no spans were recorded" in said.read_text()


def test_compare_reports_that_every_run_failed(tmp_path):
    program = tmp_path / "broken.py"
    program.write_text("value = (1\n")
    code, out, err = mptrace("compare", str(program), cwd=str(tmp_path))
    assert code == 1, out + err
    assert "No difference" not in out
    assert "The program failed under every start method" in out
    assert "SyntaxError" in out


def test_the_tree_says_what_it_cannot_know_without_a_program_span(traced, context):
    from tests import targets

    process = context.Process(target=targets.succeed)
    process.start()
    process.join(30)
    root_line = _tree.summary_lines(traced.spans())[0]
    assert root_line.endswith("no errors in child processes")


def test_mptrace_run_sends_one_trace_to_an_otlp_receiver(tmp_path):
    from tests.otlp_receivers import GrpcReceiver

    with GrpcReceiver() as receiver:
        code, out, err = mptrace("run", "--exporter", "otlp", STARTS_AT_TOP, "spawn", env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        spans = receiver.spans()
    assert code == 0, err
    assert len({s.trace_id for s in spans}) == 1, "spans spread over several traces"
    roots = [s for s in spans if s.parent_span_id is None]
    assert [r.name for r in roots] == ["mp.program"]


def test_uninstall_ends_the_program_span_and_makes_it_no_longer_current():
    from opentelemetry import trace

    import mptrace
    from tests.programs import in_memory_pipeline

    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider, program_span=True)
    try:
        current = trace.get_current_span()
        assert current.is_recording() and current.name == "mp.program"
    finally:
        mptrace.uninstall()
    assert not trace.get_current_span().get_span_context().is_valid
    [program] = [s for s in exporter.get_finished_spans() if s.name == "mp.program"]
    assert program.status.status_code.name == "UNSET"


def test_program_span_must_be_a_bool():
    import mptrace

    with pytest.raises(TypeError, match="program_span"):
        mptrace.install(program_span="yes")
