"""A spawn child loads mptrace's modules from its parent's bundle (see mptrace/_bundle.py).

The structural facts behind the spawn figures of benchmarks/process_start.py (no timings here): each module
a child imports through the import system costs it some 100 us beyond its code.
"""

import logging
import multiprocessing
import os

import pytest

from mptrace import _bundle, _stowaway
from mptrace._state import state
from mptrace.testing import start_methods
from tests import targets

pytestmark = pytest.mark.skipif("spawn" not in start_methods(), reason="no spawn start method here")

MPTRACE = os.path.dirname(os.path.abspath(_bundle.__file__))


def _assert_from_the_bundle(found, serving):
    modules, _ = found, serving
    assert set(modules) >= {"mptrace", "mptrace._child", "mptrace._spool"}
    for name, (loader, path) in modules.items():
        assert name in _bundle.CHILD_SIDE, "%s was loaded before the target but is not in the bundle: %s" % (name, sorted(set(modules) - set(_bundle.CHILD_SIDE)))
        assert loader == "Bundled", (name, loader)
        assert os.path.dirname(path) == MPTRACE  # the module's own source file, as an import gives
        assert path.endswith(("__init__.py",) if name == "mptrace" else (name.rpartition(".")[2] + ".py",))
    assert serving == [], "the bundle is still served when the target runs"


def _run_span(spans):
    runs = [span for span in spans if span.name == "mp.process.run"]
    assert len(runs) == 1 and runs[0].status.is_ok, runs
    return runs[0]


def test_a_spawn_child_loads_every_module_of_mptrace_from_the_bundle(traced):
    """A child with a queue and an argument whose pickling hook runs: what it loads before its target."""
    context = multiprocessing.get_context("spawn")
    outbox = context.SimpleQueue()
    process = context.Process(target=targets.report_mptrace_modules, args=(outbox, targets.Dropping()))
    process.start()
    found, serving = outbox.get()
    process.join()
    assert process.exitcode == 0
    _assert_from_the_bundle(found, serving)
    assert "mptrace._fingerprint" in found and "mptrace._channels" in found  # the argument, the queue
    _run_span(traced.spans())


def test_a_spawn_pool_worker_loads_every_module_of_mptrace_from_the_bundle(traced):
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=targets.note_mptrace_modules) as pool:
        found, serving = pool.apply(targets.noted_mptrace_modules, (0,))
    _assert_from_the_bundle(found, serving)
    assert "mptrace._worker" in found


def test_one_bundle_serves_the_whole_tree(traced):
    """Written once, at the first spawn start; a spawn child that starts a spawn child of its own hands it the
    same bundle, whose modules the grandchild loads too."""
    context = multiprocessing.get_context("spawn")
    outbox = context.SimpleQueue()
    for _ in range(2):
        process = context.Process(target=targets.start_spawn_grandchild_reporting_modules, args=(outbox,))
        process.start()
        found, serving = outbox.get()
        process.join()
        assert process.exitcode == 0
        _assert_from_the_bundle(found, serving)
    assert os.listdir(state.tree["dir"]).count(os.path.basename(_bundle.for_children(state.tree["dir"]))) == 1
    assert [name for name in os.listdir(state.tree["dir"]) if name.endswith((_bundle.SUFFIX, ".partial"))] == [
        os.path.basename(_bundle.for_children(state.tree["dir"]))]
    spans = traced.spans()
    assert len([span for span in spans if span.name == "mp.process.run"]) == 4


def test_a_child_whose_bundle_cannot_be_read_imports_mptrace_as_usual(traced):
    """A damaged bundle is not served (it is never half used): the child is traced, from the source files."""
    context = multiprocessing.get_context("spawn")
    path = _bundle.for_children(state.tree["dir"])
    with open(path, "r+b") as bundle:
        bundle.write(b"999999\n")  # the index's length: longer than the file
    outbox = context.SimpleQueue()
    process = context.Process(target=targets.report_mptrace_modules, args=(outbox,))
    process.start()
    found, serving = outbox.get()
    process.join()
    assert process.exitcode == 0
    assert {loader for loader, _ in found.values()} == {"SourceFileLoader"}
    assert serving == []
    _run_span(traced.spans())


def test_a_child_of_another_interpreter_gets_no_bundle(traced, monkeypatch):
    """The bundle is bytecode: a child that runs another interpreter (set_executable) imports the sources."""
    carrier = {"method": "spawn", "tree": {"dir": state.tree["dir"]}}
    assert _stowaway.Stowaway(carrier, same_interpreter=False)._bundle() is None
    assert _stowaway.Stowaway(dict(carrier, method="forkserver"), same_interpreter=True)._bundle() is None
    assert _stowaway.Stowaway(carrier, same_interpreter=True)._bundle() == _bundle.for_children(state.tree["dir"])


def test_when_mptrace_cannot_be_sent_the_child_starts_untraced(traced, monkeypatch, caplog):
    """Pickling the stowaway failing inside mptrace is logged; the start goes on and the child runs as
    without mptrace."""
    def broken():
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(_stowaway, "_place_of_mptrace", broken)
    context = multiprocessing.get_context("spawn")
    outbox = context.SimpleQueue()
    with caplog.at_level(logging.WARNING, logger="mptrace"):
        process = context.Process(target=targets.report_mptrace_modules, args=(outbox,))
        process.start()
        found, _ = outbox.get()
        process.join()
    assert process.exitcode == 0
    assert "sending mptrace to a spawn child failed" in caplog.text
    assert "mptrace._child" not in found


def test_a_module_is_served_only_while_its_source_is_the_one_bundled(tmp_path):
    """As an import checks a .pyc against its source: a source changed or gone since is imported as usual."""
    import marshal
    import sys

    package = tmp_path / "mptrace"
    package.mkdir()
    sources = {"mptrace": package / "__init__.py", "mptrace._a": package / "_a.py"}
    codes = {}
    for name, source in sources.items():
        source.write_text("VALUE = %r\n" % name)
        stat = os.stat(str(source))
        codes[name] = (str(source), marshal.dumps(compile(source.read_text(), str(source), "exec")),
                       int(stat.st_mtime), stat.st_size)
    path = _bundle._write(str(tmp_path / "a.bundle"), codes)
    loader = {}
    exec(_stowaway._LOADER_FUNCTIONS, loader)
    finder = loader["serve_bundle"](path, str(sources["mptrace"]))
    try:
        assert finder is not None and sys.meta_path[0] is finder
        assert finder.find_spec("mptrace._a").origin == str(sources["mptrace._a"])
        assert finder.find_spec("mptrace._b") is None
        sources["mptrace._a"].write_text("VALUE = 'changed'\n")
        assert finder.find_spec("mptrace._a") is None
        sources["mptrace._a"].unlink()
        assert finder.find_spec("mptrace._a") is None
        assert finder.find_spec("mptrace") is not None
        assert loader["serve_bundle"](path, "/elsewhere/mptrace/__init__.py") is None  # another package's
    finally:
        finder.stop()


def test_the_bundle_takes_a_current_pyc_as_it_is_and_fixes_where_its_code_says_it_came_from(tmp_path):
    """The parent copies a .pyc's code without unmarshalling it when the .pyc matches its source (as an import
    checks it), else compiles; the child gives the code its source's path, as an import does for a .pyc
    compiled elsewhere (a vendored copy with its __pycache__)."""
    import importlib.util
    import py_compile

    package = tmp_path / "mptrace"
    package.mkdir()
    source = package / "__init__.py"
    source.write_text("def where():\n    return where.__code__.co_filename\n")
    pyc = py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)),
                             dfile="/elsewhere/mptrace/__init__.py", doraise=True)
    with open(pyc, "rb") as compiled:
        assert _bundle._current_bytecode(str(source), os.stat(str(source))) == compiled.read()[16:]
    stat = os.stat(str(source))
    path = _bundle._write(str(tmp_path / "b.bundle"), {
        "mptrace": (str(source), _bundle._current_bytecode(str(source), stat), int(stat.st_mtime), stat.st_size)})
    loader = {}
    exec(_stowaway._LOADER_FUNCTIONS, loader)
    finder = loader["serve_bundle"](path, str(source))
    try:
        module = importlib.util.module_from_spec(finder.find_spec("mptrace"))
        finder.exec_module(module)
        assert module.where() == str(source)
    finally:
        finder.stop()
    source.write_text("def where():\n    return 'changed'\n")
    assert _bundle._current_bytecode(str(source), os.stat(str(source))) is None
