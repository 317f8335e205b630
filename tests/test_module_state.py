"""Which module state each child inherited, and which it re-imported."""

import json
import multiprocessing
import subprocess
import sys

import pytest

import mptrace
from tests import targets
from tests.programs import in_memory_pipeline
from tests.spans import one
from tests.subprocesses import ROOT, environment, run_traced


def run_state_program(start_method, tmp_path):
    _, spans = run_traced(tmp_path, "tests/programs/state_program.py", start_method)
    return {s["name"]: s for s in spans if s["name"] != "mp.pickle"}


def test_state_changed_after_import(start_method, tmp_path):
    spans = run_state_program(start_method, tmp_path)
    launch, run = spans["mp.process"]["attributes"], spans["mp.process.run"]
    # Under every start method: what a spawned child would not see.
    assert launch["mp.state.not_portable"] == [  # set in the main block: the source says a spawn child lacks it
        "__main__.configured_in_main", "state_module.config", "state_module.counter", "state_module.settings"]
    diverged = run["attributes"]["mp.state.diverged"]
    if start_method == "fork":
        assert run["attributes"]["mp.state.inherited"] is True
        assert diverged == []
        return
    assert diverged == ["__main__.configured_in_main", "state_module.config", "state_module.counter",
                        "state_module.settings"]
    events = {e["attributes"]["mp.state.name"]: e["attributes"] for e in run["events"]
              if e["name"] == "mp.state.diverged"}
    assert (events["state_module.counter"]["mp.state.parent"], events["state_module.counter"]["mp.state.child"]) \
        == ("7", "0")
    assert events["state_module.config"]["mp.state.parent"] == "state_module.Config, .retries=3"
    assert events["state_module.config"]["mp.state.child"] == "state_module.Config, .retries=1"
    assert events["state_module.settings"]["mp.state.parent"] == "dict(len=1), ['mode']=str(len=5)"
    assert events["__main__.configured_in_main"]["mp.state.child"] == "<missing>"


def test_state_is_recorded_when_the_start_method_is_chosen_only_by_the_start(tmp_path):
    """multiprocessing's default context, not chosen yet at start(): the Popen chooses it, and the state is
    recorded then (under fork after the fork), the same as with a context."""
    result, spans = run_traced(tmp_path, "tests/programs/state_program.py", "default")
    assert result.stdout == "chosen before start(): None\n"
    launches = [s["attributes"] for s in spans if s["name"] == "mp.process"]
    assert len(launches) == 1
    launch = launches[0]
    assert launch["mp.start_method.source"] == "default"
    assert launch["mp.state.not_portable"] == [
        "__main__.configured_in_main", "state_module.config", "state_module.counter", "state_module.settings"]


def test_module_imported_before_install_has_no_baseline(context, start_method):
    from tests.programs import state_module  # imported here, before install()

    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    state_module.counter += 1
    try:
        process = context.Process(target=state_module.report)
        process.start()
        process.join(30)
        mptrace.flush()
        spans = exporter.get_finished_spans()
    finally:
        state_module.counter -= 1
        mptrace.uninstall()
    launch, run = one(spans, "mp.process"), one(spans, "mp.process.run")
    assert "tests.programs.state_module" in launch.attributes["mp.state.no_baseline"]
    assert not any(n.startswith("tests.programs.state_module") for n in launch.attributes["mp.state.not_portable"])
    if start_method != "fork":  # no baseline, but the child still shows what it saw differently
        assert "tests.programs.state_module.counter" in run.attributes["mp.state.diverged"]


def test_ignored_modules_are_not_watched(context):
    from tests.programs import state_module

    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider, ignore_modules=["tests.programs.state_module"])
    try:
        launch = launch_span_of(context.Process(target=state_module.report), exporter)
    finally:
        mptrace.uninstall()
    assert "tests.programs.state_module" not in launch.attributes.get("mp.state.no_baseline", ())


def test_bad_module_options_name_the_value():
    import pytest

    with pytest.raises(ValueError, match="'watch_modules' has an invalid module name 'not a module'"):
        mptrace.install(tracer_provider=in_memory_pipeline()[0], watch_modules=["not a module"])
    with pytest.raises(TypeError, match="'capture_values'"):
        mptrace.install(tracer_provider=in_memory_pipeline()[0], capture_values="yes")


def test_uninstall_removes_the_import_hook():
    from mptrace._importhook import AfterImportFinder

    mptrace.install(tracer_provider=in_memory_pipeline()[0])
    assert any(isinstance(f, AfterImportFinder) for f in sys.meta_path)
    mptrace.uninstall()
    assert not any(isinstance(f, AfterImportFinder) for f in sys.meta_path)
    assert targets  # keeps the import used


@pytest.mark.parametrize("outer, inner", [("fork", "spawn"), ("spawn", "spawn"), ("forkserver", "fork")])
def test_grandchildren_compare_with_the_child_that_started_them(tmp_path, outer, inner):
    _, spans = run_traced(tmp_path, "tests/programs/state_grandchild.py", outer, inner)
    runs = {s["parent"]: s for s in spans if s["name"] == "mp.process.run"}
    launches = [s for s in spans if s["name"] == "mp.process"]
    [inner_launch] = [s for s in launches if s["parent"] in {r["span_id"] for r in runs.values()}]
    grandchild_run = runs[inner_launch["span_id"]]
    launch, run = inner_launch["attributes"], grandchild_run["attributes"]
    if outer == "fork":  # the child inherited the root's import baselines, and the names of the main block
        assert launch["mp.state.not_portable"] == ["__main__.inner", "__main__.outer", "state_module.counter"]
        assert "state_module" not in launch.get("mp.state.no_baseline", [])
    else:  # the child imported the module itself, before anyone watched
        assert launch["mp.state.not_portable"] == []
        assert "state_module" in launch["mp.state.no_baseline"]
    if inner == "fork":
        assert run["mp.state.inherited"] is True and run["mp.state.diverged"] == []
    else:
        # A fork child also has the names its parent set in the main block.
        from_main = ["__main__.inner", "__main__.outer"] if outer == "fork" else []
        assert run["mp.state.diverged"] == from_main + ["state_module.counter"]
        [event] = [e["attributes"] for e in grandchild_run["events"] if e["name"] == "mp.state.diverged"
                   and e["attributes"]["mp.state.name"] == "state_module.counter"]
        assert (event["mp.state.parent"], event["mp.state.child"]) == ("11", "0")
        imports = [s for s in spans if s["name"] == "mp.import" and s["parent"] == grandchild_run["span_id"]]
        assert sorted(s["attributes"]["mp.import.phase"] for s in imports) == ["main", "unpickle"]


def test_future_imports_and_code_are_not_state():
    import types

    from mptrace import _modstate

    module = types.ModuleType("example")
    exec("from __future__ import annotations\nimport os\nretries = 3\ndef f(): pass\nclass C: pass\n",
         module.__dict__)
    assert sorted(_modstate.state_of(module)) == ["retries"]


def test_a_module_keeps_its_import_time_state_through_a_reinstall(tmp_path, monkeypatch):
    """One test imports a module while mptrace is installed; the next installs again and still knows it."""
    import multiprocessing

    (tmp_path / "reinstalled_settings.py").write_text("DEBUG = False\n\ndef show():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    import reinstalled_settings  # imported while installed: its baseline is recorded

    mptrace.uninstall()
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    try:
        reinstalled_settings.DEBUG = True
        launch = launch_span_of(multiprocessing.get_context("spawn").Process(target=reinstalled_settings.show),
                                exporter)
    finally:
        mptrace.uninstall()
        sys.modules.pop("reinstalled_settings", None)
    assert "reinstalled_settings.DEBUG" in launch.attributes["mp.state.not_portable"]
    assert "reinstalled_settings" not in launch.attributes.get("mp.state.no_baseline", ())



def test_a_module_the_program_drops_is_not_kept_alive(tmp_path, monkeypatch):
    """The fingerprints kept from one start to the next refer to their module weakly: it is freed once dropped."""
    import gc
    import multiprocessing
    import weakref

    (tmp_path / "dropped_settings.py").write_text("MODE = 'prod'\n\nclass Limits:\n    retries = 3\n\n"
                                                   "def show():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    try:
        import dropped_settings

        launch = launch_span_of(multiprocessing.get_context("fork").Process(target=dropped_settings.show), exporter)
        module = weakref.ref(dropped_settings)
        del sys.modules["dropped_settings"], dropped_settings
        gc.collect()
    finally:
        mptrace.uninstall()
        sys.modules.pop("dropped_settings", None)
    assert launch.attributes["mp.state.not_portable"] == ()
    assert module() is None


def test_more_watched_modules_than_are_compared_are_reported_once(tmp_path, monkeypatch, caplog):
    """70 real application modules, imported from a directory of the test's: the first 64 are compared."""
    from mptrace import _modstate

    names = ["many_settings_%02d" % index for index in range(_modstate.MAX_MODULES + 6)]
    for name in names:
        (tmp_path / (name + ".py")).write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # Only this test's modules: not the ones loaded already (an interpreter's sitecustomize, say).
    watch = _modstate.ModuleWatch(exclude=("tests", "__main__") + tuple(n for n in sys.modules if "." not in n))
    try:
        for name in names:
            __import__(name)
        with caplog.at_level("WARNING", logger="mptrace"):
            compared = [name for name, _ in watch.watched_modules()]
            sys.modules["many_settings_extra"] = sys.modules[names[0]]  # sys.modules grew: a rescan
            watch.watched_modules()
    finally:
        for name in names + ["many_settings_extra"]:
            sys.modules.pop(name, None)
    assert compared == names[:_modstate.MAX_MODULES]
    said = [record.getMessage() for record in caplog.records if "application modules" in record.getMessage()]
    assert said == ["mptrace: comparing the state of the first 64 of 70 application modules; many_settings_64 "
                    "and later ones are left out (choose with watch_modules and ignore_modules)"]

def launch_span_of(process, exporter):
    """Start and join ``process``; its mp.process span."""
    process.start()
    process.join(30)
    mptrace.flush()
    return one(exporter.get_finished_spans(), "mp.process")


def test_a_main_module_without_source_has_no_baseline(tmp_path):
    """python -c: no source to read, so mptrace says it has no baseline rather than guessing."""
    import subprocess

    from tests.subprocesses import ROOT, environment

    code = ("import multiprocessing, mptrace\n"
            "from tests.programs import in_memory_pipeline\n"
            "provider, exporter = in_memory_pipeline()\n"
            "mptrace.install(tracer_provider=provider)\n"
            "VALUE = 1\n"
            "p = multiprocessing.get_context('fork').Process(target=print); p.start(); p.join()\n"
            "mptrace.flush()\n"
            "[launch] = [s for s in exporter.get_finished_spans() if s.name == 'mp.process']\n"
            "print(list(launch.attributes['mp.state.no_baseline']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=environment())
    assert done.returncode == 0, done.stderr
    assert "'__main__'" in done.stdout


# A python -c program: it starts a child with the given method, and prints what the launch says of __main__
# and how often the parent fingerprinted __main__ (state_of) while it started the child.
MAIN_WITHOUT_SOURCE = """
import multiprocessing, sys, mptrace
from mptrace import _modstate
from tests.programs import in_memory_pipeline
{globals}

def main():  # its names are a function's: __main__ holds state only if {{globals}} binds some
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    fingerprinted = []

    def count(frame, event, arg):
        if event == "call" and frame.f_code is _modstate.state_of.__code__:
            fingerprinted.append(frame.f_locals.get("module") is sys.modules["__main__"])

    process = multiprocessing.get_context("{method}").Process(target=print)
    sys.setprofile(count)
    process.start()
    sys.setprofile(None)
    process.join()
    mptrace.flush()
    [launch] = [s for s in exporter.get_finished_spans() if s.name == "mp.process"]
    print("no_baseline", "__main__" in launch.attributes.get("mp.state.no_baseline", ()))
    print("fingerprinted __main__", fingerprinted.count(True))
    print("exit", process.exitcode)

main()
"""


@pytest.mark.parametrize("holds_state", [True, False])
def test_a_main_module_without_source_is_not_fingerprinted(start_method, holds_state):
    """Without its source, the main module's state can be neither judged nor sent to a child: the parent says
    it has no baseline when it holds state, and does not fingerprint it (a notebook's globals can be large)."""
    import subprocess

    from tests.subprocesses import ROOT, environment

    code = MAIN_WITHOUT_SOURCE.format(method=start_method,
                                      globals="TABLE = {'rows': list(range(100))}" if holds_state else "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=environment())
    assert done.returncode == 0, done.stderr
    # Under fork the main module's values are not read at all without a source, so it is listed either way.
    no_baseline = holds_state or start_method == "fork"
    assert "no_baseline %s" % no_baseline in done.stdout, done.stdout
    assert "fingerprinted __main__ 0" in done.stdout, done.stdout
    assert "exit 0" in done.stdout, done.stdout


def test_main_module_globals_changed_in_main_are_not_portable(start_method, tmp_path):
    """The main module has no import hook: its source tells what a spawn child would re-create."""
    _, spans = run_traced(tmp_path, "tests/programs/main_state.py", start_method)
    launches = [s for s in spans if s["name"] == "mp.process"]
    assert len(launches) == 2
    for launch in launches:
        assert launch["attributes"]["mp.state.not_portable"] == [
            "__main__.LIMITS", "__main__.MODE", "__main__.STARTED_BY"]
        assert "__main__" not in launch["attributes"].get("mp.state.no_baseline", [])
    for run in (s for s in spans if s["name"] == "mp.process.run"):
        diverged = run["attributes"]["mp.state.diverged"]
        expected = [] if start_method == "fork" else ["__main__.LIMITS", "__main__.MODE", "__main__.STARTED_BY"]
        assert diverged == expected, "a list of Process handles is not state"


IN_PLACE = ["__main__.LIMITS", "between_starts_module.Counter.seen", "between_starts_module.RECORD",
            "between_starts_module.config", "between_starts_module.point", "between_starts_module.queue",
            "between_starts_module.settings"]
UNEQUAL = ["__main__.MODE", "__main__.OPTIONS", "between_starts_module.Counter.limit", "between_starts_module.NAME",
           "between_starts_module.PAIR"]
STEPS = {  # the child started after each step: (mp.state.not_portable, mp.state.diverged under spawn, forkserver)
    "untouched": ([], []),
    "equal values": ([], []),  # other objects, equal values: nothing changed
    "changed in place": (IN_PLACE, sorted(IN_PLACE + ["__main__.HOLDER"])),
    "unequal values": (sorted(IN_PLACE + UNEQUAL), sorted(IN_PLACE + UNEQUAL + ["__main__.HOLDER"])),
}


def test_each_start_sees_the_state_as_it_is_then(start_method, tmp_path):
    """One process starts a child after each step: what a start reports is the state at that start, whatever
    an earlier start saw (a dict item, a list append, an object's attribute or slot, a class attribute changed in place;
    a string, a tuple, an int rebound to an equal or an unequal value)."""
    _, spans = run_traced(tmp_path, "tests/programs/between_starts.py", start_method)
    launches = {s["attributes"]["mp.process.name"]: s for s in spans if s["name"] == "mp.process"}
    assert sorted(launches) == sorted(STEPS)
    for step, (not_portable, diverged) in STEPS.items():
        launch = launches[step]
        [run] = [s for s in spans if s["name"] == "mp.process.run" and s["parent"] == launch["span_id"]]
        assert launch["attributes"]["mp.state.not_portable"] == not_portable, step
        assert "mp.state.unknown" not in launch["attributes"], step
        assert run["attributes"]["mp.state.diverged"] == ([] if start_method == "fork" else diverged), step


MAIN_STEPS = {  # the child started after each step: mp.state.not_portable, mp.args.class_state_not_portable
    "untouched": ([], None),
    "appended": (["__main__.RESULTS"], None),
    "nested in place": (["__main__.PAIR", "__main__.RESULTS"], None),
    "rebound": (["__main__.Counter.limit", "__main__.DYNAMIC", "__main__.MODE", "__main__.PAIR", "__main__.RESULTS"],
                ["args[0]: __main__.Counter.limit"]),
    "as written again": ([], None),
}


def test_each_start_sees_the_main_module_as_it_is_then(start_method, tmp_path):
    """What a start reuses from the last one (under fork, only the names the main module's source says may
    count are read) never hides a change: a list grown in place, a list inside a tuple, a global created
    and deleted, a class attribute, and all of them put back as written."""
    _, spans = run_traced(tmp_path, "tests/programs/main_between_starts.py", start_method)
    launches = {s["attributes"]["mp.process.name"]: s["attributes"] for s in spans if s["name"] == "mp.process"}
    assert sorted(launches) == sorted(MAIN_STEPS)
    for step, (not_portable, class_state) in MAIN_STEPS.items():
        assert launches[step]["mp.state.not_portable"] == not_portable, step
        assert launches[step].get("mp.args.class_state_not_portable") == class_state, step
        assert "mp.state.unknown" not in launches[step], step
        assert "__main__" not in launches[step].get("mp.state.no_baseline", []), step


def _main_module_and_fingerprints(path, monkeypatch, **names):
    """A __main__ run from ``path`` holding ``names``, and the list of every (name, value) fingerprinted."""
    import types

    from mptrace import _fingerprint

    main = types.ModuleType("__main__")
    main.__file__ = str(path)
    vars(main).update(names)
    monkeypatch.setitem(sys.modules, "__main__", main)
    fingerprinted = []
    real = _fingerprint.fingerprint
    monkeypatch.setattr(_fingerprint, "fingerprint",
                        lambda items, *args, **kwargs: real(fingerprinted.extend(items) or items, *args, **kwargs))
    return main, fingerprinted


def test_a_fork_start_with_nothing_changed_fingerprints_nothing(tmp_path, monkeypatch):
    """A fork child is sent no state: a start reads only the main module's names its source says may count,
    compares its literals with the values as written before fingerprinting any, and only looks whether a
    module without a baseline has state. Every value it fingerprints is a page it walks, each a
    copy-on-write fault after every fork: with nothing changed since the last start, it fingerprints none."""
    from mptrace import _modstate

    path = tmp_path / "main_program.py"
    path.write_text('MODE = "prod"\nLIMITS = {"retries": 3, "names": ["a", "b"]}\nRESULTS = []\n'
                    'if __name__ == "__main__":\n    results = [1, 2, 3]\n')
    main, fingerprinted = _main_module_and_fingerprints(path, monkeypatch, MODE="prod", RESULTS=[],
                                                        LIMITS={"retries": 3, "names": ["a", "b"]}, results=[1, 2, 3])
    watch = _modstate.ModuleWatch(key=b"k" * 16)
    first = watch.state_at_start(fork=True)
    fingerprinted.clear()
    main.results.append(4)
    assert watch.state_at_start(fork=True) == first
    assert fingerprinted == []
    assert first[1] == ["__main__.results"]
    main.LIMITS["names"].append("c")  # changed in place: fingerprinted, and told
    assert watch.state_at_start(fork=True)[1] == ["__main__.LIMITS", "__main__.results"]


def test_a_fork_start_with_more_names_than_kept_fingerprints_only_what_may_have_changed(tmp_path, monkeypatch):
    """A main module with more names than state_of keeps (MAX_NAMES) is read whole to find the names kept,
    but a fork start still fingerprints none of them whole: a list of results it binds (not a literal)
    is never walked, whatever its size, and a literal changed in place is still told."""
    from mptrace import _modstate

    names = ["NAME_%03d" % number for number in range(_modstate.MAX_NAMES + 6)]
    path = tmp_path / "main_program.py"
    path.write_text("".join("%s = %d\n" % (name, number) for number, name in enumerate(names))
                    + 'LIMITS = {"retries": 3}\nimport collections\nRESULTS = collections.deque()\n')
    main, fingerprinted = _main_module_and_fingerprints(
        path, monkeypatch, LIMITS={"retries": 3}, RESULTS=[list(range(50)) for _ in range(200)],
        **{name: number for number, name in enumerate(names)})
    watch = _modstate.ModuleWatch(key=b"k" * 16)
    assert watch.state_at_start(fork=True)[1] == []
    assert fingerprinted == [], "a fork start fingerprinted values that cannot have changed"
    main.LIMITS["retries"] = 4
    assert watch.state_at_start(fork=True)[1] == ["__main__.LIMITS"]
    assert "RESULTS" not in [name for name, _ in fingerprinted], "a list the program binds was walked"
    fingerprinted.clear()  # the source's literals were fingerprinted once, to compare with: not again
    main.LIMITS["retries"] = 5
    assert watch.state_at_start(fork=True)[1] == ["__main__.LIMITS"]
    assert [name for name, _ in fingerprinted] == ["LIMITS"]


def test_a_fork_start_tells_a_grown_results_list_changed_without_reading_all_of_it(tmp_path, monkeypatch):
    """A results list written as ``[]`` and grown to thousands of items differs from its literal in its size:
    a fork start (which sends no state) says so without digesting its content, at every start. A change only
    the content shows (an item past the first 16, the size kept) is still told, through the digest."""
    from mptrace import _fingerprint, _modstate

    path = tmp_path / "main_program.py"
    path.write_text("RESULTS = []\nSCORES = {}\nTABLE = [%s]\n" % ", ".join(str(n) for n in range(20)))
    main, fingerprinted = _main_module_and_fingerprints(path, monkeypatch, RESULTS=[n / 8 for n in range(10000)],
                                                        SCORES={"k%d" % n: n for n in range(5000)},
                                                        TABLE=list(range(20)))
    digested = []
    digest = _fingerprint._Walk.digest
    monkeypatch.setattr(_fingerprint._Walk, "digest", lambda walk, value: digested.append(value) or digest(walk, value))
    watch = _modstate.ModuleWatch(key=b"k" * 16)
    assert watch.state_at_start(fork=True)[1] == ["__main__.RESULTS", "__main__.SCORES"]
    assert [len(value) for value in digested if len(value) > 20] == [], "a grown container was digested"
    # Nor walked at all: its size, not its literal's, says it changed (some 150 calls at every start).
    assert [name for name, _ in fingerprinted if name in ("RESULTS", "SCORES")] == []
    main.TABLE[19] = -19
    assert watch.state_at_start(fork=True)[1] == ["__main__.RESULTS", "__main__.SCORES", "__main__.TABLE"]


def test_a_main_modules_literal_table_is_compared_in_one_pass(tmp_path, monkeypatch):
    """A table the main module's source writes out (3,000 entries of plain values) is compared with the
    literal by marshal form at each fork start, one C call, not item by item in Python; it still tells a
    value of another type that compares equal (``True`` for ``1``, ``5.0`` for ``5``), and one more entry."""
    from mptrace import _mainstate, _modstate

    table = {"k%d" % number: number for number in range(3000)}
    path = tmp_path / "main_program.py"
    path.write_text("TABLE = %r\n" % (table,))
    main, fingerprinted = _main_module_and_fingerprints(path, monkeypatch, TABLE=dict(table))
    compared = []
    marshalled = _mainstate._marshalled
    monkeypatch.setattr(_mainstate, "_marshalled", lambda value: compared.append(len(value)) or marshalled(value))
    watch = _modstate.ModuleWatch(key=b"k" * 16)
    assert watch.state_at_start(fork=True)[1] == []
    assert fingerprinted == [] and 3000 in compared
    for changed in (True, 5.0, "5"):
        main.TABLE["k5"] = changed
        assert watch.state_at_start(fork=True)[1] == ["__main__.TABLE"], changed
    main.TABLE["k5"] = 5
    assert watch.state_at_start(fork=True)[1] == []
    main.TABLE["k3000"] = 3000
    assert watch.state_at_start(fork=True)[1] == ["__main__.TABLE"]


def test_a_fork_start_tells_a_grown_module_cache_changed_without_digesting_it(tmp_path, monkeypatch):
    """An application module's cache, empty at import and filled as the program runs, differs from its
    import-time fingerprint in its size: a fork start says so without digesting its thousands of entries (a
    digest of all of it at every start made such a program's fork starts several times slower). So does a
    global bound since import, also not digested. A change only the content shows (the size kept) is still
    told through the digest, a list of every Process started is still no state, and nothing else changes."""
    from mptrace import _fingerprint, _modstate

    (tmp_path / "grown_cache_module.py").write_text(
        'CACHE = {}\nSEEN = []\nSETTINGS = {"retries": 3, "mode": "fast"}\nWORKERS = []\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "grown_cache_module", None)  # records "absent" for teardown: gone after the test
    monkeypatch.delitem(sys.modules, "grown_cache_module")
    import grown_cache_module as module

    watch = _modstate.ModuleWatch(key=b"k" * 16)
    watch.record_baseline(module)
    assert "grown_cache_module" in watch.baselines
    digested = []
    digest = _fingerprint._Walk.digest
    monkeypatch.setattr(_fingerprint._Walk, "digest", lambda walk, value: digested.append(value) or digest(walk, value))

    def not_portable():
        found = watch.state_at_start(fork=True)
        return [name for name in found[1] if name.startswith("grown_cache_module.")], found[3]

    assert not_portable() == ([], [])
    for number in range(5000):
        module.CACHE["key%d" % number] = {"value": number, "tags": ["a", "b"][: number % 3]}
        module.SEEN.append("key%d" % number)
    module.LATER = {number: [number] * (number % 5) for number in range(3000)}  # bound since import
    module.WORKERS.extend(multiprocessing.get_context("spawn").Process(target=print) for _ in range(50))
    del digested[:]
    assert not_portable() == (["grown_cache_module.CACHE", "grown_cache_module.LATER", "grown_cache_module.SEEN"],
                              [])
    assert [len(value) for value in digested if isinstance(value, (list, dict)) and len(value) > 20] == [], \
        "a grown container was digested at a fork start"
    module.SETTINGS["mode"] = "slow"  # the same size: only the digest tells
    assert not_portable()[0] == ["grown_cache_module.CACHE", "grown_cache_module.LATER",
                                 "grown_cache_module.SEEN", "grown_cache_module.SETTINGS"]
    module.SETTINGS["mode"] = "fast"
    module.CACHE.clear()
    del module.SEEN[:], module.LATER
    assert not_portable() == ([], [])


def test_a_spawn_start_sends_a_grown_module_cache_without_digesting_it(tmp_path, monkeypatch):
    """A spawn or forkserver start sends the state for the child to compare. A cache grown since import is
    sent by its description (its size, its first entries), not with a digest of its thousands of entries:
    the child, which re-imports the module, sees a visible difference. Should its own import make one of
    the same size, the comparison cannot tell (never "the same"). A change only the digest shows still
    travels, with its digest."""
    from mptrace import _fingerprint, _modstate

    (tmp_path / "sent_cache_module.py").write_text('CACHE = {}\nSETTINGS = {"retries": 3, "mode": "fast"}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "sent_cache_module", None)  # records "absent" for teardown: gone after the test
    monkeypatch.delitem(sys.modules, "sent_cache_module")
    import sent_cache_module as module

    key = b"k" * 16
    watch = _modstate.ModuleWatch(key=key)
    watch.record_baseline(module)
    for number in range(3000):  # small enough for the child to digest its own (MAX_DIGEST_NODES)
        module.CACHE["key%d" % number] = {"value": number, "tag": "abc"[number % 3]}
    module.SETTINGS["mode"] = "slow"
    digested = []
    digest = _fingerprint._Walk.digest
    monkeypatch.setattr(_fingerprint._Walk, "digest", lambda walk, value: digested.append(value) or digest(walk, value))
    state, not_portable, _, unknown = watch.state_at_start(fork=False)
    assert [name for name in not_portable if name.startswith("sent_cache_module.")] == [
        "sent_cache_module.CACHE", "sent_cache_module.SETTINGS"] and unknown == []
    assert [len(value) for value in digested if isinstance(value, dict) and len(value) > 20] == []
    sent, parent_cache, parent_settings = state["sent_cache_module"], dict(module.CACHE), dict(module.SETTINGS)
    assert sent["CACHE"]["CACHE"] == "dict(len=3000)"  # no digest: the size tells
    assert sent["SETTINGS"]["SETTINGS['mode']"].startswith("str(len=4) #")  # the same size: a digest tells

    def compared_in_a_child_holding(cache, settings):
        monkeypatch.setattr(module, "CACHE", cache)
        monkeypatch.setattr(module, "SETTINGS", settings)
        diverged, unknown, _ = _modstate.compare_with_parent({"sent_cache_module": sent}, key)
        assert all(reason == _modstate.NOT_SENT for _, reason in unknown)
        return ({name: (parent, child) for name, parent, child, _ in diverged},
                [name for name, _ in unknown])

    diverged, cannot_tell = compared_in_a_child_holding({}, {"retries": 3, "mode": "fast"})
    assert diverged["sent_cache_module.CACHE"][0].startswith("dict(len=3000), ['key0']=dict(len=2)")
    assert diverged["sent_cache_module.CACHE"][1] == "dict(len=0)"
    assert sorted(diverged) == ["sent_cache_module.CACHE", "sent_cache_module.SETTINGS"] and cannot_tell == []
    same_size = {"other%d" % number: number for number in range(3000)}  # its first entries differ: seen
    diverged, cannot_tell = compared_in_a_child_holding(same_size, parent_settings)
    assert sorted(diverged) == ["sent_cache_module.CACHE"] and cannot_tell == []
    same_first = dict(parent_cache, key2999="another value")  # only what lies past the first entries differs
    diverged, cannot_tell = compared_in_a_child_holding(same_first, parent_settings)
    assert "sent_cache_module.CACHE" not in diverged, "a difference the description cannot show was told"
    assert cannot_tell == ["sent_cache_module.CACHE"], "told the same without knowing"


SIZED_CATALOG = """import os
PRICES = {"sku-%d" % number: number for number in range(int(os.environ.get("SIZED_CATALOG_SIZE", "0")))}


def show():
    pass
"""


def test_a_child_that_cannot_compare_a_container_sent_by_its_size_says_so(tmp_path, monkeypatch):
    """A spawn child whose own import makes the cache its parent grew, of the same size, and whose first
    entries match, cannot tell whether it sees the parent's: the trace and the tree say so, with why, and
    assert_state_inherited does not pass."""
    from mptrace import _modstate
    from mptrace.testing import SpanRecorder

    (tmp_path / "sized_catalog.py").write_text(SIZED_CATALOG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "sized_catalog", None)  # records "absent" for teardown
    monkeypatch.delitem(sys.modules, "sized_catalog")
    with SpanRecorder() as recorder:
        import sized_catalog  # imported while traced: empty, its import-time state

        for number in range(2000):
            sized_catalog.PRICES["sku-%d" % number] = 2 * number if number == 1999 else number
        monkeypatch.setenv("SIZED_CATALOG_SIZE", "2000")  # the child's import makes 2,000 of its own
        process = multiprocessing.get_context("spawn").Process(target=sized_catalog.show)
        process.start()
        process.join(60)
        [found] = recorder.processes()
        assert "sized_catalog.PRICES" in found.not_portable
        assert "sized_catalog.PRICES" in found.state_unknown and "sized_catalog.PRICES" not in found.diverged
        reasons = [event.attributes.get("mp.state.reason") for event in found.run.events if event.name ==
                   "mp.state.unknown" and event.attributes.get("mp.state.name") == "sized_catalog.PRICES"]
        assert reasons == [_modstate.NOT_SENT]
        with pytest.raises(AssertionError):  # changed after import, and not comparable: never passes
            recorder.assert_state_inherited("sized_catalog.PRICES")
        lines = recorder.tree()
    assert any("state not compared (sent by its size" in line and "sized_catalog.PRICES" in line
               for line in lines), lines


def test_a_list_of_every_process_started_is_read_by_its_types(monkeypatch):
    """A program that keeps every Process it started has that list read at every start(): whether it holds
    only process handles is asked of its items' types (one here), not of each of its thousands of items; a
    list of results is not walked past its first item."""
    from mptrace import _fingerprint, _modstate

    asked = []
    is_process_handle = _fingerprint.is_process_handle
    monkeypatch.setattr(_fingerprint, "is_process_handle", lambda value: asked.append(value) or
                        is_process_handle(value))
    processes = [multiprocessing.get_context("spawn").Process(target=print) for _ in range(3000)]
    assert _modstate._holds_only_process_handles(processes)
    assert _modstate._holds_only_process_handles({n: process for n, process in enumerate(processes)})
    assert len(asked) <= 4, "each item was asked"
    assert not _modstate._holds_only_process_handles(processes + [1])
    assert not _modstate._holds_only_process_handles([1.0] + processes)
    assert not _modstate._holds_only_process_handles([])
    del asked[:]
    assert not _modstate._holds_only_process_handles([n / 8 for n in range(10000)])
    assert len(asked) == 2  # the list, then its first item


def test_a_fork_starts_analyses_make_no_function_objects():
    """What the parent works out before each fork (module state, threads, inherited descriptors, random
    generators) runs no comprehension, generator expression or lambda once the first starts are behind it:
    each is a function object made at every start (a comprehension's too, before 3.12), memory the parent
    writes again after every fork (a copy-on-write fault per page)."""
    import subprocess

    from tests.subprocesses import ROOT, environment

    result = subprocess.run([sys.executable, "-m", "tests.programs.fork_start_analyses"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT, env=environment())
    assert result.returncode == 0, result.stderr
    *made, exit_codes = result.stdout.strip().splitlines()
    assert exit_codes == "exit codes [0, 0, 0, 0, 0, 0]"
    assert made == [], "made at every fork start:\n%s" % "\n".join(made)


CHDIR_PROGRAM = """
import multiprocessing, os, sys

results = []


def report():
    pass


if __name__ == "__main__":
    results.extend([1, 2, 3])
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")  # the main module's __file__, "app.py", is relative to where the program began
    child = multiprocessing.get_context(sys.argv[1]).Process(target=report)
    child.start()
    child.join()
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_the_main_module_is_compared_after_the_program_changed_directory(tmp_path, method):
    """``python app.py`` then ``os.chdir``: the main module's source is still read (from where the program
    began, as multiprocessing finds it for the child), so its state is sent and compared, not left out."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip("no %s here" % method)
    (tmp_path / "app.py").write_text(CHDIR_PROGRAM)
    output = tmp_path / "spans.json"
    result = subprocess.run([sys.executable, "-m", "tests.programs.run_traced", str(output), "app.py", method],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                            env=environment({"PYTHONPATH": ROOT}))
    assert result.returncode == 0, result.stderr
    spans = json.loads(output.read_text())
    [launch] = [s for s in spans if s["name"] == "mp.process"]
    [run] = [s for s in spans if s["name"] == "mp.process.run"]
    assert "__main__" not in launch["attributes"].get("mp.state.no_baseline", [])
    assert "__main__.results" in launch["attributes"]["mp.state.not_portable"]
    assert "__main__" in run["attributes"]["mp.state.compared"]
    assert "__main__.results" in run["attributes"]["mp.state.diverged"]


SOURCE_GOES_PROGRAM = """
import multiprocessing, os, sys
from helper import show
LIMIT = 1
if __name__ == "__main__":
    LIMIT = 99
    os.rename(__file__, __file__ + ".gone")  # the source goes away (a deploy replaced it, say)
    try:
        child = multiprocessing.get_context("fork").Process(target=show)
        child.start()
        child.join()
    finally:
        os.rename(__file__ + ".gone", __file__)
"""

BEFORE_INSTALL_PROGRAM = """
import multiprocessing, sys
import settings  # imported before install(): no baseline of its state
import mptrace
from mptrace import _tree
from tests.programs import in_memory_pipeline
provider, exporter = in_memory_pipeline()
mptrace.install(tracer_provider=provider)
settings.MODE = "test"
child = multiprocessing.get_context("fork").Process(target=settings.show)
child.start()
child.join()
mptrace.flush()
_tree.render(list(exporter.get_finished_spans()), file=sys.stdout, color=False)
"""


def test_the_tree_says_when_the_main_modules_state_cannot_be_known(tmp_path):
    """Its source gone, the main module has no baseline: the fork child inherits a changed LIMIT, and the tree
    says it cannot tell rather than showing nothing (with the source it says "not portable")."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    (tmp_path / "helper.py").write_text("def show():\n    import __main__\n    print('child sees', __main__.LIMIT)\n")
    (tmp_path / "app.py").write_text(SOURCE_GOES_PROGRAM)
    result = subprocess.run([sys.executable, "-m", "mptrace", "run", "--no-trace-file", "app.py"],
                            capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                            env=environment({"PYTHONPATH": ROOT, "NO_COLOR": "1"}))
    assert result.returncode == 0, result.stderr
    assert "child sees 99" in result.stdout
    assert "state not known (nothing to compare it with): __main__ (its source could not be read)" in result.stderr


def test_the_tree_says_which_modules_were_imported_before_install(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    (tmp_path / "settings.py").write_text("MODE = 'prod'\n\ndef show():\n    print('child sees', MODE)\n")
    (tmp_path / "prog.py").write_text(BEFORE_INSTALL_PROGRAM)
    result = subprocess.run([sys.executable, "prog.py"], capture_output=True, text=True, timeout=120,
                            cwd=str(tmp_path), env=environment({"PYTHONPATH": ROOT}))
    assert result.returncode == 0, result.stderr
    assert "child sees test" in result.stdout
    assert "state not known (nothing to compare it with): imported before install(): settings" in result.stdout


def test_compare_says_what_it_cannot_know_of_module_state():
    """mptrace compare's rows: the changes it knows, then what it cannot tell, never a bare "-" for that."""
    from mptrace import _compare, semconv

    fork_launch = {semconv.STATE_NO_BASELINE: ["__main__", "settings"], semconv.STATE_NOT_PORTABLE: ["app.X"]}
    assert _compare._not_portable(fork_launch) == (
        "app.X; not known: __main__ (its source could not be read); imported before install(): settings")
    assert _compare._not_portable({semconv.STATE_NO_BASELINE: ["settings"]}) == (
        "not known: imported before install(): settings")
    assert _compare._not_portable({}) == _compare.ABSENT
