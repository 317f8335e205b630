"""Which modules are the application's: the real paths behind that answer, and a child taking its parent's."""

import json
import os
import subprocess
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptrace import _modstate
from tests.subprocesses import ROOT, environment

PROGRAMS = os.path.join(ROOT, "tests", "programs")

# A directory tree with links in it, as installs make them (site-packages/pkg -> the project's pkg):
# absolute and relative links, to siblings, parents and themselves, and parts that do not exist.
DIRECTORIES = ("a", "a/b", "a/b/c", "x", "x/y", "x/y/z")
LINKS = ("a/link", "a/b/up", "x/y/back", "loop", "a/b/c/dangling")
PARTS = ("a", "b", "c", "x", "y", "z", "link", "up", "back", "loop", "dangling", "missing", ".", "..", "")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("paths"))
    for directory in DIRECTORIES:
        os.makedirs(os.path.join(root, directory))
    return root


@st.composite
def linked_trees_and_paths(draw):
    """Where each link points (absolute or relative, anywhere in the tree or out of it), and paths to resolve."""
    links = {}
    for link in LINKS:
        to = draw(st.sampled_from(DIRECTORIES + LINKS + ("", "missing/part", "..")))
        links[link] = (to, draw(st.booleans()))  # (target, relative?)
    paths = draw(st.lists(st.lists(st.sampled_from(PARTS), min_size=1, max_size=6), min_size=1, max_size=8))
    return links, ["/".join(parts) for parts in paths]


def make_links(root, links):
    for link, (to, relative) in links.items():
        path = os.path.join(root, link)
        if os.path.lexists(path):
            os.remove(path)
        target = os.path.join(root, to)
        os.symlink(os.path.relpath(target, os.path.dirname(path)) if relative else target, path)


@settings(max_examples=400, deadline=None)
@given(linked_trees_and_paths())
def test_a_directory_resolved_from_its_parents_is_its_realpath(tree, plan):
    """Resolved part by part from cached parents (one lstat a directory), the answer is os.path.realpath's,
    with the cache cold or warmed by the other paths in any order."""
    links, paths = plan
    if sys.version_info < (3, 13):  # 3.9-3.12's realpath returns "/rest" for "loop//rest" when loop links to itself
        paths = [path for path in paths if "//" not in path and not path.startswith("/")] or ["a"]
    make_links(tree, links)
    _modstate._real_directories.clear()
    try:
        for path in paths + paths[::-1]:
            absolute = os.path.join(tree, path)
            assert _modstate._real_directory(absolute) == os.path.realpath(absolute), absolute
            module_file = os.path.join(absolute, "mod.py")  # a file's, its directory resolved the same way
            assert _modstate.real_path(module_file) == os.path.realpath(module_file), module_file
            _modstate._real_directories.clear() if len(path) % 2 else None  # cold and warm caches alike
    finally:
        _modstate._real_directories.clear()


SAME_INTERPRETER = _modstate.library_paths_to_carry()


def module_at(name, path):
    module = types.ModuleType(name)
    module.__file__ = path
    return module


@pytest.fixture
def parent_sent():
    """What a parent sent this (pretend) child, restored afterwards."""
    saved = dict(_modstate._parent_library_files), dict(_modstate._library_files)
    yield
    _modstate._parent_library_files, _modstate._library_files = saved


def test_a_child_takes_its_parents_answer_only_for_the_same_file(tmp_path, parent_sent):
    """The parent found ``app_helpers`` at some file to be a library's; in this child a module of that name
    comes from another file, the application's: it is decided by its own file, and watched."""
    own = tmp_path / "app_helpers.py"
    own.write_text("")
    elsewhere = os.path.join(_modstate.library_paths()[0], "app_helpers.py")
    _modstate.adopt_library_files("\0".join(["app_helpers", elsewhere, "lib_b", str(own)]), SAME_INTERPRETER)
    watch = _modstate.ModuleWatch()
    assert watch.watches("app_helpers", module_at("app_helpers", str(own))) is True
    # The same file as the parent's: its answer, without looking (own is the application's, yet taken).
    assert watch.watches("lib_b", module_at("lib_b", str(own))) is False


def test_a_module_the_child_includes_is_watched_whatever_its_parent_found(tmp_path, parent_sent):
    path = os.path.join(_modstate.library_paths()[0], "vendored.py")
    _modstate.adopt_library_files("\0".join(["vendored", path]), SAME_INTERPRETER)
    assert _modstate.ModuleWatch(include=("vendored",)).watches("vendored", module_at("vendored", path)) is True
    assert _modstate.ModuleWatch().watches("vendored", module_at("vendored", path)) is False


@pytest.mark.parametrize("carried", [None, "", 7, "odd\0count\0of parts", b"bytes\0path"])
def test_anything_unexpected_from_the_parent_is_ignored(carried, parent_sent):
    _modstate._parent_library_files = {}
    _modstate.adopt_library_files(carried, SAME_INTERPRETER)
    assert _modstate._parent_library_files == {}


def test_a_child_of_another_interpreter_decides_by_itself(parent_sent):
    """Its library paths are another interpreter's: the same file may be the application's there."""
    _modstate._parent_library_files = {}
    other = [["/usr/bin/python3.99"] + _modstate._interpreter()[1:], ["/usr/lib/python3.99"]]
    for carried_paths in (other, None, []):
        _modstate.adopt_library_files("one\0/lib/one.py", carried_paths)
        assert _modstate._parent_library_files == {}
    _modstate.adopt_library_files("one\0/lib/one.py", SAME_INTERPRETER)
    assert _modstate._parent_library_files == {"one": "/lib/one.py"}


def test_what_is_carried_is_every_library_module_found_by_its_file(parent_sent):
    _modstate._library_files = {"one": "/lib/one.py", "two": "/lib/two/__init__.py", "bad\0name": "/lib/x.py"}
    carried = _modstate.library_files_to_carry()
    assert carried == "one\0/lib/one.py\0two\0/lib/two/__init__.py"
    _modstate._library_files["three"] = "/lib/three.py"
    assert _modstate.library_files_to_carry().endswith("\0three\0/lib/three.py")


def library_answers(method, as_file):
    """What the child of tests/programs/library_answers.py found (see there), the program run as a file or -c."""
    program = os.path.join(PROGRAMS, "library_answers.py")
    with open(program) as source:
        command = [program] if as_file else ["-c", source.read()]
    result = subprocess.run([sys.executable] + command + [method], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env=environment())
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["exitcode"] == 0
    return found


def test_a_child_that_runs_the_main_module_again_resolves_no_path_its_parent_resolved(pickled_context):
    """The main module imports OpenTelemetry, which the child imports again: the parent found each of its
    modules to be a library's, and the child takes that answer instead of resolving their directories."""
    import opentelemetry.trace

    found = library_answers(pickled_context.get_start_method(), as_file=True)
    assert "opentelemetry.trace" in found["adopted"]
    package = os.path.dirname(os.path.realpath(opentelemetry.trace.__file__))
    assert not [d for d in found["resolved"] if os.path.realpath(d).startswith(package)], found["resolved"]


def test_a_child_of_a_c_program_is_sent_no_answers(pickled_context):
    """A -c program's child runs no main module again: it would only pay for unpickling the answers."""
    found = library_answers(pickled_context.get_start_method(), as_file=False)
    assert found["adopted"] == []


def test_the_process_start_benchmark_runs_its_program_as_a_file(tmp_path):
    """process_start.py --app: the program as a file that spawn children re-import, every run span arriving
    (one_run checks that, and that every child exited 0)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    try:
        import process_start
    finally:
        sys.path.pop(0)
    (tmp_path / "process_start_target.py").write_text(process_start.TARGET_MODULE)
    assert process_start.one_run("traced", "spawn", 1, 0, str(tmp_path), app=True) > 0
    assert (tmp_path / "app.py").read_text() == process_start.APP_IMPORTS + process_start.PROGRAM
