"""``mptrace compare``: the same program once per start method, and what differs.

Each run is ``mptrace run`` in a fresh interpreter with that start method as
the default (a program that picks one itself keeps its pick, and the report
says so), writing its trace to a Jaeger JSON file in a private temporary
directory. The runs' child processes are matched by who started them and by
name (``SpawnPoolWorker-2`` and ``ForkPoolWorker-2`` are the same worker), and
for each the report sets side by side what the start method changes: how it
started, what was pickled to start it and which pickling hooks ran, which
arguments arrived changed, which module state it saw differently, which environment variables and
working directory, how it ended. Then the program's own exit code and output, where they differ.
"""

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mptrace import _jaeger_json, _prerun, _runner, _unreported, semconv
from mptrace._errors import UsageError
from mptrace._tree import format_size, terminal_width, without_baseline  # terminal_width: 120 for files and pipes
from mptrace.testing import start_methods

ABSENT = "-"
# A row whose attributes the child never reported (see _unreported): never "-", which reads as "nothing differs".
NOT_KNOWN = {_unreported.ENDED_EARLY: "not known (ended before reporting)",
             _unreported.NOT_RECORDED: "not known (not recorded: an mptrace error in the child)"}
# In a child's "random state shared" row, of the other children whose states are not known.
_UNREPORTED_OTHERS = "no states reported"
NO_SPAN = "not known (the child sent no span)"  # e.g. a pool worker its pool's terminate() ended first
DEFAULT_TIMEOUT = 300.0
MAX_OUTPUT_LINES = 12
OUTPUT_GRACE = 5.0  # seconds to wait for the output of a run's processes that left its session
_METHOD_PREFIX = re.compile(r"^(?:ForkServer|Forkserver|Fork|Spawn)(?=[A-Z])")
_OWN_LINES = re.compile(r"^mptrace: (trace written to |no spans were recorded)")


def parser():
    parser = argparse.ArgumentParser(
        prog="mptrace compare", usage="%(prog)s [OPTIONS] (script.py | -m module) [ARGS...]",
        description="Run the program once per start method and report what differs between the runs.")
    parser.add_argument("--start-methods", help="comma-separated (default: every method this platform has: %s)"
                        % ", ".join(start_methods()))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds each run may take (default %d)" % DEFAULT_TIMEOUT)
    return parser


def compare(target, is_module, args, settings):
    """Run, report on stdout; 0 once every run ran, whatever they did."""
    _runner.check(target, is_module)
    methods = _methods(settings.start_methods)
    if not (settings.timeout > 0 and math.isfinite(settings.timeout)):
        raise UsageError("--timeout must be a positive number of seconds, got %r" % settings.timeout)
    previous = {number: signal.signal(number, _stop) for number in STOPPING_SIGNALS}
    try:
        with tempfile.TemporaryDirectory(prefix="mptrace-compare-") as directory:
            runs = [run_once(method, target, is_module, args, settings.timeout, directory) for method in methods]
    except _Stopped as stopped:  # each run's processes are killed already (see _run_alone)
        _die_by(stopped.signal_number)
    except KeyboardInterrupt:
        _die_by(signal.SIGINT)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print_report(target if not is_module else "-m " + target, runs)
    return 1 if all(run.failure for run in runs) else 0


def _methods(text):
    methods = start_methods()
    if not text:
        return methods
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in methods]
    if unknown or not chosen:
        raise UsageError("--start-methods must name some of %s, got %r" % (", ".join(methods), text))
    return chosen


# -- stopping: compare is mptrace's own process, so it may handle signals -----------

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT arrives as KeyboardInterrupt


class _Stopped(BaseException):
    """compare got a signal that ends it: unwind, killing the current run on the way."""

    def __init__(self, signal_number):
        super().__init__(signal_number)
        self.signal_number = signal_number


def _stop(signal_number, frame):
    raise _Stopped(signal_number)


def _die_by(signal_number):
    """End as the signal would have ended compare without a handler."""
    sys.stdout.flush()
    signal.signal(signal_number, signal.SIG_DFL)
    os.kill(os.getpid(), signal_number)
    sys.exit(128 + signal_number)  # if the signal somehow did not end us


# -- one run -----------------------------------------------------------------------


class Run:
    """One run of the program: its exit, output and spans."""

    def __init__(self, method, exitcode, stdout, stderr, spans, seconds, problem=None):
        self.method = method
        self.exitcode = exitcode
        self.stdout = stdout
        self.stderr = stderr
        self.spans = spans
        self.seconds = seconds
        self.problem = problem  # why the trace is missing or incomplete, if it is
        self.failure = program_failure(self)  # how the program itself failed, if it did


def run_once(method, target, is_module, args, timeout, directory):
    trace_file = os.path.join(directory, "%s.json" % method)
    command = [sys.executable, "-m", "mptrace", "run", "--exporter", "tree", "--no-tree", "--trace-file",
               trace_file, "--start-method", method] + (["-m", target] if is_module else [target]) + list(args)
    began = time.monotonic()
    returncode, stdout, stderr = _run_alone(command, timeout)
    seconds = time.monotonic() - began
    if returncode is None:
        return Run(method, None, _text(stdout), _text(stderr), [], seconds,
                   "timed out after %g s (killed; its trace is lost)" % timeout)
    spans, problem = _read_trace(trace_file)
    return Run(method, returncode, _text(stdout), _own_lines_removed(_text(stderr)), spans, seconds, problem)


def _run_alone(command, timeout):
    """(exit status, or None after ``timeout`` seconds; stdout; stderr) of ``command``, run in a session
    of its own whose every process is killed once it ends, times out or compare is stopped: nothing the
    program started (a forkserver, a child it did not join, a subprocess) outlives its run."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    output = {process.stdout: [], process.stderr: []}
    readers = [threading.Thread(target=_read_all, args=(stream, chunks), daemon=True)
               for stream, chunks in output.items()]
    _start_deaf_to_stopping_signals(readers)
    try:
        returncode = process.wait(timeout)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        _kill_session(process)
    for reader in readers:  # a process that left the session may still hold the pipes: do not wait for it
        reader.join(OUTPUT_GRACE)
    return returncode, b"".join(list(output[process.stdout])), b"".join(list(output[process.stderr]))


# What stops compare: its handled signals, and Ctrl-C (KeyboardInterrupt).
_READERS_IGNORE = STOPPING_SIGNALS + (signal.SIGINT,)


def _start_deaf_to_stopping_signals(threads):
    """Start ``threads`` with the signals that stop compare blocked in them (a thread begins with its
    creator's mask).

    The kernel gives a signal sent to the process to any thread that does not block it. Given to a reader,
    Python only notes it, and the main thread, waiting for the run in ``waitpid``, is not interrupted: a
    run that hangs then kept compare from stopping at all. With the readers deaf to them, these signals
    reach the main thread, whose wait they interrupt.
    """
    block = getattr(signal, "pthread_sigmask", None)  # not on Windows, where there are no such signals
    previous = block(signal.SIG_BLOCK, _READERS_IGNORE) if block is not None else None
    try:
        for thread in threads:
            thread.start()
    finally:
        if previous is not None:
            block(signal.SIG_SETMASK, previous)


def _read_all(stream, chunks):
    with stream:
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            chunks.append(chunk)


def _kill_session(process):
    """SIGKILL every process of the run's process group (its leader's pid), then reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty already
    process.wait()


def _text(data):
    return (data or b"").decode("utf-8", "replace")


def _own_lines_removed(stderr):
    return "".join(line for line in stderr.splitlines(True) if not _OWN_LINES.match(line))


def _read_trace(path):
    try:
        with open(path, encoding="utf-8") as f:
            return _jaeger_json.parse(json.load(f)), None
    except FileNotFoundError:
        return [], "wrote no trace (killed, or exited through os._exit?)"
    except ValueError as error:
        return [], "trace unreadable: %s" % error


def program_failure(run):
    """How the program failed in this run, in one phrase, or None when it ran to a clean exit.

    From the run's mp.program span (the exception and where), else from its
    exit code; a run that timed out or left no trace failed too.
    """
    program = next((s for s in run.spans if s.name == semconv.SPAN_PROGRAM and not s.parent_span_id), None)
    if program is not None and program.status_code == "ERROR":
        error = _error(program) or "failed"
        path, line = program.attributes.get(semconv.OTEL_CODE_FILE_PATH), program.attributes.get(
            semconv.OTEL_CODE_LINE_NUMBER)
        if path and line and str(path) not in error:
            error += " at %s:%s" % (os.path.basename(str(path)), line)
        return error
    if run.exitcode is None:
        return run.problem or "did not finish"
    if run.exitcode != 0:
        return "exit %s" % run.exitcode
    return None


# -- child processes, matched across runs ----------------------------------------


class Child:
    """One child process of one run, as the facts the report compares."""

    def __init__(self, key, facts, launch_id=None):
        self.key = key  # ("Process-1", "Process-2"): names from the top, start-method prefixes removed
        self.facts = facts  # {row name: text}
        self.launch_id = launch_id  # its mp.process span's id


ROWS = ("started by", "target", "arguments pickled", "pickling hooks", "arguments changed", "state diverged",
        "state not portable", "argument class state", "environment", "random state shared", "threads at fork",
        "inherited fds", "fds shared with siblings", "carried between tasks", "ended")


def children_of(run):
    """{key: Child} for every child process of the run."""
    spans = run.spans
    by_id = {span.span_id: span for span in spans}
    runs_by_parent = {span.parent_span_id: span for span in spans if span.name == semconv.SPAN_PROCESS_RUN}
    carried = _carried_by_pool(spans, runs_by_parent)
    children = {}
    for launch in (s for s in spans if s.name == semconv.SPAN_PROCESS):
        key = _key(launch, by_id)
        facts = _facts(launch, runs_by_parent.get(launch.span_id), spans)
        facts["carried between tasks"] = carried.get(launch.parent_span_id, ABSENT)
        children[key] = Child(key, facts, launch.span_id)
    _add_random_sharing(children, runs_by_parent)
    return children


def _add_random_sharing(children, runs_by_parent):
    """The "random state shared" row: generators a child started with in the same state as other children.

    Only names, never hashes: a hash differs from run to run, the sharing does not.
    """
    from mptrace import _randomstate

    keys = {launch_id: key for key, launch_id in ((c.key, c.launch_id) for c in children.values())}
    states = {keys[launch_id]: run.attributes.get(semconv.RANDOM_STATES) or ()
              for launch_id, run in runs_by_parent.items() if launch_id in keys}
    shared = _randomstate.shared_states(states)
    missing = {keys[launch_id]: _unreported.random_missing(run.attributes)
               for launch_id, run in runs_by_parent.items() if launch_id in keys}
    reported = {keys[launch_id] for launch_id in runs_by_parent if launch_id in keys}
    # A child whose states are missing may have drawn from a generator it shared with any other child: for
    # the others, "-" would claim what is not known. (A child that sent no span drew nothing: it died before
    # mptrace began in it, so before any of the program's code ran there.)
    unreported = sorted(key for key, why in missing.items() if why)
    for key, child in children.items():
        if key not in reported:
            child.facts["random state shared"] = NO_SPAN
            continue
        if missing.get(key):
            child.facts["random state shared"] = NOT_KNOWN[missing[key]]
            continue
        found = ["%s with %s" % (name, ", ".join(" > ".join(other) for other in sorted(others)))
                 for name, others in sorted(shared.get(key, {}).items())]
        unknown = [" > ".join(other) for other in unreported if other != key]
        if unknown:
            found.append("not known with %s (%s)" % (", ".join(unknown), _UNREPORTED_OTHERS))
        child.facts["random state shared"] = "; ".join(found) or ABSENT


def _carried_by_pool(spans, runs_by_parent):
    """{mp.pool span id: the names any of its workers' tasks left changed for the next}.

    A pool's own, not each worker's: which worker ran how many tasks differs
    from run to run, so a worker's own list would differ by chance alone.
    """
    pools = {span.span_id for span in spans if span.name == semconv.SPAN_POOL}
    found = {}
    for launch in (s for s in spans if s.name == semconv.SPAN_PROCESS and s.parent_span_id in pools):
        run_span = runs_by_parent.get(launch.span_id)
        names = run_span.attributes.get(semconv.WORKER_CARRIED) if run_span is not None else None
        found.setdefault(launch.parent_span_id, set()).update(str(n) for n in names or ())
    return {pool: "%s (by the pool's workers)" % ", ".join(sorted(names)) if names else ABSENT
            for pool, names in found.items()}


def _key(launch, by_id):
    names = []
    span = launch
    while span is not None:
        if span.name == semconv.SPAN_PROCESS:
            names.append(_METHOD_PREFIX.sub("", str(span.attributes.get(semconv.PROCESS_NAME, "?"))))
        span = by_id.get(span.parent_span_id)
    return tuple(reversed(names))


def _facts(launch, run_span, spans):
    attributes = launch.attributes
    return {
        "started by": _started_by(attributes),
        "target": str(attributes.get(semconv.OTEL_CODE_FUNCTION_NAME, ABSENT)),
        "arguments pickled": _pickled(launch, spans),
        "pickling hooks": _listed(attributes.get(semconv.PICKLE_HOOKS)),
        "arguments changed": _changed(run_span),
        "state diverged": _diverged(run_span, attributes),
        "state not portable": _not_portable(attributes),
        "argument class state": _argument_class_state(attributes),
        "threads at fork": _threads_at_fork(attributes),
        "environment": _environment(run_span),
        "inherited fds": _inherited_fds(attributes),
        "fds shared with siblings": _shared_fds(attributes),
        "ended": _ended(launch, run_span),
    }


def _threads_at_fork(attributes):
    """``1 threading, 1 native``: other threads alive when the parent forked this child (counts, not tids)."""
    known = attributes.get(semconv.FORK_THREADS) or 0
    native = attributes.get(semconv.FORK_THREADS_NATIVE) or 0
    parts = ["%d threading" % known] if known else []
    if native:
        parts.append("%d native" % native)
    elif semconv.FORK_THREADS_NATIVE_UNKNOWN in attributes and known:
        parts.append("native unknown")
    return ", ".join(parts) or ABSENT


def _started_by(attributes):
    method = attributes.get(semconv.START_METHOD, ABSENT)
    source = attributes.get(semconv.START_METHOD_SOURCE)
    return "%s (%s)" % (method, source) if source and source != "default" else str(method)


def _pickled(launch, spans):
    if not launch.attributes.get(semconv.ARGS_PICKLED):
        return "no"
    sizes = [s.attributes.get(semconv.PICKLE_BYTES, 0) for s in spans if s.parent_span_id == launch.span_id
             and s.name == semconv.SPAN_PICKLE and s.attributes.get(semconv.PICKLE_CHANNEL) == "process"]
    return "yes, %s" % format_size(sum(sizes)) if sizes else "yes"  # the number the tree shows


def _listed(values):
    return ", ".join(str(v) for v in values) if values else ABSENT


def _argument_class_state(attributes):
    """Arguments whose class's class-level state changed after import: what the child got of it."""
    carried = attributes.get(semconv.ARGS_CLASS_STATE_NOT_PORTABLE)
    if not carried:
        return ABSENT
    got = "re-imported without it" if attributes.get(semconv.ARGS_PICKLED) else "inherited with the memory"
    return "%s (%s)" % (_listed(carried), got)


def _inherited_fds(attributes):
    """The open descriptors a fork child inherited (none under spawn and forkserver)."""
    listed = "; ".join(str(v) for v in attributes.get(semconv.FORK_FDS) or ())
    unlisted = attributes.get(semconv.FORK_FDS_UNLISTED)
    return (listed + ("; +%s more" % unlisted if unlisted else "")).lstrip("; ") or ABSENT


def _shared_fds(attributes):
    shared = attributes.get(semconv.FORK_FDS_SHARED)
    if not shared:
        return ABSENT
    return "with %s: %s" % (_listed(attributes.get(semconv.FORK_FDS_SHARED_WITH)), "; ".join(str(v) for v in shared))


def _not_compared(run_span):
    """The text of a comparison row when the child reported no comparison: "not known (...)" without a run
    span or when it ended before reporting ("-" would read as "nothing differs"); None when it reported."""
    if run_span is None:
        return NO_SPAN
    missing = _unreported.comparisons_missing(run_span.attributes)
    return NOT_KNOWN[missing] if missing else None


def _changed(run_span):
    not_compared = _not_compared(run_span)
    if not_compared:
        return not_compared
    differences = [str(attributes.get("mp.arg.differences") or attributes.get("mp.arg"))
                   for name, _, attributes in run_span.events if name == "mp.arg.changed"]
    if differences:
        return "; ".join(differences)
    return _listed(run_span.attributes.get(semconv.ARGS_CHANGED))


def _diverged(run_span, launch_attributes):
    """Each differing path of the state the child saw differently, with both sides (or only the names); and
    the main module, when the parent had no state of it to send (its source could not be read)."""
    not_compared = _not_compared(run_span)
    if not_compared:
        return not_compared
    differences = []
    for name, _, attributes in run_span.events:
        if name == semconv.EVENT_STATE_DIVERGED:
            differences.extend(str(d) for d in attributes.get(semconv.STATE_DIFFERENCES) or
                               [attributes.get(semconv.STATE_NAME)])
    shown = "; ".join(differences) if differences else _listed(run_span.attributes.get(semconv.STATE_DIVERGED))
    if launch_attributes.get(semconv.ARGS_PICKLED) and "__main__" in (
            launch_attributes.get(semconv.STATE_NO_BASELINE) or ()):
        return _and(shown, "not compared: " + without_baseline(["__main__"]))
    return shown


def _not_portable(attributes):
    """Module state changed since import, and the modules it cannot be told for (no baseline)."""
    shown = _listed(attributes.get(semconv.STATE_NOT_PORTABLE))
    no_baseline = attributes.get(semconv.STATE_NO_BASELINE)
    if not no_baseline:
        return shown
    return _and(shown, "not known: " + without_baseline([str(name) for name in no_baseline]))


def _and(shown, unknown):
    """A row's known values, then what it cannot tell."""
    return unknown if shown == ABSENT else shown + "; " + unknown


def _environment(run_span):
    """Environment variables and working directories the child saw differently from the parent at start().

    Nothing under fork (a copy); a forkserver child's come from the server's snapshot.
    """
    not_compared = _not_compared(run_span)
    if not_compared:
        return not_compared
    attributes = run_span.attributes
    found = [str(v) for v in attributes.get(semconv.ENV_VALUES) or ()]
    if not found:
        found = ["%s %s" % (label, ", ".join(str(n) for n in attributes.get(key)))
                 for key, label in ((semconv.ENV_CHANGED, "changed"), (semconv.ENV_ADDED, "added"),
                                    (semconv.ENV_REMOVED, "missing")) if attributes.get(key)]
    if attributes.get(semconv.CWD_DIFFERS) is True:
        found.append("working directory")
    if attributes.get(semconv.FORKSERVER_CWD_DIFFERS) is True:
        found.append("the fork server's working directory")
    return "; ".join(found) if found else ABSENT


def _ended(launch, run_span):
    code = launch.attributes.get(semconv.EXITCODE)
    signal_name = launch.attributes.get(semconv.EXIT_SIGNAL)
    stopped_by = launch.attributes.get(semconv.END_REASON)  # who sent the signal on purpose, if anyone
    text = "exit %s" % code if code is not None else "not observed"
    if signal_name:
        text = "%s (%s)" % (signal_name, stopped_by) if stopped_by else "killed by %s" % signal_name
    error = _failure_before_run(launch, run_span) or _error(run_span) or (
        _error(launch) if code not in (None, 0) else None)
    return "%s: %s" % (text, error) if error else text


def _failure_before_run(launch, run_span):
    """``failed in main-module import: RuntimeError: ... at x.py:6 (hint: ...)``, for a child that died
    before run(); None otherwise."""
    attributes = launch.attributes if semconv.CHILD_FAILURE_PHASE in launch.attributes else (
        run_span.attributes if run_span is not None else {})
    phase = attributes.get(semconv.CHILD_FAILURE_PHASE)
    if not phase:
        return None
    message = _prerun.first_paragraph(str(attributes.get(semconv.CHILD_FAILURE_MESSAGE) or ""))
    text = "failed in %s: %s%s" % (phase, attributes.get(semconv.CHILD_FAILURE_TYPE), ": " + message if message else "")
    location, hint = attributes.get(semconv.CHILD_FAILURE_LOCATION), attributes.get(semconv.CHILD_FAILURE_HINT)
    return text + (" at %s" % location if location else "") + (" (hint: %s)" % hint if hint else "")


def _error(span):
    if span is None:
        return None
    for name, _, attributes in span.events:
        if name == "exception":
            return "%s: %s" % (attributes.get("exception.type"), attributes.get("exception.message"))
    return span.status_description if span.status_code == "ERROR" else None


# -- the report ----------------------------------------------------------------------


def differences(runs, per_run):
    """The report's findings as plain sentences: what differs between the runs.

    ``per_run``: ``children_of`` of each run.
    """
    found = []
    for key in _all_keys(per_run):
        for row in ROWS[1:]:  # "started by" differs by design
            values = _row(per_run, key, row)
            if len(set(values)) > 1:
                found.append("%s: %s differs: %s" % (_label(key, per_run), row, _by_method(runs, values)))
    found.extend(_program_differences(runs))
    return found


def _row(per_run, key, row):
    """One fact of one child, as each run saw it."""
    return [children[key].facts[row] if key in children else "(not started)" for children in per_run]


def _all_keys(per_run):
    keys = []
    for children in per_run:
        keys.extend(key for key in children if key not in keys)
    return keys


def _label(key, per_run):
    target = next((c[key].facts["target"] for c in per_run if key in c), ABSENT)
    return "%s (%s)" % (" > ".join(key), target)


def _by_method(runs, values):
    return "; ".join("%s: %s" % (run.method, value) for run, value in zip(runs, values))


def _program_differences(runs):
    found = []
    failures = [run.failure or ABSENT for run in runs]
    if len(set(failures)) > 1:
        found.append("program failure differs: %s" % _by_method(runs, failures))
    for what, read in (("exit code", lambda r: str(r.exitcode)), ("standard output", lambda r: r.stdout),
                       ("standard error", lambda r: r.stderr)):
        values = [read(run) for run in runs]
        if len(set(values)) > 1:
            found.append("program %s differs: %s" % (what, _by_method(runs, [_quoted(v) for v in values])))
    return found


def _quoted(text):
    lines = text.splitlines()
    shown = " / ".join(lines[:MAX_OUTPUT_LINES])
    return repr(shown + (" / ..." if len(lines) > MAX_OUTPUT_LINES else ""))


def print_report(program, runs, file=None):
    console = Console(file=file or sys.stdout, highlight=False, width=terminal_width(file or sys.stdout, 120))
    console.print(Text("mptrace compare: %s" % program, style="bold"))
    for run in runs:
        line = "  %s: exit %s in %.1f s" % (run.method, run.exitcode, run.seconds)
        if run.problem:
            line += " (%s)" % run.problem
        if run.failure and run.failure != run.problem:
            line += ": program " + (run.failure if run.failure.startswith(("failed", "exit")) else "failed: "
                                    + run.failure)
        console.print(Text(line, style="bold red" if run.problem or run.failure else ""))
    per_run = [children_of(run) for run in runs]
    for key in _all_keys(per_run):
        console.print(_child_table(key, runs, per_run))
    if _program_differences(runs):
        console.print(_output_table(runs))
    if all(run.failure for run in runs):
        _print_every_run_failed(console, runs)
        return
    _print_findings(console, differences(runs, per_run))
    failed = [run.method for run in runs if run.failure]
    if failed:
        console.print(Text("The program failed under %s." % ", ".join(failed), style="bold red"))


def _print_every_run_failed(console, runs):
    """Nothing to compare: say so, and how each run failed (once, when they all failed alike)."""
    console.print(Text("The program failed under every start method, so there is nothing to compare:",
                       style="bold red"))
    if len({run.failure for run in runs}) == 1:
        console.print(Text("  %s: %s" % (", ".join(run.method for run in runs), runs[0].failure), style="red"))
        return
    for run in runs:
        console.print(Text("  %s: %s" % (run.method, run.failure), style="red"))


def _child_table(key, runs, per_run):
    table = Table(title=_label(key, per_run), title_justify="left", show_lines=False)
    table.add_column("", no_wrap=True)
    for run in runs:
        table.add_column(run.method, overflow="fold")
    for row in ROWS:
        values = _row(per_run, key, row)
        style = "yellow" if len(set(values)) > 1 else "dim"
        table.add_row(row, *values, style=style)
    return table


def _output_table(runs):
    table = Table(title="program", title_justify="left")
    table.add_column("")
    for run in runs:
        table.add_column(run.method)
    table.add_row("exit code", *[str(run.exitcode) for run in runs])
    table.add_row("standard output", *[_clipped(run.stdout) for run in runs])
    table.add_row("standard error", *[_clipped(run.stderr) for run in runs])
    return table


def _clipped(text):
    lines = text.splitlines()
    return "\n".join(lines[:MAX_OUTPUT_LINES] + (["..."] if len(lines) > MAX_OUTPUT_LINES else []))


def _print_findings(console, findings):
    if not findings:
        console.print(Text("No difference between the start methods.", style="green"))
        return
    console.print(Text("What differs:", style="bold"))
    for finding in findings:
        console.print(Text("  * " + finding, style="yellow"))
