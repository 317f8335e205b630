"""Assert on what happened in every process of a test, with or without pytest.

    from mptrace.testing import SpanRecorder

    with SpanRecorder() as recorder:          # mptrace installed on an in-memory pipeline
        process = multiprocessing.get_context("spawn").Process(target=work, args=(config,))
        process.start()
        process.join()
        recorder.assert_not_pickled()          # fails under spawn: the arguments were pickled
        recorder.assert_state_inherited("myapp.settings.DEBUG")

pytest users get the same object from the ``mptrace_spans`` fixture. Every
assertion that fails says what it expected and shows the process tree (the
view ``mptrace run`` prints), not a dump of span objects.
"""

import multiprocessing

from mptrace.semconv import START_METHODS

__all__ = ["SpanRecorder", "Process", "start_methods"]


def start_methods():
    """The start methods this platform has, in a stable order: fork, spawn, forkserver."""
    available = multiprocessing.get_all_start_methods()
    return [method for method in START_METHODS if method in available]


class Process:
    """One child process as the trace shows it (its ``mp.process`` span, and its ``mp.process.run`` if any)."""

    def __init__(self, launch, run):
        self.launch = launch
        self.run = run
        self.name = launch.attributes.get("mp.process.name")
        self.pid = launch.attributes.get("mp.child.pid")
        self.start_method = launch.attributes.get("mp.start_method")
        self.exitcode = launch.attributes.get("mp.exitcode")
        self.target = launch.attributes.get("code.function.name")
        self.parent = None  # the Process that started this one; None for the test process's own children
        self.children = []
        # {generator name: (the other Processes that started with the same state)}; see random_states
        self.random_shared = {}

    @property
    def pickled(self):
        """Whether the target and arguments were pickled to reach the child (False under fork)."""
        return bool(self.launch.attributes.get("mp.args.pickled"))

    @property
    def hooks(self):
        """The custom pickling hooks that ran to start it, as ``module.Qualname.__getstate__``."""
        return tuple(self.launch.attributes.get("mp.pickle.hooks", ()))

    @property
    def diverged(self):
        return tuple(self._run_attribute("mp.state.diverged"))

    @property
    def not_portable(self):
        return tuple(self.launch.attributes.get("mp.state.not_portable", ()))

    @property
    def class_state_not_portable(self):
        """``args[0]: module.Class.attr``: arguments of a class whose class-level state changed after import,
        which a spawn or forkserver child re-imports without that change."""
        return tuple(self.launch.attributes.get("mp.args.class_state_not_portable", ()))

    @property
    def state_unknown(self):
        """Module state (``module.name``, or a whole module) that could not be compared: cannot tell.

        From the parent (whether it changed since import) and from the child (whether it saw it as the
        parent had it).
        """
        found = list(self.launch.attributes.get("mp.state.unknown", ()))
        found += [name for name in self._run_attribute("mp.state.unknown") if name not in found]
        return tuple(found)

    @property
    def args_unknown(self):
        """Arguments too large to compare in full: whether pickling changed them, cannot tell."""
        return tuple(self._run_attribute("mp.args.unknown"))

    @property
    def args_changed(self):
        return tuple(self._run_attribute("mp.args.changed"))

    @property
    def random_states(self):
        """The random generators the child started with, as ``name:hash`` (a keyed hash of the state)."""
        return tuple(self._run_attribute("mp.random.states"))

    @property
    def native_threads_at_fork(self):
        """Threads of the parent, at fork, that the threading module did not start; None: not a fork, or
        the platform cannot tell (no /proc/self/task)."""
        return self.launch.attributes.get("mp.fork.threads.native")

    @property
    def environment_differences(self):
        """Environment variable names that differ between the parent at start() and the child when run()
        began: ``{"added": (...), "removed": (...), "changed": (...)}`` ("added": only the child has it).

        Empty under fork (the child is a copy); a forkserver child's environment is the fork server's,
        from when the server started. None when the child did not compare (it never reported).
        """
        if self.start_method == "fork" and self.run is not None:
            return {"added": (), "removed": (), "changed": ()}
        if self.run is None or "mp.env.added" not in self.run.attributes:
            return None
        return {side: tuple(self._run_attribute("mp.env." + side)) for side in ("added", "removed", "changed")}

    @property
    def cwd_differs(self):
        """Whether the child's working directory when run() began was not the parent's at start() (False
        under fork; None: not compared). A forkserver child's server may have preloaded in another one:
        ``run.attributes["mp.forkserver.cwd.differs"]``."""
        if self.start_method == "fork" and self.run is not None:
            return False
        return self.run.attributes.get("mp.cwd.differs") if self.run is not None else None

    @property
    def forkserver_snapshot_age(self):
        """Seconds between the fork server's start (its environment and module state) and start(); None
        when not a forkserver child, or unknown (the server started before mptrace saw it)."""
        return self.run.attributes.get("mp.forkserver.snapshot_age") if self.run is not None else None

    @property
    def inherited_fds(self):
        """The open descriptors a fork child inherited, one phrase each (``socket tcp a->b (db.CONN)``);
        empty under spawn and forkserver, and with ``install(inherited_fds=False)``."""
        return tuple(self.launch.attributes.get("mp.fork.fds", ()))

    @property
    def shared_fds(self):
        """The entries of ``inherited_fds`` that a sibling, running when this child started or started
        while this one ran, holds too."""
        return tuple(self.launch.attributes.get("mp.fork.fds.shared", ()))

    @property
    def fds_shared_with(self):
        """The names of the siblings that hold ``shared_fds``."""
        return tuple(self.launch.attributes.get("mp.fork.fds.shared_with", ()))

    @property
    def carried_between_tasks(self):
        """A Pool or executor worker: ``{name: tasks seen changing it}`` of the watched state (``module.name``,
        ``module.func (lru_cache)``) its tasks changed and left so for its next tasks; ``{}`` when none did.

        None when nobody looked: not a worker, a worker that ran no task, ``check_task_state=False``, or a
        worker killed before it recorded anything. A worker killed while busy (its pool's terminate()) has
        the counts of its last record: lower bounds (``run.attributes["mp.span.synthesized"]`` is True).
        """
        attributes = self.run.attributes if self.run is not None else {}
        if "mp.worker.tasks_checked" not in attributes:
            return None
        names = list(attributes.get("mp.worker.carried", ()))
        counts = list(attributes.get("mp.worker.carried.tasks", ()))
        return dict(zip(names, counts + [0] * (len(names) - len(counts))))

    def _run_attribute(self, key):
        return self.run.attributes.get(key, ()) if self.run is not None else ()

    def __repr__(self):
        return "<Process %s pid=%s %s exit=%s>" % (self.name, self.pid, self.start_method, self.exitcode)


class SpanRecorder:
    """mptrace installed on an in-memory pipeline, and questions about what it saw.

    ``start()``/``stop()`` (or ``with``) install and uninstall mptrace; options
    go to ``mptrace.install``. ``spans`` flushes and returns the finished spans
    of every process; ``clear()`` forgets them.
    """

    def __init__(self, **install_options):
        # opentelemetry-sdk 1.4x: a provider's fork handler uses a thread pool, and a fork
        # child that forks again deadlocks if concurrent.futures.thread is first imported
        # after the provider was created. Importing it first avoids that.
        import concurrent.futures.thread  # noqa: F401

        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.options = install_options
        self.exporter = InMemorySpanExporter()
        # An explicit resource: the SDK's resource detection would start threads, and a
        # fork right after them can deadlock (and draws a warning on Python 3.12+).
        self.provider = TracerProvider(resource=Resource({"service.name": "mptrace-test"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("mptrace.testing")

    # -- lifecycle ---------------------------------------------------------------

    def start(self):
        import mptrace
        from mptrace._state import state

        if state.active():
            raise RuntimeError("mptrace is already installed in this process; a SpanRecorder installs it itself "
                               "(call mptrace.uninstall() first)")
        mptrace.install(tracer_provider=self.provider, **self.options)
        return self

    def stop(self):
        import mptrace

        mptrace.uninstall()
        self.provider.shutdown()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the spans ------------------------------------------------------------------

    @property
    def spans(self):
        """Every finished span of every process, after collecting what exited children left."""
        import mptrace

        mptrace.flush()
        return list(self.exporter.get_finished_spans())

    def clear(self):
        """Forget every span collected so far (those still to come from running children arrive later)."""
        import mptrace

        mptrace.flush()
        self.exporter.clear()

    def named(self, name, **attributes):
        """The spans called ``name`` whose attributes include ``attributes``: ``named("mp.process",
        **{"mp.start_method": "spawn"})``."""
        return [s for s in self.spans if s.name == name and _has(s, attributes)]

    def one(self, name, **attributes):
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.named(name, **attributes)
        if len(found) != 1:
            self._fail("expected exactly one %r span%s, found %d" % (
                name, " with %r" % attributes if attributes else "", len(found)))
        return found[0]

    def processes(self):
        """Every child process (children, grandchildren, ...) as a Process, in start order."""
        spans = self.spans
        runs = {s.parent.span_id: s for s in spans if s.name == "mp.process.run" and s.parent is not None}
        launches = sorted((s for s in spans if s.name == "mp.process"), key=lambda s: s.start_time)
        found = [Process(launch, runs.get(launch.context.span_id)) for launch in launches]
        _link_parents(found, spans)
        _link_random_sharing(found)
        return found

    def process(self, which=None):
        """The child ``which`` names (its name, pid or target's name); with one child, ``which`` may be left out."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        processes = self.processes()
        if which is None:
            if len(processes) != 1:
                self._fail("expected one child process to assert on, found %d: name the one you mean "
                           "(process=...)" % len(processes))
            return processes[0]
        matches = [p for p in processes if which in (p.name, p.pid, p.target) or
                   (isinstance(which, str) and isinstance(p.target, str) and p.target.endswith("." + which))]
        if len(matches) != 1:
            self._fail("expected one child process named %r, found %d" % (which, len(matches)))
        return matches[0]

    def tree(self):
        """The process tree as text, one line per string (what ``mptrace run`` prints)."""
        from mptrace import _tree

        return _tree.summary_lines(self.spans)

    # -- assertions ---------------------------------------------------------------------

    def assert_pickled(self, process=None):
        """The child's target and arguments were pickled to reach it (spawn, forkserver)."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        if not found.pickled:
            self._fail("expected %s's arguments to be pickled (started by %s)" % (found.name, found.start_method),
                       found)

    def assert_not_pickled(self, process=None):
        """The child received its target and arguments without pickling (fork)."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        if found.pickled:
            self._fail("expected %s's arguments not to be pickled, but %s pickled them%s" % (
                found.name, found.start_method, " (hooks: %s)" % ", ".join(found.hooks) if found.hooks else ""),
                found)

    def assert_hook_ran(self, hook, process=None):
        """A pickling hook ran to start the child; ``hook`` may end a full name (``A.__getstate__``)."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        if not any(_names_match(name, hook) for name in found.hooks):
            self._fail("expected the pickling hook %s to run for %s; hooks that ran: %s" % (
                hook, found.name, ", ".join(found.hooks) or "none"), found)

    def assert_hook_not_ran(self, hook, process=None):
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        ran = [name for name in found.hooks if _names_match(name, hook)]
        if ran:
            self._fail("expected the pickling hook %s not to run for %s, but it did (%s)" % (
                hook, found.name, ", ".join(ran)), found)

    def assert_state_diverged(self, name, process=None):
        """The child saw module state ``name`` (``module.attribute``, or ``module.Class.attr`` for a class
        attribute) different from the parent's at start()."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        why = _why_not_compared(found)
        if name not in found.diverged and why:
            self._fail("cannot tell whether %s saw a different %s than its parent: %s" % (found.name, name, why), found)
        if name not in found.diverged:
            self._fail("expected %s to see a different %s than its parent; diverged: %s" % (
                found.name, name, ", ".join(found.diverged) or "nothing"), found)

    def assert_state_inherited(self, name, process=None):
        """The child saw module state ``name`` (``module.attribute`` or ``module.Class.attr``) as its parent had
        it at start().

        Fails when the child saw something else (``diverged``), and for a spawn or
        forkserver child also when the parent's value is not the import-time one
        (``not_portable``): such a child re-imports the module, whether or not it
        had imported it yet when run() began.
        """
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        if name in found.diverged:
            self._fail("expected %s to inherit %s from its parent, but it saw something else (started by %s)" % (
                found.name, name, found.start_method), found)
        if found.start_method != "fork" and name in found.not_portable:
            self._fail("expected %s to inherit %s from its parent, but a %s child re-imports it: the parent "
                       "changed it after import" % (found.name, name, found.start_method), found)
        if found.start_method != "fork":
            why = _why_state_unknown(found, name)
            if why:
                self._fail("cannot tell whether %s inherited %s from its parent: %s" % (found.name, name, why), found)

    def assert_arg_changed(self, argument, process=None):
        """An argument (``args[0]``, ``kwargs['x']``, ``target``) arrived different from what was passed."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        why = _why_not_compared(found)
        if argument not in found.args_changed and why:
            self._fail("cannot tell whether %s arrived changed in %s: %s" % (argument, found.name, why), found)
        if argument not in found.args_changed and argument in found.args_unknown:
            self._fail("cannot tell whether %s arrived changed in %s: too large to compare in full" % (
                argument, found.name), found)
        if argument not in found.args_changed:
            self._fail("expected %s to arrive changed in %s; changed: %s" % (
                argument, found.name, ", ".join(found.args_changed) or "nothing"), found)

    def assert_args_unchanged(self, process=None):
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        why = _why_not_compared(found)
        if why:
            self._fail("cannot tell whether %s's arguments arrived as passed: %s" % (found.name, why), found)
        if found.args_changed:
            self._fail("expected %s's arguments to arrive as passed, but %s changed" % (
                found.name, ", ".join(found.args_changed)), found)
        if found.args_unknown:
            self._fail("cannot tell whether %s's arguments arrived as passed: %s too large to compare in full" % (
                found.name, ", ".join(found.args_unknown)), found)

    def assert_random_independent(self, process=None):
        """No random generator started in the same state in two processes (which then draw the same numbers).

        ``process``: check only that child; by default, every child.
        """
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        checked = [self.process(process)] if process is not None else self.processes()
        for found in checked:
            if found.run is None or "mp.random.states" not in found.run.attributes:
                why = _why_random_unknown(found)
                self._fail("cannot tell whether %s's random generators are independent: %s" % (found.name, why),
                           found)
            if found.random_shared:
                shared = ", ".join("%s (also in %s)" % (name, ", ".join(o.name for o in others))
                                   for name, others in sorted(found.random_shared.items()))
                self._fail("expected %s's random generators to be independent, but these started in the same state "
                           "in another process (started by %s), so they draw the same numbers: %s" % (
                               found.name, found.start_method, shared), found)
            unreported = _unreported_random_states(self.processes(), found)
            if unreported:
                self._fail("cannot tell whether %s's random generators are independent: %s ran without reporting "
                           "the states of theirs, which may be the same" % (found.name, ", ".join(unreported)), found)

    def assert_environment_inherited(self, name=None, process=None):
        """The child began run() with the environment variable ``name`` (or, with no name, every
        variable) as the parent had it at start(): fails under forkserver for what the parent changed
        after the fork server started, under spawn for what only os.putenv/os.unsetenv changed."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        differences = found.environment_differences
        if differences is None:
            why = _why_not_compared(found) or "it did not compare it (no mp.env.* attributes)"
            self._fail("cannot tell whether %s inherited its parent's environment: %s" % (found.name, why), found)
        differing = ["%s %s" % (name_, side) for side, names in sorted(differences.items()) for name_ in names
                     if name is None or name_ == name]
        listed = [n for names in differences.values() for n in names]
        if name is not None and not differing and any(_is_more(n) for n in listed):
            self._fail("cannot tell whether %s inherited %s: more variables differ than the span lists" % (
                found.name, name), found)
        if differing:
            self._fail("expected %s to inherit %s from its parent (started by %s), but %s" % (
                found.name, name or "the environment", found.start_method, ", ".join(differing)), found)

    def assert_no_shared_fds(self, process=None):
        """No socket, file or pipe the child inherited through fork is held by a running sibling too
        (two processes reading one connection corrupt it)."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        found = self.process(process)
        if found.shared_fds:
            self._fail("expected %s to share no inherited descriptor with a running sibling, but %s hold%s: %s" % (
                found.name, ", ".join(found.fds_shared_with), "s" if len(found.fds_shared_with) == 1 else "",
                "; ".join(found.shared_fds)), found)

    def assert_nothing_carried_between_tasks(self, process=None):
        """No task of a Pool or executor worker (``process``, else every one) left watched state changed for
        the worker's next tasks: a task's result does not depend on which worker ran it, or what ran there before.
        """
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        for found in [self.process(process)] if process is not None else self.processes():
            carried = found.carried_between_tasks
            if carried is None and process is not None:
                self._fail("cannot tell whether %s's tasks left state changed for the next ones: it recorded no "
                           "look (not a pool worker, it ran no task, or check_task_state=False)" % found.name, found)
            if carried:
                self._fail("expected no state carried between the tasks of %s, but its tasks left changed: %s" % (
                    found.name, ", ".join("%s (%d tasks)" % item for item in carried.items())), found)

    def assert_no_errors(self):
        """No span of any process ended in ERROR."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        failed = [s for s in self.spans if s.status.status_code.name == "ERROR"]
        if failed:
            self._fail("expected no errors, found %d span%s in ERROR: %s" % (
                len(failed), "" if len(failed) == 1 else "s",
                "; ".join("%s (%s)" % (s.name, s.status.description) for s in failed[:5])))

    def _fail(self, message, process=None):
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        lines = self.tree()
        if process is not None:
            lines = _around(lines, process)
        raise AssertionError("%s\n\nprocess tree:\n%s" % (message, "\n".join("  " + line for line in lines)))


def _why_state_unknown(process, name):
    """Why a spawn or forkserver child's view of ``name`` is unknown, or None if it was compared."""
    why = _why_not_compared(process)
    if process.run is None or why:
        return why
    for unknown in process.state_unknown:
        if name == unknown or name.startswith(unknown + "."):
            return "%s: %s" % (unknown, _state_reason(process, unknown))
    # A module the child compared needs no import-time baseline: it has it already and will not re-import it.
    compared = process.run.attributes.get("mp.state.compared")
    if compared is not None and _module_of(name, list(compared)) is None:
        return "the child compared no module holding it (compared: %s); a module is compared when it is " \
               "watched and the child has imported it when run() begins" % (", ".join(compared) or "none")
    return None


# Why a run span lacks what the child reports after its START (see mptrace._unreported), in a failure message.
_UNREPORTED = {
    "ended": "the child ended before it reported %s (mptrace ended its run span for it)",
    "not recorded": "the child did not record %s (an mptrace error in the child, logged on the mptrace logger)",
}


def _why_not_compared(process):
    """Why the child's comparisons of what arrived (module state, arguments, environment) are not known, or
    None when they are."""
    from mptrace import _unreported

    if process.start_method == "fork":
        return None  # a copy of the parent's memory: nothing pickled, nothing to compare
    never_ran = _why_never_ran(process)
    if never_ran:
        return never_ran
    missing = _unreported.comparisons_missing(process.run.attributes)
    return _unreported_text(missing, "what it compared") if missing else None


def _why_random_unknown(process):
    """Why the states of the child's random generators are not known."""
    from mptrace import _unreported

    never_ran = _why_never_ran(process)
    if never_ran:
        return never_ran
    if process.run.attributes.get("mp.random.off") is True:
        return "it did not hash them (install option random_state=False)"
    missing = _unreported.random_missing(process.run.attributes) or _unreported.NOT_RECORDED
    return _unreported_text(missing, "its random generators' states")


def _unreported_random_states(processes, found):
    """The names of the processes other than ``found`` whose run began but whose generators' states are
    missing: they may share one with ``found``. (One that sent no run span drew nothing: it died before
    mptrace began in it, so before any of the program's code ran there.)"""
    from mptrace import _unreported

    return [process.name for process in processes if process is not found and process.run is not None
            and _unreported.random_missing(process.run.attributes)]


def _why_never_ran(process):
    """Why the child reported nothing of its run() at all, or None."""
    if process.run is None:
        return "the child never reported (no mp.process.run span)"
    phase = process.run.attributes.get("mp.child.failure.phase")
    return "it failed before run() began, in %s" % phase if phase else None


def _unreported_text(missing, what):
    from mptrace import _unreported

    return _UNREPORTED["ended" if missing == _unreported.ENDED_EARLY else "not recorded"] % what


def _state_reason(process, unknown):
    """The why of an mp.state.unknown entry, from its event (the parent's side has no event)."""
    for event in process.run.events if process.run is not None else ():
        if event.name == "mp.state.unknown" and event.attributes.get("mp.state.name") == unknown:
            return event.attributes.get("mp.state.reason", "not compared")
    return "too large to compare in full"


def _module_of(name, modules):
    """The longest of ``modules`` that ``name`` (``module.attribute``) lives in, or None."""
    holding = [m for m in modules if name.startswith(m + ".")]
    return max(holding, key=len) if holding else None


def _is_more(name):
    """``+3 more``: the last entry of a list that was cut short."""
    return name.startswith("+") and name.endswith(" more")


def _has(span, attributes):
    return all(span.attributes.get(key) == value for key, value in attributes.items())


def _names_match(full_name, wanted):
    return full_name == wanted or full_name.endswith("." + wanted)


def _link_parents(processes, spans):
    """Each Process's parent: the process whose run span encloses its mp.process span."""
    by_id = {s.context.span_id: s for s in spans}
    by_run = {p.run.context.span_id: p for p in processes if p.run is not None}
    for process in processes:
        span = by_id.get(process.launch.parent.span_id) if process.launch.parent else None
        while span is not None and span.context.span_id not in by_run:
            span = by_id.get(span.parent.span_id) if span.parent else None
        if span is not None:
            process.parent = by_run[span.context.span_id]
            process.parent.children.append(process)


def _link_random_sharing(processes):
    """Each Process's random_shared: the generators whose state another process started with too."""
    from mptrace import _randomstate

    shared = _randomstate.shared_states({p: p.random_states for p in processes if p.run is not None})
    for process, names in shared.items():
        process.random_shared = {name: tuple(others) for name, others in names.items()}


def _around(lines, process):
    """The tree's first line, the process's own line and the detail lines under it."""
    marker = "pid %s " % process.pid
    for index, line in enumerate(lines):
        if marker in line + " ":
            depth = _depth(line)
            end = index + 1
            while end < len(lines) and _depth(lines[end]) > depth:
                end += 1
            return [lines[0]] + lines[index:end] if index else lines[:end]
    return lines


def _depth(line):
    """How deep a tree line sits: the number of characters before its text."""
    return len(line) - len(line.lstrip(" │├└─"))
