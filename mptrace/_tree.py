"""A readable terminal view of one traced run: which process started which, how.

``mptrace run`` prints it to stderr when the program exits, so it reads the
finished spans of every process (the root's own and the children's) and draws
one line per process, nested by who started it, with a line under it only for
what deserves attention: state or arguments that arrived different, pickling
hooks, failed pickles, errors, processes killed before they could report.

It must never break the traced program's exit: every reader tolerates missing
or odd attributes, spans of unknown names and spans whose parent never
arrived, and ``render`` swallows (and logs) whatever goes wrong.
"""

import functools
import io
import os
import re
import sys
from collections import Counter, defaultdict

from opentelemetry.trace import StatusCode
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from mptrace import _unreported
from mptrace import semconv as sc

__all__ = ["build", "render", "summary_lines"]

ERROR = "bold red"
WARNING = "yellow"
OK = "green"
QUIET = "dim"
NAME = "bold"

SEPARATOR = " · "
MAX_LISTED = 8  # siblings shown one by one; beyond that, identical ones collapse into one line
MAX_NAMES = 6  # names listed on one detail line before "+N more"
MAX_VALUE = 40  # characters of a described value (state, differences) shown
FAILURE_SHOWN = 160  # characters of a child's failure on its process line
DEFAULT_WIDTH = 100
PLAIN_WIDTH = 10000  # summary_lines never wraps
POOL_ENDINGS = {"exit": "ended at exit", "broken": "broken", "failed": "failed to start"}  # else "ended by join", "ended by terminate", ...
EXCEPTION_EVENT = "exception"  # OpenTelemetry's exception event and its attributes
EXCEPTION_TYPE, EXCEPTION_MESSAGE = "exception.type", "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
SERVICE_NAME = "service.name"
_INTERNAL_FRAMES = (os.sep + "multiprocessing" + os.sep, os.sep + "concurrent" + os.sep + "futures" + os.sep)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+), in (?P<function>.*)$')
_ASCII = {"·": "-", "×": "x", "–": "-", "…": "."}


# -- reading spans: every reader returns a default rather than raise -----------


def _tolerant(default):
    """Odd spans must not break the view: a reader that fails returns ``default``."""

    def wrap(read):
        @functools.wraps(read)
        def safe(*args):
            try:
                return read(*args)
            except Exception:
                return default

        return safe

    return wrap


@_tolerant({})
def _attributes(span):
    attributes = span.attributes
    return attributes if hasattr(attributes, "get") else {}


@_tolerant(None)
def _attr(span, key):
    return _attributes(span).get(key)


def _int(value):
    """An integer attribute, or None for anything else (bools are not counts)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value):
    return value if isinstance(value, str) and value else None


def _names(value):
    """A list-of-strings attribute as a list, whatever shape it arrived in."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


@_tolerant(None)
def _span_id(span):
    return _int(span.context.span_id)


def _hex(value):
    """A span id written as hex digits, as an int (None if it is not one)."""
    try:
        return int(value, 16) if isinstance(value, str) else None
    except ValueError:
        return None


@_tolerant(None)
def _parent_id(span):
    return _int(span.parent.span_id) if span.parent is not None else None


@_tolerant(None)
def _pid(span):
    """The pid of the process that recorded ``span``; None for the root's own resource."""
    return _int(span.resource.attributes.get(sc.OTEL_PROCESS_PID))


@_tolerant(None)
def _resource_attr(span, key):
    return span.resource.attributes.get(key)


@_tolerant(None)
def _name(span):
    return span.name if isinstance(span.name, str) else None


@_tolerant(None)
def _start(span):
    return _int(span.start_time)


@_tolerant(None)
def _end(span):
    return _int(span.end_time)


def _duration(span):
    start, end = _start(span), _end(span)
    return end - start if start is not None and end is not None and end >= start else None


@_tolerant(False)
def _failed(span):
    return span is not None and span.status.status_code == StatusCode.ERROR


@_tolerant(None)
def _description(span):
    return _str(span.status.description)


@_tolerant([])
def _events(span, name):
    return [e for e in span.events if e.name == name]


@_tolerant({})
def _event_attributes(event):
    attributes = event.attributes
    return attributes if hasattr(attributes, "get") else {}


# -- formatting ----------------------------------------------------------------


def format_duration(nanoseconds):
    """Milliseconds below a second, seconds above: what a person compares at a glance."""
    if nanoseconds is None:
        return "?"
    ms = nanoseconds / 1e6
    if ms < 10:
        return "%.1f ms" % ms
    if ms < 1000:
        return "%.0f ms" % ms
    seconds = ms / 1000
    if seconds < 120:
        return "%.1f s" % seconds
    return "%d min %d s" % (seconds // 60, seconds % 60)


def format_size(size):
    """B, KB, MB in powers of 1024, one decimal: sizes that line up when compared."""
    if size is None:
        return "?"
    if size < 1024:
        return "%d B" % size
    if size < 1024 * 1024:
        return "%.1f KB" % (size / 1024)
    return "%.1f MB" % (size / (1024 * 1024))


def _plural(count, noun, plural=None):
    """``1 task``, ``2 tasks``."""
    return "%d %s" % (count, noun if count == 1 else (plural or noun + "s"))


def _clip(text, limit=MAX_VALUE):
    """One line of at most ``limit`` characters: values and messages can be anything."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _listing(names, limit=MAX_NAMES):
    """``a, b, c +2 more``: a line stays one line however many names there are."""
    shown = ", ".join(names[:limit])
    return shown + (" +%d more" % (len(names) - limit) if len(names) > limit else "")


def _line(*parts):
    """A Text from (text, style) parts joined by the separator; empty parts dropped."""
    line = Text()
    for text, style in (p for p in parts if p and p[0]):
        if line:
            line.append(SEPARATOR, QUIET)
        line.append(text, style)
    return line


# -- the model: processes, pools, who started whom -----------------------------


class _Index:
    """The spans of a run, looked up by id, by parent and by name."""

    def __init__(self, spans):
        self.spans = sorted((s for s in spans if _span_id(s) is not None), key=lambda s: _start(s) or 0)
        self.by_id = {_span_id(s): s for s in self.spans}
        self.children = defaultdict(list)
        for span in self.spans:
            self.children[_parent_id(span)].append(span)
        self.pool_tasks = set()  # span ids of the mp.task spans drawn under their pool
        self.random_shared = None  # see _random_sharing

    def named(self, name):
        return [s for s in self.spans if _name(s) == name]

    def parent(self, span):
        return self.by_id.get(_parent_id(span))

    def children_named(self, span, name):
        return [s for s in self.children.get(_span_id(span), ()) if _name(s) == name] if span is not None else []

    def is_orphan(self, span):
        parent = _parent_id(span)
        return parent is not None and parent not in self.by_id


class _Process:
    """One OS process: how its parent started it (``launch``), how it ran (``run``), what it recorded."""

    def __init__(self, launch=None, run=None, pid=None):
        self.launch, self.run = launch, run
        self._pid = pid
        self.items = []  # the _Process and _Pool objects it started
        self.recorded = []  # every span this process recorded

    @property
    def pid(self):
        return self._pid or _int(_attr(self.launch, sc.CHILD_PID)) or _pid(self.run)

    @property
    def main_span(self):
        return self.launch if self.launch is not None else self.run

    def attr(self, key):
        """The attribute as the parent saw it, else as the child did."""
        value = _attr(self.launch, key)
        return value if value is not None else _attr(self.run, key)

    @property
    def failed(self):
        """The child failed, as the parent or the child itself saw it (status ERROR)."""
        return _failed(self.launch) or _failed(self.run)

    def lived_at(self, moment):
        """Whether ``moment`` falls in this process's life: tells apart processes that reused a pid."""
        span = self.main_span
        start, end = _start(span), _end(span)
        return start is not None and moment is not None and start <= moment and (end is None or moment <= end)


class _Pool:
    """One Pool or ProcessPoolExecutor: its workers and the tasks they ran."""

    def __init__(self, span):
        self.span = span
        self.workers = []
        self.submitted = []  # the mp.task spans that name this pool, run or not

    def task_runs(self):
        """The mp.task.run spans the pool's workers recorded."""
        return [s for w in self.workers for s in w.recorded if _name(s) == sc.SPAN_TASK_RUN]


class _Run:
    """The whole run as a tree of processes, plus what could not be placed in it."""

    def __init__(self, spans):
        self.index = _Index(spans)
        self.processes = _pair_launches_and_runs(self.index)
        child_pids = {p.pid for p in self.processes if p.pid is not None}
        self.root = _Process(pid=_root_pid(self.index, self.processes, child_pids))
        self.by_pid = defaultdict(list)
        for process in self.processes:
            if process.pid is not None:
                self.by_pid[process.pid].append(process)
        self.unknown = {}  # pid -> placeholder for a process whose start was not recorded
        self.unattached = []  # processes whose parent is unknown
        self.pools = [_Pool(s) for s in self.index.named(sc.SPAN_POOL)]
        self._place_spans()
        self._place_pools()
        self._place_tasks()
        self._place_processes()

    def recorder_of(self, span):
        """The process in which ``span`` was recorded: by the resource's pid, at the span's time."""
        pid = _pid(span)
        if pid is None or pid == self.root.pid:
            return self.root
        candidates = self.by_pid.get(pid)
        if candidates:
            alive = [p for p in candidates if p.lived_at(_start(span))]
            return (alive or candidates)[-1]
        if pid not in self.unknown:
            self.unknown[pid] = _Process(pid=pid)
        return self.unknown[pid]

    def _place_spans(self):
        for span in self.index.spans:
            self.recorder_of(span).recorded.append(span)

    def _place_pools(self):
        for pool in self.pools:
            self.recorder_of(pool.span).items.append(pool)

    def _place_tasks(self):
        """Each mp.task under the pool it names; their failed sends are then that pool's, not the caller's."""
        pools_by_id = {_span_id(p.span): p for p in self.pools}
        for task in self.index.named(sc.SPAN_TASK):
            pool = pools_by_id.get(_hex(_attr(task, sc.TASK_POOL)))
            if pool is not None:
                pool.submitted.append(task)
                self.index.pool_tasks.add(_span_id(task))

    def _place_processes(self):
        pools_by_id = {_span_id(p.span): p for p in self.pools}
        for process in self.processes:
            if process.launch is None:
                self.unattached.append(process)
                continue
            starter = self.recorder_of(process.launch)
            pool = pools_by_id.get(_parent_id(process.launch))
            if starter is process:  # a process cannot start itself: the pids are garbage
                self.unattached.append(process)
            elif pool is not None and self.recorder_of(pool.span) is starter:
                pool.workers.append(process)
            else:
                starter.items.append(process)

    def failed_tasks(self):
        """How many tasks failed or could not be sent, over every pool."""
        return sum(len(_failed_tasks(self.index, pool)) + len(_unsent_tasks(self.index, pool)) for pool in self.pools)

    def channel_failures(self):
        """How many messages could not be pickled or unpickled, over every process."""
        return sum(len(_channel_failures(self.index, p)) for p in [self.root] + self.processes)


def _pair_launches_and_runs(index):
    """One _Process per mp.process span, each with the mp.process.run its child recorded."""
    processes = [_Process(launch=launch) for launch in index.named(sc.SPAN_PROCESS)]
    by_launch_id = {_span_id(p.launch): p for p in processes}
    for run in index.named(sc.SPAN_PROCESS_RUN):
        process = by_launch_id.get(_parent_id(run)) or _waiting_for(processes, _pid(run))
        if process is None or process.run is not None:
            processes.append(_Process(run=run))
        else:
            process.run = run
    return processes


def _waiting_for(processes, pid):
    """The launched process with ``pid`` whose run has not arrived: a run whose parent id was lost."""
    matches = [p for p in processes if p.run is None and pid is not None and p.pid == pid]
    return matches[0] if matches else None


def _starter_pid(process):
    """The pid that called start(): as the child recorded it, else its resource's parent pid."""
    return _int(_attr(process.run, sc.PARENT_PID)) or _int(_resource_attr(process.run, sc.OTEL_PROCESS_PARENT_PID))


def _root_pid(index, processes, child_pids):
    """The root's pid, which its own resource may not carry.

    Best: who started the children whose mp.process span has no pid (the root's
    own resource). Else a pid that recorded spans but that nobody started.
    """
    votes = Counter(_starter_pid(p) for p in processes if p.launch is not None and _pid(p.launch) is None)
    votes.pop(None, None)
    if not votes:  # the program's own span says which process it ran in
        votes = Counter(_int(_attr(s, sc.OTEL_PROCESS_PID)) for s in index.named(sc.SPAN_PROGRAM) if _pid(s) is None)
        votes.pop(None, None)
    if not votes:
        votes = Counter(p for p in map(_pid, index.spans) if p is not None and p not in child_pids)
    return votes.most_common(1)[0][0] if votes else None


# -- what is notable about a process -------------------------------------------


def _exception_text(span):
    """``Type: message`` of the span's first exception event, or None."""
    for event in _events(span, EXCEPTION_EVENT):
        attributes = _event_attributes(event)
        kind, message = _str(attributes.get(EXCEPTION_TYPE)), _str(attributes.get(EXCEPTION_MESSAGE))
        if kind or message:
            return "%s: %s" % (kind, message) if kind and message else (kind or message)
    return None


def _stacktrace(span):
    """The formatted traceback the span's exception event carries, or None."""
    for event in _events(span, EXCEPTION_EVENT):
        trace = _str(_event_attributes(event).get(EXCEPTION_STACKTRACE))
        if trace:
            return trace
    return None


def _frames(stacktrace):
    """(file, line, function, source line) of each frame of a formatted traceback."""
    lines = stacktrace.splitlines()
    frames = []
    for number, text in enumerate(lines):
        match = _FRAME.match(text)
        if match:
            following = lines[number + 1].strip() if number + 1 < len(lines) else ""
            source = "" if _FRAME.match(following) or set(following) <= set("^~ ") else following
            frames.append((match.group("file"), match.group("line"), match.group("function"), source))
    return frames


def _short_path(path):
    """Paths under the working directory, relative: the part a reader recognises."""
    try:
        here = os.getcwd() + os.sep
    except OSError:
        return path
    return path[len(here):] if path.startswith(here) else path


def _frame_text(frame):
    """``path:line in function: source``, the way an editor's "go to" reads it."""
    path, line, function, source = frame
    where = "%s:%s in %s" % (_short_path(path), line, function)
    return where + (": " + _clip(source, 60) if source else "")


def _traceback_lines(span):
    """Where the error came from: the first frame of the program's own code, and the last frame."""
    frames = _frames(_stacktrace(span) or "")
    if not frames:
        return []
    own = [f for f in frames if not any(marker in f[0] for marker in _INTERNAL_FRAMES)] or frames
    first, last = own[0], frames[-1]
    lines = [Text("from " + _frame_text(first), "red")] if first != last else []
    return lines + [Text("at " + _frame_text(last), "red")]


def _launch_pickle_failure(index, process):
    """The failed mp.pickle of the start itself (target or arguments), or None."""
    failures = [s for s in index.children_named(process.launch, sc.SPAN_PICKLE) if _failed(s)]
    return failures[0] if failures else None


def _failure_before_run(process):
    """(phase, "Type: message", location, hint) of a child that died before run(), or None."""
    phase = _str(process.attr(sc.CHILD_FAILURE_PHASE))
    if phase is None:
        return None
    kind = _str(process.attr(sc.CHILD_FAILURE_TYPE)) or "error"
    message = _first_paragraph(_str(process.attr(sc.CHILD_FAILURE_MESSAGE)) or "")
    location = _str(process.attr(sc.CHILD_FAILURE_LOCATION))
    return (phase, kind + (": " + message if message else ""), _short_path(location) if location else None,
            _str(process.attr(sc.CHILD_FAILURE_HINT)))


def _first_paragraph(message):
    """A message's first paragraph on one line: CPython's main-guard message runs to 15 indented lines."""
    paragraphs = [" ".join(p.split()) for p in message.strip().split("\n\n")]
    return next((p for p in paragraphs if p), "")


def _failure_before_run_lines(failure):
    """Under the process: what, in which phase, where, and what to do."""
    phase, exception, location, hint = failure
    lines = [Text("failed before run(), in %s%s" % (phase, ", at " + location if location else ""), ERROR)]
    if len("%s in %s" % (exception, phase)) > FAILURE_SHOWN:  # the process line cut it short
        lines.append(Text(_clip(exception, 240), ERROR))
    return lines + ([Text("hint: " + hint, WARNING)] if hint else [])


def _failure_text(index, process):
    """The error in one phrase: the exception that ended the child, or that stopped its start."""
    if not process.failed:
        return None
    before_run = _failure_before_run(process)
    if before_run is not None:
        return "%s in %s" % (before_run[1], before_run[0])
    pickle = _launch_pickle_failure(index, process)
    for span in (process.run, process.launch, pickle):
        text = _exception_text(span)
        if text:
            return text
    exit_code, signal = _int(process.attr(sc.EXITCODE)), _str(process.attr(sc.EXIT_SIGNAL))
    if exit_code is None and signal is None and pickle is None:
        return _description(process.run) or _description(process.launch) or _str(process.attr(sc.OTEL_ERROR_TYPE))
    return None


def _exit_part(index, process):
    """How the process ended, as (text, style): an exit code, a signal, or why nobody saw it end."""
    code, signal = _int(process.attr(sc.EXITCODE)), _str(process.attr(sc.EXIT_SIGNAL))
    reason = _str(process.attr(sc.END_REASON))
    style = ERROR if process.failed else QUIET
    if signal:
        return ("%s (%s)" % (signal, reason) if reason else "killed by " + signal), style
    if code == 0:
        return "exit 0", OK
    if code is not None:
        return "exit %d" % code, ERROR
    if _launch_pickle_failure(index, process) is not None or (process.failed and process.pid is None):
        return "not started", ERROR
    if reason:
        return reason, WARNING
    return "exit ?", style


def _start_method_part(process):
    """``spawn``, with where the choice came from unless it is the platform's default."""
    method = _str(process.attr(sc.START_METHOD))
    if not method:
        return None
    source = _str(_attr(process.launch, sc.START_METHOD_SOURCE))
    return (method + (" (%s)" % source if source and source != sc.SOURCE_DEFAULT else "")), None


def _hooks(index, process):
    """The custom pickling hooks that ran to start the child: on mp.process, and on its mp.pickle spans."""
    hooks = _names(_attr(process.launch, sc.PICKLE_HOOKS))
    for pickle in index.children_named(process.launch, sc.SPAN_PICKLE):
        hooks += [h for h in _names(_attr(pickle, sc.PICKLE_HOOKS)) if h not in hooks]
    return hooks


def _pickled_part(index, process):
    """What pickling started the child cost: the process object's bytes (target, arguments, the
    Process itself; not the start-up data, which is the same for every child) and hooks; nothing under fork."""
    pickles = index.children_named(process.launch, sc.SPAN_PICKLE)
    if _attr(process.launch, sc.ARGS_PICKLED) is not True and not pickles:
        return None
    sizes = [_int(_attr(p, sc.PICKLE_BYTES)) for p in pickles if _attr(p, sc.PICKLE_CHANNEL) == "process"]
    total = sum(s for s in sizes if s is not None and s > 0)
    text = "pickled " + format_size(total) if total else "pickled"
    hooks = len(_hooks(index, process))
    return (text + (", " + _plural(hooks, "hook") if hooks else "")), None


def _pickle_failure_lines(index, process):
    """Where the object that could not be pickled sits and what to do, which the exception alone hides."""
    pickle = _launch_pickle_failure(index, process)
    if pickle is None:
        return []
    path = _str(_attr(pickle, sc.PICKLE_PATH)) or "?"
    hint = _str(_attr(pickle, sc.PICKLE_HINT))
    return [Text("could not pickle %s%s" % (path, ": " + hint if hint else ""), ERROR)]


def _synthesized_lines(process):
    """Spans the process never ended (os._exit, a signal): its own account of the end is missing."""
    if _str(process.attr(sc.END_REASON)) in sc.ENDED_AS_EXPECTED:  # expected: the pool stopped it mid-wait
        return []
    cut = [s for s in process.recorded if _attr(s, sc.SPAN_SYNTHESIZED) is True]
    if _attr(process.run, sc.SPAN_SYNTHESIZED) is True and process.run not in cut:
        cut.append(process.run)
    if not cut:
        return []
    how = "killed" if _str(process.attr(sc.EXIT_SIGNAL)) else "exited"
    return [Text("%s before it could report: mptrace ended %s for it" % (how, _plural(len(cut), "span")), WARNING)]


MAX_DIFFERENCES = 3  # differing paths shown per line; the rest are counted


def _changed_argument_lines(process):
    """One line per argument that arrived different from what the parent passed: where, and how."""
    lines, described = [], set()
    for event in _events(process.run, sc.EVENT_ARG_CHANGED):
        attributes = _event_attributes(event)
        argument = _str(attributes.get(sc.ARG)) or "an argument"
        differences = _str(attributes.get(sc.ARG_DIFFERENCES))
        described.add(argument)
        shown = _first_differences(differences.split("; ")) if differences else ""
        lines.append(Text("%s arrived changed%s" % (argument, ": " + shown if shown else ""), WARNING))
    rest = [a for a in _names(_attr(process.run, sc.ARGS_CHANGED)) if a not in described]
    if rest:
        lines.append(Text("arrived changed: " + _listing(rest), WARNING))
    unknown = _names(_attr(process.run, sc.ARGS_UNKNOWN))
    if unknown:
        lines.append(Text("cannot tell whether these arrived changed (too large to compare in full): " +
                          _listing(unknown), QUIET))
    return lines


def _first_differences(differences):
    """``a: parent 5, child 1; b: changed; +4 more``: the first few, and how many more."""
    more = 0
    listed = []
    for difference in differences:
        counted = re.match(r"^\+(\d+) more$", difference)
        if counted:
            more += int(counted.group(1))
        else:
            listed.append(_clip(difference, 100))
    more += max(0, len(listed) - MAX_DIFFERENCES)
    return "; ".join(listed[:MAX_DIFFERENCES]) + ("; +%d more" % more if more else "")


def _diverged_differences(process):
    """name -> its differing paths with both sides, from the mp.state.diverged events."""
    values = {}
    for event in _events(process.run, sc.EVENT_STATE_DIVERGED):
        attributes = _event_attributes(event)
        name = _str(attributes.get(sc.STATE_NAME))
        if not name:
            continue
        differences = _names(attributes.get(sc.STATE_DIFFERENCES))
        if not differences:  # a trace from an mptrace without per-path differences
            differences = ["%s: parent %s, child %s" % (name, _clip(attributes.get(sc.STATE_PARENT, "?")),
                                                        _clip(attributes.get(sc.STATE_CHILD, "?")))]
        values[name] = differences
    return values


def _state_lines(process):
    """Module state the child saw differently, and state a spawn child would not see."""
    diverged = _names(_attr(process.run, sc.STATE_DIVERGED))
    values = _diverged_differences(process)
    lines = []
    if diverged:
        shown = [difference for name in diverged for difference in values.get(name, [name])]
        lines.append(Text("state diverged: " + _first_differences(shown), WARNING))
    not_portable = [n for n in _names(_attr(process.launch, sc.STATE_NOT_PORTABLE)) if n not in diverged]
    if not_portable:
        why = "not portable (set after import; a spawn or forkserver child re-imports it): "
        lines.append(Text(why + _listing(not_portable), WARNING))
    carried = _names(_attr(process.launch, sc.ARGS_CLASS_STATE_NOT_PORTABLE))
    if carried:
        why = "class state of arguments changed after import (a spawn or forkserver child re-imports the class): "
        lines.append(Text(why + _listing(carried), WARNING))
    too_large = _names(_attr(process.launch, sc.STATE_UNKNOWN)) + _child_state_unknown(process, "too large")
    if too_large:
        lines.append(Text("state not compared (too large to compare in full): " + _listing(sorted(set(too_large))),
                          QUIET))
    sent_by_size = _child_state_unknown(process, "sent without its content")
    if sent_by_size:
        why = "state not compared (sent by its size, which the child's matches, not its content): "
        lines.append(Text(why + _listing(sorted(set(sent_by_size))), QUIET))
    no_baseline = _names(_attr(process.launch, sc.STATE_NO_BASELINE))
    if no_baseline:
        lines.append(Text("state not known (nothing to compare it with): " + without_baseline(no_baseline), QUIET))
    return lines


def without_baseline(names):
    """Modules whose state has no baseline, and why: the main module's comes from its source, any other's
    from when it was imported, if mptrace was installed by then."""
    parts = ["__main__ (its source could not be read)"] if "__main__" in names else []
    others = [name for name in names if name != "__main__"]
    if others:
        parts.append("imported before install(): " + _listing(others))
    return "; ".join(parts)


def _child_state_unknown(process, reason):
    """The names of the child's mp.state.unknown entries whose reason says ``reason``: too large, or sent without
    its content (see _modstate.NOT_SENT); not those of modules it had not imported, which the lines say apart."""
    found = []
    for event in _events(process.run, sc.EVENT_STATE_UNKNOWN):
        attributes = _event_attributes(event)
        if reason in (_str(attributes.get(sc.STATE_REASON)) or ""):
            found.append(_str(attributes.get(sc.STATE_NAME)))
    return found


def _environment_lines(process):
    """Environment variables and working directories that differ from the parent's at start() (spawn,
    forkserver): under forkserver they come from the server's snapshot, which the lines say."""
    run = process.run
    snapshot = _snapshot_text(run)
    lines = []
    parts = ["%s %s" % (label, _listing(_names(_attr(run, key)))) for key, label in (
        (sc.ENV_CHANGED, "changed"), (sc.ENV_ADDED, "added"), (sc.ENV_REMOVED, "missing"))
        if _names(_attr(run, key))]
    if parts:
        values = _names(_attr(run, sc.ENV_VALUES))
        shown = _first_differences(values) if values else "; ".join(parts)
        lines.append(Text("environment differs from the parent's at start()%s: %s" % (snapshot, shown), WARNING))
    if _attr(run, sc.CWD_DIFFERS) is True:
        lines.append(Text("working directory differs from the parent's at start()" + _both_directories(
            run, sc.CWD_CHILD, "child"), WARNING))
    if _attr(run, sc.FORKSERVER_CWD_DIFFERS) is True:
        lines.append(Text("the fork server started %s, in another working directory than the parent's at start(): "
                          "its preloaded modules were imported there%s" % (
                              _server_age(run), _both_directories(run, sc.FORKSERVER_CWD, "server")), WARNING))
    return lines


def _snapshot_text(run):
    """`` (the fork server's, from 2.3 s before start())`` for a forkserver child, else ``""``."""
    if _attr(run, sc.FORKSERVER_SNAPSHOT) is not True:
        return ""
    return " (the fork server's, from when it started, %s)" % _server_age(run)


def _server_age(run):
    """``2.3 s before start()``, or ``at a time unknown`` (it started before mptrace saw it)."""
    age = _attr(run, sc.FORKSERVER_SNAPSHOT_AGE)
    if not isinstance(age, (int, float)) or isinstance(age, bool):
        return "at a time unknown"
    return "%s before start()" % format_duration(age * 1e9)


def _both_directories(run, key, side):
    """`` (parent /a, child /b)`` when the values were captured, else nothing."""
    parent, other = _str(_attr(run, sc.CWD_PARENT)), _str(_attr(run, key))
    return " (parent %s, %s %s)" % (parent, side, other) if parent and other else ""


def _carried_lines(process):
    """State a pool worker's tasks changed and left so for its next tasks: results that depend on the worker."""
    names = _names(_attr(process.run, sc.WORKER_CARRIED))
    if not names:
        return []
    counts = _attr(process.run, sc.WORKER_CARRIED_TASKS)
    counts = list(counts) if isinstance(counts, (list, tuple)) and len(counts) == len(names) else [None] * len(names)
    if _attr(process.run, sc.SPAN_SYNTHESIZED) is True:
        # Killed (a pool's terminate()) before its end: the counts are those of its last record, and
        # the tasks it ran after that are not in them.
        shown = ["%s (at least %s)" % (name, _plural(count, "task")) if isinstance(count, int) else name
                 for name, count in zip(names, counts)]
        return [Text("carried between tasks (counted until its last record before it was stopped): "
                     + _listing(shown), WARNING)]
    checked = _int(_attr(process.run, sc.WORKER_TASKS_CHECKED))
    of = " of %d" % checked if checked else ""
    shown = ["%s (%s%s)" % (name, _plural(count, "task"), of) if isinstance(count, int) else name
             for name, count in zip(names, counts)]
    return [Text("carried between tasks: " + _listing(shown), WARNING)]


def _hook_lines(index, process):
    """Custom pickling hooks: code of the program's that ran only because the start pickled."""
    lines = []
    hooks = _hooks(index, process)
    if hooks:
        lines.append(Text("pickling hooks: " + _listing(hooks)))
    unpickle = _names(_attr(process.run, sc.UNPICKLE_HOOKS))
    if unpickle:
        lines.append(Text("unpickling hooks: " + _listing(unpickle)))
    return lines


def _fork_thread_lines(process):
    """Threads alive at fork: their locks were copied into the child, held or not."""
    lines = []
    count = _int(_attr(process.launch, sc.FORK_THREADS))
    if count:
        names = _names(_attr(process.launch, sc.FORK_THREAD_NAMES))
        text = "%s alive at fork" % _plural(count, "other thread")
        lines.append(Text(text + (": " + _listing(names) if names else ""), WARNING))
    native = _int(_attr(process.launch, sc.FORK_THREADS_NATIVE))
    if native:
        names = _names(_attr(process.launch, sc.FORK_NATIVE_THREAD_NAMES))
        text = "%s alive at fork (not started by threading: a C extension's or a driver's)" % _plural(
            native, "native thread")
        lines.append(Text(text + (": " + _listing(names) if names else ""), WARNING))
    unknown = _str(_attr(process.launch, sc.FORK_THREADS_NATIVE_UNKNOWN))
    if unknown:
        lines.append(Text("native threads at fork: cannot tell (%s)" % unknown, QUIET))
    return lines


def _random_lines(index, process):
    """Random generators this process started with in the same state as other processes: the same draws."""
    run_id = _span_id(process.run)
    if run_id is None:
        return []
    shared = _random_sharing(index).get(run_id, {})
    by_group = defaultdict(list)
    for name, others in sorted(shared.items()):
        by_group[tuple(sorted([run_id] + others, key=lambda i: _start(index.by_id.get(i)) or 0))].append(name)
    lines = []
    for group, names in by_group.items():
        # The whole group, this process included: its members' lines read alike, so they still collapse.
        processes = [_run_label(index.by_id.get(i)) for i in group]
        lines.append(Text("same random state in %d processes (%s), so the same draws: %s" % (
            len(group), _listing(processes), _listing(names)), WARNING))
    unknown = _names(_attr(process.run, sc.RANDOM_UNKNOWN))
    if unknown:
        lines.append(Text("random generators not compared: " + _listing(unknown), QUIET))
    return lines


def _random_sharing(index):
    """{run span id: {generator name: [other run span ids with the same state]}}, worked out once per run."""
    if index.random_shared is None:
        from mptrace import _randomstate

        states = {_span_id(run): _names(_attr(run, sc.RANDOM_STATES)) for run in index.named(sc.SPAN_PROCESS_RUN)}
        index.random_shared = _randomstate.shared_states(states)
    return index.random_shared


def _run_label(run):
    """``worker-1 (pid 123)``: a process as its run span names it."""
    name = _str(_attr(run, sc.PROCESS_NAME)) or "process"
    pid = _pid(run)
    return "%s (pid %d)" % (name, pid) if pid else name


MAX_FDS_SHOWN = 4  # inherited descriptors described on the line; the rest are counted
_HELD_BY_GLOBAL = re.compile(r" \([\w.]+\.[\w.]+(, [\w.]+)*\)$")  # "... (db.CONN)": shown first


def _fork_fd_lines(process):
    """Open descriptors the fork child inherited, and those a running sibling holds too."""
    inherited = _names(_attr(process.launch, sc.FORK_FDS))
    unlisted = _int(_attr(process.launch, sc.FORK_FDS_UNLISTED))
    if not inherited and not unlisted:
        return []
    text = "inherited %s" % _plural(len(inherited), "open descriptor")
    if unlisted:
        text += " (%d more not looked at)" % unlisted
    lines = [Text("%s: %s" % (text, _first_descriptors(inherited, len(inherited))), WARNING)]
    shared = _names(_attr(process.launch, sc.FORK_FDS_SHARED))
    if shared:
        siblings = _listing(_names(_attr(process.launch, sc.FORK_FDS_SHARED_WITH))) or "a sibling"
        lines.append(Text("shares with %s (running): %s" % (siblings, _first_descriptors(shared, len(shared))),
                          WARNING))
    return lines


def _first_descriptors(descriptors, count):
    """``a; b; c; d +3 more``, those a global holds first: they are the ones a reader can act on."""
    shown = sorted(descriptors, key=lambda text: not _HELD_BY_GLOBAL.search(text))[:MAX_FDS_SHOWN]
    return "; ".join(shown) + (" +%d more" % (count - len(shown)) if count > len(shown) else "")


def _end_reason_lines(process):
    """Why the parent never saw the exit, when the exit part does not already say it."""
    reason = _str(process.attr(sc.END_REASON))
    shown = _str(process.attr(sc.EXIT_SIGNAL)) or _int(process.attr(sc.EXITCODE)) is None
    return [Text("span ended: " + reason, QUIET)] if reason and not shown else []


def _channel_failures(index, process):
    """Failed pickles and unpickles of messages (queues, connections, tasks) this process recorded."""
    failed = [s for s in process.recorded if _name(s) in (sc.SPAN_PICKLE, sc.SPAN_UNPICKLE) and _failed(s)]
    return [s for s in failed if _name(index.parent(s)) != sc.SPAN_PROCESS and _parent_id(s) not in index.pool_tasks]


def _channel_failure_text(span):
    """One failed message, as a line: the culprit's path and the hint, or the class that would not rebuild."""
    channel = _str(_attr(span, sc.PICKLE_CHANNEL))
    message = "a %s message" % channel if channel else "a message"
    if _name(span) == sc.SPAN_UNPICKLE:
        classes = _names(_attr(span, sc.PICKLE_CLASSES))
        kind = _str(_attr(span, sc.OTEL_ERROR_TYPE)) or _exception_text(span) or "error"
        return "could not unpickle %s: %s%s" % (message, kind, " (%s)" % _listing(classes, 3) if classes else "")
    path = _str(_attr(span, sc.PICKLE_PATH)) or "?"
    hint = _str(_attr(span, sc.PICKLE_HINT))
    return "could not pickle %s: %s%s" % (message, path, ": " + hint if hint else "")


def _channel_failure_lines(index, process):
    """Failed messages, the same failure counted once: a loop that fails fails the same way each time."""
    counts = Counter(_channel_failure_text(s) for s in _channel_failures(index, process))
    return [Text(text + (" (×%d)" % n if n > 1 else ""), ERROR) for text, n in counts.items()]


def _untraced_lines(process):
    """A child that ran without mptrace (it could not load it): nothing it did is in the trace."""
    if _attr(process.launch, sc.CHILD_TRACED) is not False:
        return []
    reason = _str(_attr(process.launch, sc.CHILD_UNTRACED_REASON))
    return [Text("not traced: " + (reason or "the child sent no span"), WARNING)]


_UNREPORTED_WHY = {_unreported.ENDED_EARLY: "the child ended before it reported them",
                   _unreported.NOT_RECORDED: "the child did not record them: an mptrace error, see its log"}


def _unreported_lines(process):
    """What the child never reported (it ended first): not known, which no line at all would hide."""
    attributes = _attributes(process.run) if process.run is not None else None
    if attributes is None:
        return []  # no run span: the "not traced" line says it
    compared, hashed = _unreported.comparisons_missing(attributes), _unreported.random_missing(attributes)
    unknown = (["module state", "arguments", "environment"] if compared else []) + (["random state"] if hashed else [])
    if not unknown:
        return []
    return [Text("%s: not known (%s)" % (", ".join(unknown), _UNREPORTED_WHY[compared or hashed]), WARNING)]


def _detail_lines(index, process):
    """The lines under a process: only what deserves a reader's attention."""
    lines = []
    before_run = _failure_before_run(process)
    if before_run is not None:
        lines += _failure_before_run_lines(before_run)
    elif process.failed:  # the child's traceback; a failed start raised in the caller, who saw it
        lines += _traceback_lines(process.run)
    lines += _pickle_failure_lines(index, process)
    lines += _untraced_lines(process)
    lines += _unreported_lines(process)
    lines += _synthesized_lines(process)
    lines += _changed_argument_lines(process)
    lines += _state_lines(process)
    lines += _environment_lines(process)
    lines += _carried_lines(process)
    lines += _hook_lines(index, process)
    lines += _fork_thread_lines(process)
    lines += _random_lines(index, process)
    lines += _fork_fd_lines(process)
    lines += _end_reason_lines(process)
    lines += _channel_failure_lines(index, process)
    return lines


# -- pools ---------------------------------------------------------------------


def _pool_tasks(index, pool):
    """The mp.task spans submitted to this pool or whose work ran in its workers, in submission order."""
    tasks = {_span_id(task): task for task in pool.submitted}
    for run in pool.task_runs():
        task = index.parent(run)
        if task is not None and _name(task) == sc.SPAN_TASK:
            tasks[_span_id(task)] = task
    return sorted(tasks.values(), key=lambda s: _start(s) or 0)


def _failed_tasks(index, pool):
    """(span, "Type: message") per failed task: the worker's exception when it has one."""
    failed_runs = defaultdict(list)
    for run in pool.task_runs():
        if _failed(run):
            failed_runs[_parent_id(run)].append(run)
    failures = []
    unsent = {_parent_id(s) for s in _unsent_tasks(index, pool)}
    for task in _pool_tasks(index, pool):
        runs = failed_runs.pop(_span_id(task), [])
        if runs or (_failed(task) and _span_id(task) not in unsent):  # else it never ran: see _unsent_lines
            texts = [_exception_text(r) for r in runs] + [_exception_text(task), _description(task)]
            failures.append((task, next((t for t in texts if t), "failed")))
    lost = [r for runs in failed_runs.values() for r in runs]  # their mp.task never arrived
    return failures + [(r, _exception_text(r) or _description(r) or "failed") for r in lost]


def _unsent_tasks(index, pool):
    """The failed mp.pickle spans of task messages the pool's tasks could not send."""
    return [s for task in pool.submitted for s in index.children_named(task, sc.SPAN_PICKLE) if _failed(s)]


def _unsent_lines(index, pool):
    """Task messages that could not be pickled: where the culprit sits and what to do, counted per culprit."""
    counts = Counter(_channel_failure_text(s) for s in _unsent_tasks(index, pool))
    return [Text(text + (" (×%d)" % n if n > 1 else ""), ERROR) for text, n in counts.items()]


def _pool_hook_lines(index, pool):
    """Custom pickling hooks that ran to send the pool's tasks and to return their results."""
    lines = []
    for label, spans, key in (("task pickling hooks", _pool_tasks(index, pool), sc.PICKLE_TASK_HOOKS),
                              ("result pickling hooks", pool.task_runs(), sc.PICKLE_RESULT_HOOKS)):
        hooks = []
        for span in spans:
            hooks += [h for h in _names(_attr(span, key)) if h not in hooks]
        if hooks:
            lines.append(Text("%s: %s" % (label, _listing(hooks))))
    return lines


def _pool_label(pool):
    """The pool in one line: its size, how it started workers, what it ran, how it ended."""
    span = pool.span
    kind = (_str(_attr(span, sc.POOL_TYPE)) or "pool").rsplit(".", 1)[-1]
    processes = _int(_attr(span, sc.POOL_PROCESSES))
    started, replaced = _int(_attr(span, sc.POOL_WORKERS_STARTED)), _int(_attr(span, sc.POOL_WORKERS_REPLACED))
    tasks, traced = _int(_attr(span, sc.POOL_TASKS)), _int(_attr(span, sc.POOL_TASKS_TRACED))
    end = _str(_attr(span, sc.POOL_END))
    return _line(
        ("%s(%d)" % (kind, processes) if processes is not None else kind, NAME),
        (_str(_attr(span, sc.START_METHOD)), None),
        (format_duration(_duration(span)), None),
        ("%s started" % _plural(started, "worker") if started is not None else None, None),
        ("%d replaced" % replaced if replaced else None, WARNING),
        ("%s (%d traced)" % (_plural(tasks, "task"), traced or 0) if tasks is not None else None, None),
        (POOL_ENDINGS.get(end, "ended by %s" % end) if end else None, ERROR if end in ("broken", "failed") else QUIET),
    )


def _task_summary_line(index, pool):
    """What was submitted: API and function, counted, so a reader sees the pool's work in one line."""
    counts = Counter()
    for task in _pool_tasks(index, pool):
        api = _str(_attr(task, sc.TASK_API)) or sc.SPAN_TASK
        function = _str(_attr(task, sc.OTEL_CODE_FUNCTION_NAME))
        counts[api + (" " + function if function else "")] += 1
    if not counts:
        return []
    shown = [text + (" ×%d" % n if n > 1 else "") for text, n in counts.items()]
    return [Text("submitted: " + _listing(shown, 4), QUIET)]


def _task_failure_lines(index, pool):
    """Failed tasks, counted per distinct error: a map over bad input fails the same way many times."""
    failures = Counter(text for _, text in _failed_tasks(index, pool))
    if not failures:
        return []
    shown = [_clip(text, 100) + (" (×%d)" % n if n > 1 else "") for text, n in failures.items()]
    total = sum(failures.values())
    return [Text("%s failed: %s" % (_plural(total, "task"), _listing(shown, 3)), ERROR)]


# -- nodes: the lines of the view, before they become a rich Tree --------------


class _Node:
    """One line and the lines under it.

    ``shared`` holds the parts of the label that identical siblings have in
    common (None: this node never collapses); ``pid`` and ``duration`` are
    what differs between them, summarised as ranges when they collapse.
    """

    def __init__(self, label, children=(), shared=None, pid=None, duration=None):
        self.label = label
        self.children = list(children)
        self.shared = shared
        self.pid, self.duration = pid, duration

    def signature(self):
        """What siblings must share to collapse: the shared parts and every line underneath."""
        if self.shared is None:
            return None
        return tuple(self.shared), tuple(c.label.plain for c in self.children)


def _process_parts(index, process, in_pool):
    """(head, identity, tail) parts of a process's line; identical siblings differ only in identity."""
    target = None if in_pool else _str(_attr(process.launch, sc.OTEL_CODE_FUNCTION_NAME))
    failure = _failure_text(index, process)
    head = [p for p in ((target, QUIET) if target else None, None if in_pool else _start_method_part(process)) if p]
    tail = [p for p in (_exit_part(index, process), _pickled_part(index, process),
                        (_clip(failure, FAILURE_SHOWN), ERROR) if failure else None) if p]
    pid = process.pid
    identity = [("pid %d" % pid, None) if pid else None, (format_duration(_duration(process.main_span)), QUIET)]
    if in_pool:  # a worker's share of the pool's work
        tasks = len([s for s in process.recorded if _name(s) == sc.SPAN_TASK_RUN])
        identity.append((_plural(tasks, "task"), None))
    return head, identity, tail


def _process_node(run, process, in_pool, seen):
    """A process's line, its notable details, and the processes and pools it started."""
    if id(process) in seen:  # garbage pids can make a process its own ancestor
        return _Node(Text("(pid %s listed above)" % process.pid, QUIET))
    seen.add(id(process))
    head, identity, tail = _process_parts(run.index, process, in_pool)
    name = _str(process.attr(sc.PROCESS_NAME)) or "process"
    label = _line((name, ERROR if process.failed else NAME), *(head + identity + tail))
    children = _child_nodes(run, process, seen)
    details = [_Node(line) for line in _detail_lines(run.index, process)]
    return _Node(label, details + children, shared=None if children else head + tail, pid=process.pid,
                 duration=_duration(process.main_span))


def _pool_node(run, pool, seen):
    """A pool's line, its task failures and submissions, then its workers (collapsed beyond MAX_LISTED)."""
    workers = sorted(pool.workers, key=lambda p: _start(p.main_span) or 0)
    failed_alike, workers = _failed_alike_before_run(workers)
    worker_nodes = [_failed_alike_node(failure, group, seen) for failure, group in failed_alike]
    worker_nodes += _collapse([_process_node(run, w, True, seen) for w in workers], "workers")
    details = (_unsent_lines(run.index, pool) + _task_failure_lines(run.index, pool)
               + _task_summary_line(run.index, pool) + _pool_hook_lines(run.index, pool))
    return _Node(_pool_label(pool), [_Node(line) for line in details] + worker_nodes)


def _failed_alike_before_run(workers):
    """([(failure, workers)], the rest): workers that died before run() the same way, two or more.

    A pool whose workers cannot start (a spawn pool created at the top level
    of an unguarded main module) replaces them over and over: one finding, counted.
    """
    groups = defaultdict(list)
    for worker in workers:
        failure = _failure_before_run(worker)
        if failure is not None:
            groups[failure].append(worker)
    alike = [(failure, group) for failure, group in groups.items() if len(group) > 1]
    grouped = {id(w) for _, group in alike for w in group}
    return alike, [w for w in workers if id(w) not in grouped]


def _failed_alike_node(failure, group, seen):
    """One line for workers that failed before run() alike: how many, where, the pids, and the hint."""
    seen.update(id(w) for w in group)
    phase, exception, location, hint = failure
    pids = _span_of_values([w.pid for w in group], str)
    label = _line(("×%d workers failed in %s: %s" % (len(group), phase, _clip(exception, 160)), ERROR),
                  ("at " + location if location else None, None), ("pids " + pids if pids else None, QUIET))
    return _Node(label, [_Node(Text("hint: " + hint, WARNING))] if hint else [])


def _item_start(item):
    """When a process or pool was started: siblings are listed in that order."""
    return (_start(item.span) if isinstance(item, _Pool) else _start(item.main_span)) or 0


def _child_nodes(run, process, seen):
    """The pools and processes ``process`` started, in start order, identical ones collapsed."""
    nodes = []
    for item in sorted(process.items, key=_item_start):
        if isinstance(item, _Pool):
            nodes.append(_pool_node(run, item, seen))
        else:
            nodes.append(_process_node(run, item, False, seen))
    return _collapse(nodes, "children")


def _collapse(nodes, noun):
    """Beyond MAX_LISTED siblings, identical ones become one ``×N identical`` line."""
    if len(nodes) <= MAX_LISTED:
        return nodes
    groups = {}
    for node in nodes:
        signature = node.signature()
        groups.setdefault(signature if signature is not None else id(node), []).append(node)
    return [group[0] if len(group) == 1 else _collapsed(group, noun) for group in groups.values()]


def _span_of_values(values, formatter):
    """``low–high`` of the known values, the unit written once: ``31–44 ms``."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    low, high = formatter(min(known)), formatter(max(known))
    if low == high:
        return low
    low_number, _, low_unit = low.rpartition(" ")
    high_number, _, high_unit = high.rpartition(" ")
    if low_unit == high_unit and low_number and high_number:
        return "%s–%s %s" % (low_number, high_number, high_unit)
    return "%s–%s" % (low, high)


def _collapsed(group, noun):
    """One line for identical siblings: what they share, and the range of pids and durations."""
    first = group[0]
    pids = _span_of_values([n.pid for n in group], str)
    durations = _span_of_values([n.duration for n in group], format_duration)
    failed = any(style == ERROR for _, style in first.shared)
    return _Node(_line(("×%d identical %s" % (len(group), noun), ERROR if failed else NAME), *first.shared,
                       ("pids " + pids if pids else None, QUIET), (durations, QUIET)), first.children)


def _orphan_lines(run):
    """Spans whose parent never arrived, other than processes (placed by pid) and the root's own spans."""
    structural = (sc.SPAN_PROCESS, sc.SPAN_PROCESS_RUN, sc.SPAN_POOL)
    counts = Counter()
    for span in run.index.spans:
        name = _name(span) or "?"
        in_root = run.recorder_of(span) is run.root
        if run.index.is_orphan(span) and name not in structural and not (in_root and not name.startswith("mp.")):
            counts[(name, _pid(span))] += 1
    return [Text("%s%s (pid %s): its parent span never arrived" % (name, " ×%d" % n if n > 1 else "", pid), QUIET)
            for (name, pid), n in counts.items()]


def _unattached_node(run, seen):
    """Processes and spans that could not be placed under whoever started them.

    Built after the rest of the tree: ``seen`` then also tells which processes
    no path from the root reached (pids that claim to have started each other).
    """
    nodes = [_process_node(run, p, False, seen) for p in run.unattached]
    for pid, placeholder in sorted(run.unknown.items()):
        label = Text("pid %d: its start was not recorded" % pid, WARNING)
        nodes.append(_Node(label, [_Node(line) for line in _channel_failure_lines(run.index, placeholder)]
                           + _child_nodes(run, placeholder, seen)))
    nodes += [_process_node(run, p, False, seen) for p in run.processes if id(p) not in seen]
    nodes += [_Node(line) for line in _orphan_lines(run)]
    return _Node(Text("(unattached)", WARNING), nodes) if nodes else None


def _program_name(run):
    """The root's service.name when the program set one, else ``program``."""
    for span in run.root.recorded:
        name = _str(_resource_attr(span, SERVICE_NAME))
        if name and not name.startswith("unknown_service"):
            return name
    for span in run.index.named(sc.SPAN_PROGRAM):
        name = _str(_attr(span, sc.PROGRAM_NAME))
        if name:
            return os.path.basename(name)
    return "program"


def _total_duration(index):
    """From the first span's start to the last span's end, in any process."""
    starts = [s for s in map(_start, index.spans) if s is not None]
    ends = [e for e in map(_end, index.spans) if e is not None]
    return max(ends) - min(starts) if starts and ends and max(ends) >= min(starts) else None


def _program_span(run):
    """The root's mp.program span (the whole run), or None when the run had none."""
    found = [s for s in run.index.named(sc.SPAN_PROGRAM) if _parent_id(s) is None]
    return found[0] if found else None


def _program_failure(program):
    """How the program itself ended, when that was a failure: ``failed: Type: message at file:line``."""
    if program is None or not _failed(program):
        return None
    text = _exception_text(program)
    path, line = _str(_attr(program, sc.OTEL_CODE_FILE_PATH)), _int(_attr(program, sc.OTEL_CODE_LINE_NUMBER))
    if text is None:  # no exception: it exited with a non-zero status
        status = _int(_attr(program, sc.OTEL_PROCESS_EXIT_CODE))
        return "exit %d" % status if status is not None else (_description(program) or "failed")
    where = "%s:%d" % (_short_path(path), line) if path and line else None
    if where and (path not in text or str(line) not in text):
        text += " at " + where
    return "failed: " + text


def _root_label(run, program):
    """The run in one line: which process, how long, how many children, how the program and they ended.

    Without mp.program, the program's own ending is unknown, and the line says
    only what it knows: errors in the child processes.
    """
    processes = len(run.processes) + len(run.unknown)
    errors = sum(p.failed for p in run.processes) + run.failed_tasks() + run.channel_failures()
    failure = _program_failure(program)
    if errors:
        verdict = _plural(errors, "error") + (" in child processes" if failure else "")
    else:
        verdict = None if failure else ("no errors" if program is not None else "no errors in child processes")
    duration = _duration(program) if program is not None else None
    return _line(
        (_program_name(run), ERROR if failure else NAME),
        ("pid %d" % run.root.pid if run.root.pid else None, None),
        (format_duration(duration if duration is not None else _total_duration(run.index)), None),
        (_plural(processes, "child process", "child processes"), None),
        (_clip(failure, 160) if failure else None, ERROR),
        (verdict, ERROR if errors else OK),
    )


def _root_node(spans):
    """The whole view as _Nodes: the root process, what it started, and what could not be placed."""
    run = _Run(spans)
    program = _program_span(run)
    seen = set()
    details = [_Node(line) for line in _traceback_lines(program)] if _failed(program) else []
    details += [_Node(line) for line in _channel_failure_lines(run.index, run.root)]
    children = details + _child_nodes(run, run.root, seen)
    unattached = _unattached_node(run, seen)
    children += [unattached] if unattached else []
    return _Node(_root_label(run, program), children)


# -- rich ----------------------------------------------------------------------


def _tree(node):
    """The rich Tree of a _Node and everything under it."""
    tree = Tree(node.label, guide_style=QUIET)
    _grow(tree, node)
    return tree


def _grow(tree, node):
    for child in node.children:
        _grow(tree.add(child.label), child)


def _failure_tree(error):
    """What the view says when the spans defeat it: one line, rather than an exception at exit."""
    return Tree(Text("mptrace: could not draw the process tree (%s: %s)" % (type(error).__name__, error), WARNING))


def build(spans):
    """The process tree of a run as a rich Tree; a one-line tree saying why if the spans defeat it."""
    try:
        return _tree(_root_node(list(spans or ())))
    except Exception as error:  # the view is a courtesy; it must never cost the program its exit
        return _failure_tree(error)


def _ascii_only(tree):
    """Replace characters the output cannot encode, one for one, so the styles stay in place."""
    label = tree.label
    if isinstance(label, Text):
        plain = "".join(_ASCII.get(c, c) for c in label.plain)
        label.plain = plain.encode("ascii", "replace").decode("ascii")
    for child in tree.children:
        _ascii_only(child)
    return tree


def terminal_width(file, default=DEFAULT_WIDTH):
    """The terminal's width; ``default`` for files, pipes and terminals that report none."""
    try:
        columns = os.get_terminal_size(file.fileno()).columns if file.isatty() else 0
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns if columns > 0 else default


def _color_options(color):
    """Console options: forced on or off by ``color``, else rich's detection unless NO_COLOR is set."""
    if color is True:
        return {"force_terminal": True, "color_system": "standard"}
    if color is False or os.environ.get("NO_COLOR"):
        return {"color_system": None}
    return {"color_system": "auto"}


def _console(file, color, width=None):
    """A console that prints Text as given: no markup, emoji or highlighting of the program's strings."""
    return Console(file=file, width=width or terminal_width(file), highlight=False, emoji=False, markup=False,
                   soft_wrap=False, **_color_options(color))


def render(spans, file=None, color=None):
    """Print the process tree to ``file`` (stderr by default); never raises."""
    try:
        file = file if file is not None else sys.stderr
        console = _console(file, color)
        tree = build(spans)
        if not console.encoding.lower().startswith("utf"):
            tree = _ascii_only(tree)
        console.print(tree)
    except Exception:
        from mptrace import _log

        _log.internal_error("printing the process tree")


def summary_lines(spans):
    """The tree as plain text, one string per line: for tests and logs."""
    buffer = io.StringIO()
    _console(buffer, False, width=PLAIN_WIDTH).print(build(spans))
    return [line.rstrip() for line in buffer.getvalue().splitlines()]
