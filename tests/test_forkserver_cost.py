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
