"""What a traced forkserver child is spared: the structural facts behind its start-up figures.

No timings here (they belong to benchmarks/process_start.py). A forkserver
child is forked from its server, which (started under mptrace) preloads
mptrace's child side: what the server prepares once, before it forks, no child
repeats, and every page a child writes is a copy-on-write fault.
"""

import json
import os
import subprocess
import sys

import pytest

from mptrace.testing import start_methods
from tests.subprocesses import ROOT, environment

pytestmark = pytest.mark.skipif("forkserver" not in start_methods(), reason="no forkserver start method here")

PROGRAMS = os.path.join(ROOT, "tests", "programs")


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    """What the forkserver child of tests/programs/forkserver_child_work.py did (see that program)."""
    result_file = tmp_path_factory.mktemp("forkserver_cost") / "result.json"
    result = subprocess.run([sys.executable, "forkserver_child_work.py", str(result_file)], capture_output=True,
                            text=True, timeout=120, cwd=PROGRAMS, env=environment())
    assert result.returncode == 0 and result.stderr == "", result.stderr
    found = json.loads(result_file.read_text())
    assert found["exitcode"] == 0
    return found


def test_a_forkserver_child_runs_the_loader_its_server_prepared(child):
    """Unpickling the stowaway calls the loader the server defined: nothing to unmarshal and run."""
    assert not child["unmarshalled"]


def test_a_forkserver_child_of_this_interpreter_compiles_no_stowaway(child):
    """Its stowaway is code its parent compiled (compiling cost a child about 0.5 ms): what it runs at
    module level as it unpickles its preparation data is that code (``<mptrace stowaway>``), not source
    (``<string>``)."""
    assert child["compiled"] == ["<mptrace stowaway>"]


def test_a_forkserver_child_of_a_running_server_unpickles_only_a_call_of_the_loader_it_prepared(child):
    """Once the parent knows its server preloaded this mptrace, the stowaway is a call of builtins that ends in
    the server's loader: no code object to unmarshal (about 100 us a child), no module-level code to run."""
    second = child["second"]
    assert second["traced"] and second["exitcode"] == 0
    assert second["compiled"] == [] and not second["unmarshalled"]
    assert "_stowaway:enter_from_server" in second["ran"]
    assert "_child:_activate" in second["ran"]
    assert "_stowaway:enter_from_server" not in child["ran"]  # the first: the server was not running yet


def test_a_forkserver_child_wiring_opentelemetry_runs_the_code_its_server_prepared(child):
    """_otel_child needs OpenTelemetry, which the server does not load: the server finds, reads and unmarshals
    its code once, and a child that wires OpenTelemetry runs that code (importing it cost some 240 us a child)."""
    third = child["third"]
    assert third["exitcode"] == 0
    assert third["otel_child_run_by"] == "_load_otel_child"
    assert "otel_child_run_by" not in child["second"]  # its code used no OpenTelemetry: nothing wired


def test_a_forkserver_child_installs_the_picklers_its_server_built(child):
    """Building a class is among the costliest things a child did; the server builds both picklers once."""
    assert "_channels:channel_pickler" not in child["ran"]


def test_a_forkserver_child_makes_none_of_the_patches_its_server_made(child):
    """_bootstrap, spawn.prepare, the channel picklers and BaseProcess.name are patched once, in the server:
    each class attribute a child sets writes the class's pages and its subclasses'."""
    assert "_child:_patch_for_children" not in child["ran"]
    assert "_child:_failure_property" not in child["ran"]
    assert "_channels:instrument_module" not in child["ran"]


def test_a_forkserver_child_writes_the_records_its_parent_encoded(child):
    """Its spool header and its run span's START come encoded in the carrier (see _child.prebuild_records)."""
    assert "_spool:header_template" not in child["ran"]
    assert "_child:_iso_now" not in child["ran"]
    assert "_litespan:begin_from_template" in child["ran"]


def test_a_forkserver_child_digests_the_environment_its_server_joined(child):
    """Its environment is still the server's: the server sorted and joined it once (see _envcompare)."""
    assert "_envcompare:child_attributes" in child["ran"]
    assert "_envcompare:_joined_environment" not in child["ran"]


def test_a_forkserver_child_takes_the_module_watch_its_server_made(child):
    """Without watch_modules or ignore_modules, every child's watch starts alike: the server makes it once."""
    assert "_modstate:adopt_server_watch" in child["ran"]
    assert "_modstate:__init__" not in child["ran"]  # ModuleWatch's


def test_a_forkserver_childs_module_watch_reads_only_the_applications_modules(child):
    """Not every module of sys.modules (each entry read is a page written): the ones its server did not find
    to be libraries', and those loaded since the fork; the generators of both are still hashed."""
    assert 0 < child["modules_read"] <= 30
    names = [entry.rsplit(":", 1)[0] for entry in child["random_states"]]
    assert "forkserver_child_work.generator" in names  # a module the server loaded
    assert "tests.random_targets.seeded" in names and "tests.random_targets.rng" in names  # one the child loaded


def test_the_modules_since_the_fork_are_those_after_the_servers_last(monkeypatch):
    """Found from the end of sys.modules; a module the server held and the child imported again counts where
    it came back; when the server's last module is gone or replaced, the watch reads them all (None)."""
    import types

    from mptrace import _modstate

    last = next(reversed(sys.modules))
    own = ("__main__", "mptrace_test_again")
    monkeypatch.setattr(_modstate, "_server_modules", (last, sys.modules[last], own))
    assert [name for name, _ in _modstate._modules_since_server()] == ["__main__"]
    for name in ("mptrace_test_added", "mptrace_test_again"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    found = _modstate._modules_since_server()
    assert [name for name, _ in found] == ["__main__", "mptrace_test_added", "mptrace_test_again"]
    assert found[2][1] is sys.modules["mptrace_test_again"]
    monkeypatch.setattr(_modstate, "_server_modules", (last, types.ModuleType(last), own))
    assert _modstate._modules_since_server() is None


def test_a_forkserver_child_is_sent_neither_the_loaders_source_nor_the_bundles_finder():
    """A child of this interpreter is sent the loader compiled, without the source (only another interpreter
    may need to compile it), and a child sent no bundle without the bundle's finder: the preparation data
    went from 18 KB to 8 KB, all of it pickled, piped, read and allocated on the child's start-up path."""
    import pickle

    from mptrace import _stowaway

    carrier = {"tree": {"dir": "/nowhere"}, "rsid": 7, "method": "forkserver"}
    sent = pickle.dumps(_stowaway.Stowaway(carrier, same_interpreter=True))
    assert b"def load(" not in sent and b"Bundled" not in sent and b"pread" not in sent
    assert _stowaway.loader_id().encode() in sent
    assert len(sent) < 6000
    to_another_interpreter = pickle.dumps(_stowaway.Stowaway(carrier, same_interpreter=False))
    assert _stowaway._LOADER_PLAIN.encode() in to_another_interpreter  # its fallback: source it compiles


YOUNG_OBJECTS_AT_FORK = r'''
import gc, os, sys

sys.path.insert(0, sys.argv[1])
from mptrace import _child

class Marker:
    pass

def fork_and_look(markers):
    """Whether the child finds these markers among its young objects (its gen0), as its first collection would."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        young = {id(obj) for obj in gc.get_objects(generation=0)}
        os.write(write, b"1" if any(id(marker) in young for marker in markers) else b"0")
        os._exit(0)
    os.close(write)
    found = os.read(read, 1)
    os.waitpid(pid, 0)
    return found == b"1"

def markers():
    gc.collect()  # a young generation of a few objects: 300 more cannot reach the threshold (700)
    return [Marker() for _ in range(300)]

before = fork_and_look(markers())
_child._collect_young_objects_before_each_fork(os.getpid())
after = fork_and_look(markers())
gc.disable()
disabled = fork_and_look(markers())
gc.enable()
# Another process than the server (a child of it that forks): left alone.
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, b"1" if fork_and_look(markers()) else b"0")
    os._exit(0)
os.close(write)
elsewhere = os.read(read, 1) == b"1"
os.waitpid(pid, 0)
print(before, after, disabled, elsewhere)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_the_fork_server_collects_its_young_objects_before_each_fork():
    """A child inherits the server's young generation and allocation count; a traced child, which allocates a
    few hundred objects before run(), then often collected it and wrote every page that held one. The server
    collects it just before each of its forks: its own, only while the collector is enabled."""
    result = subprocess.run([sys.executable, "-c", YOUNG_OBJECTS_AT_FORK, ROOT], capture_output=True, text=True,
                            timeout=60, env=environment())
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.split() == ["True", "False", "True", "True"]


def test_a_forkserver_child_calls_its_servers_loader_only_when_it_is_the_one_its_parent_would_send(monkeypatch):
    """enter_from_server: the prepared loader when its digest is the parent's; else the source it was sent, run
    as the stowaway runs it; and it never raises (the child then runs untraced)."""
    from mptrace import _stowaway

    calls = []
    namespace = {"loader_id": _stowaway.loader_id(), "place": ("/dir", "/dir/mptrace/__init__.py"),
                 "carrier": {"rsid": 7}, "ran": []}
    monkeypatch.setattr(_stowaway, "prepared_loader", (_stowaway.loader_id(), lambda *args: calls.append(args)))
    assert _stowaway.enter_from_server("ran.append('source')", namespace) is None
    assert calls == [("/dir", "/dir/mptrace/__init__.py", {"rsid": 7}, None)] and namespace["ran"] == []
    monkeypatch.setattr(_stowaway, "prepared_loader", ("another mptrace's", lambda *args: calls.append(args)))
    _stowaway.enter_from_server("ran.append('source')", namespace)
    assert len(calls) == 1 and namespace["ran"] == ["source"]
    monkeypatch.setattr(_stowaway, "prepared_loader", None)
    assert _stowaway.enter_from_server("raise RuntimeError('the loader failed')", namespace) is None

    def failing(*args):
        raise RuntimeError("the prepared loader failed")

    monkeypatch.setattr(_stowaway, "prepared_loader", (_stowaway.loader_id(), failing))
    assert _stowaway.enter_from_server("ran.append('again')", namespace) is None
    assert namespace["ran"] == ["source"]  # not run a second time after a prepared loader that failed


LOAD_PREPARED = r'''
import sys
from importlib.util import find_spec
from mptrace import _child

spec = find_spec("mptrace._otel_child")
_child._server_compiled_otel_child = (spec, compile("raise RuntimeError('broken')", spec.origin, "exec"))
try:
    _child._load_otel_child()
except RuntimeError as error:
    print("raised", error)
print("left in sys.modules", "mptrace._otel_child" in sys.modules)
print("taken once", _child._server_compiled_otel_child is None)
_child._server_compiled_otel_child = (spec, spec.loader.get_code("mptrace._otel_child"))
module = _child._load_otel_child()
import mptrace
print("loaded", module.__name__, module.__file__ == spec.origin, module.__spec__ is spec,
      mptrace._otel_child is module is sys.modules["mptrace._otel_child"], callable(module.wire),
      spec._initializing)
print("again", _child._load_otel_child() is module)
'''


def test_the_servers_prepared_otel_child_loads_as_an_import_would():
    """In sys.modules while its code runs, removed if that raises (the error is the caller's, as an import's
    is), bound in the package, taken only once; then the loaded module is returned."""
    result = subprocess.run([sys.executable, "-c", LOAD_PREPARED], capture_output=True, text=True, timeout=60,
                            env=environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "raised broken", "left in sys.modules False", "taken once True", "loaded mptrace._otel_child True True True "
        "True False", "again True"]
