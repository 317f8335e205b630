"""A spawn or forkserver child never depends on how its parent found mptrace.

Each test runs tests/programs/import_paths.py twice, traced and untraced, and
requires the same output: the children start, see the same sys.path and get
the same package from their own ``import mptrace``. Interpreters without
mptrace are a bare venv (no packages at all) or ``-I -S``.
"""

import glob
import json
import pickle
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from mptrace import semconv
from tests.subprocesses import ROOT, environment

PROGRAM = os.path.join(ROOT, "tests", "programs", "import_paths.py")
METHODS = ["spawn", "forkserver"]
# Where this interpreter has OpenTelemetry and wrapt; mptrace itself is there only as an editable
# install's .pth file, which sys.path.insert does not run.
DEPENDENCIES = sysconfig.get_paths()["purelib"]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A venv with nothing installed: no mptrace, no OpenTelemetry."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


@pytest.fixture
def vendor(tmp_path):
    """A copy of mptrace in a folder of its own, as a program that vendors it has."""
    vendor = tmp_path / "vendor"
    shutil.copytree(os.path.join(ROOT, "mptrace"), str(vendor / "mptrace"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return str(vendor)


def run_program(tmp_path, method, *options, python=sys.executable, flags=(), cwd=None, traced=True):
    """(exit code, stdout, stderr, spans): the program run in a clean environment."""
    spans_file = tmp_path / "spans.json"
    env = environment()
    env.pop("PYTHONPATH", None)
    command = [python, *flags, PROGRAM, str(spans_file), method, *options]
    if not traced:
        command.append("--untraced")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                            cwd=str(cwd or tmp_path))
    spans = json.loads(spans_file.read_text()) if traced and spans_file.exists() else []
    return result.returncode, result.stdout, result.stderr, spans


def assert_runs_as_untraced(tmp_path, method, *options, children=1, **how):
    """The traced run prints what the untraced one prints; returns the traced run's spans."""
    untraced = run_program(tmp_path, method, *options, traced=False, **how)
    assert untraced[0] == 0 and untraced[1].count("exit code 0") == children, untraced
    traced = run_program(tmp_path, method, *options, **how)
    assert traced[:2] == untraced[:2]
    assert without_parent_warnings(traced[2]) == untraced[2]
    return traced[3]


def without_parent_warnings(stderr):
    """Leave out what the parent's mptrace logs: with OpenTelemetry added to sys.path by hand, 3.9 counts
    its modules among the program's own and says it watches only the first 64."""
    return "".join(line for line in stderr.splitlines(True) if not line.startswith("mptrace: comparing the state"))


def child_reports(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def assert_child_traced(spans, count=1):
    processes = [s for s in spans if s["name"] == semconv.SPAN_PROCESS]
    runs = [s for s in spans if s["name"] == semconv.SPAN_PROCESS_RUN]
    assert len(processes) == count and len(runs) == 1
    assert runs[0]["parent"] == processes[0]["span_id"]
    assert semconv.CHILD_TRACED not in processes[0]["attributes"]
    return processes


@pytest.mark.parametrize("method", METHODS)
def test_vendored_copy_added_to_sys_path_at_run_time(tmp_path, method, vendor, bare_python):
    spans = assert_runs_as_untraced(tmp_path, method, "--path", vendor, "--path", DEPENDENCIES, python=bare_python)
    assert_child_traced(spans)


@pytest.mark.parametrize("method", METHODS)
def test_vendored_zip_added_to_sys_path_at_run_time(tmp_path, method, vendor, bare_python):
    """As a zipapp carries it: the child loads the package from inside the zip, as the parent did."""
    archive = shutil.make_archive(str(tmp_path / "vendor"), "zip", vendor)
    spans = assert_runs_as_untraced(tmp_path, method, "--path", archive, "--path", DEPENDENCIES, python=bare_python)
    assert_child_traced(spans)


@pytest.mark.parametrize("method", METHODS)
def test_isolated_interpreter(tmp_path, method, vendor):
    """``-I -S``: the children get the flags too, so no site-packages before multiprocessing applies sys.path."""
    spans = assert_runs_as_untraced(tmp_path, method, "--path", vendor, "--path", DEPENDENCIES, flags=("-I", "-S"))
    assert_child_traced(spans)


@pytest.mark.parametrize("shadow", ["clone", "package"])
@pytest.mark.parametrize("method", METHODS)
def test_folder_named_mptrace_in_the_current_directory(tmp_path, method, shadow):
    """A spawn child's interpreter starts with the current directory on sys.path: it never imports the folder."""
    work = tmp_path / "work"
    folder = work / "mptrace"
    folder.mkdir(parents=True)
    if shadow == "clone":  # a clone of this repository: a namespace package when imported
        (folder / "README.md").write_text("not the package\n")
        (folder / "mptrace").mkdir()
    else:
        (folder / "__init__.py").write_text("raise ImportError('this folder is not mptrace')\n")
    spans = assert_runs_as_untraced(tmp_path, method, cwd=work)
    assert_child_traced(spans)


@pytest.mark.parametrize("method", METHODS)
def test_set_executable_without_mptrace(tmp_path, method, bare_python):
    """The child's interpreter has no mptrace: it loads the parent's, which its own ``import mptrace`` then gives.

    Untraced, that import fails there (the parent's mptrace is an editable
    install, whose finder only site.py sets up); everything else is the same.
    """
    untraced = run_program(tmp_path, method, "--executable", bare_python, traced=False)
    traced = run_program(tmp_path, method, "--executable", bare_python)
    assert traced[0] == untraced[0] == 0 and traced[2] == untraced[2] == ""
    assert [line for line in traced[1].splitlines() if not line.startswith("{")] == ["exit code 0"]
    [untraced_child], [traced_child] = child_reports(untraced[1]), child_reports(traced[1])
    assert traced_child["sys_path"] == untraced_child["sys_path"]
    assert "No module named 'mptrace'" in untraced_child["mptrace"]
    assert traced_child["mptrace"] == os.path.join(ROOT, "mptrace", "__init__.py")
    assert_child_traced(traced[3])


@pytest.fixture(scope="module")
def other_python():
    """An interpreter of another Python version (another bytecode), without mptrace; skip if there is none."""
    beside_this_one = os.path.join(os.path.dirname(sys.base_prefix), "*", "bin", "python3.*")  # pyenv's layout
    candidates = sorted(glob.glob(beside_this_one)) + [shutil.which("python3.%d" % minor) for minor in range(9, 15)]
    for command in filter(None, candidates):
        if not re.fullmatch(r"python3\.\d+", os.path.basename(command)):  # not python3.10-gdb.py, say
            continue
        try:
            found = subprocess.run([command, "-I", "-c", "import sys; print(sys.version_info[:2] >= (3, 9), "
                                    "sys.version_info[:2] != %r, sys.executable)" % (tuple(sys.version_info[:2]),)],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):  # a dangling link, an interpreter that hangs
            continue
        if found.returncode == 0 and found.stdout.startswith("True True "):
            return found.stdout.split(" ", 2)[2].strip()
    pytest.skip("no interpreter of another Python version here")


def test_a_fork_server_of_another_python_version(tmp_path, other_python):
    """The parent sends its compiled stowaway only to a child it knows runs its own interpreter (see
    _stowaway.child_reads_this_bytecode): a fork server's child of another version gets source, and is
    traced all the same. (A spawn child of another version fails untraced too: the parent's sys.path it
    takes holds the parent's standard library.)"""
    traced = run_program(tmp_path, "forkserver", "--executable", other_python)
    assert traced[0] == 0 and traced[2] == "", traced[2]
    assert [line for line in traced[1].splitlines() if not line.startswith("{")] == ["exit code 0"]
    assert_child_traced(traced[3])


@pytest.mark.parametrize("method", METHODS)
def test_child_that_cannot_load_mptrace_runs_untraced_and_the_parent_says_so(tmp_path, method, vendor):
    """The vendored copy goes away after a first child: the second cannot load the parent's mptrace.

    It must not load another one either (here the editable install its own
    ``import mptrace`` finds), nor fail: it runs untraced, and its mp.process says why.
    """
    spans = assert_runs_as_untraced(tmp_path, method, "--path", vendor, "--vanish", children=2)
    processes = [s for s in spans if s["name"] == semconv.SPAN_PROCESS]
    runs = [s for s in spans if s["name"] == semconv.SPAN_PROCESS_RUN]
    assert len(processes) == 2 and len(runs) == 1
    traced, untraced = sorted(processes, key=lambda s: s["span_id"] != runs[0]["parent"])
    assert semconv.CHILD_TRACED not in traced["attributes"]
    assert untraced["attributes"][semconv.CHILD_TRACED] is False
    reason = untraced["attributes"][semconv.CHILD_UNTRACED_REASON]
    assert os.path.join(vendor, "mptrace") in reason
    assert untraced["attributes"][semconv.EXITCODE] == 0


UNPICKLE = '''
import json, pickle, sys
path_before = list(sys.path)
with open(sys.argv[1], "rb") as f:
    data = pickle.load(f)
child = sys.modules.get("mptrace._child")
print(json.dumps({
    "data": data, "sys_path_unchanged": sys.path == path_before,
    "mptrace": getattr(sys.modules.get("mptrace"), "__file__", None),
    "modules": sorted(name for name in sys.modules if name.partition(".")[0] == "mptrace"),
    "activated": child is not None and child._activated is not None,
}))
'''


def unpickle_a_stowaway(bare_python, tmp_path, server_has_loader=False):
    """Unpickle a Stowaway in an isolated interpreter without mptrace; what it saw after, as a dict."""
    from mptrace import _stowaway

    stowaway = tmp_path / "stowaway.pickle"
    sent = _stowaway.Stowaway({"tree": {"dir": str(tmp_path)}, "rsid": 7}, server_has_loader=server_has_loader)
    stowaway.write_bytes(pickle.dumps({"mptrace": sent}))
    result = subprocess.run([bare_python, "-I", "-S", "-c", UNPICKLE, str(stowaway)], capture_output=True, text=True,
                            cwd=str(tmp_path), env=environment(), timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout)
    assert report["data"] == {"mptrace": None} and report["sys_path_unchanged"]
    return report


@pytest.mark.parametrize("bytecode", ["compiled", "source", "the server's"])
def test_unpickling_the_stowaway_loads_the_parents_mptrace(tmp_path, bare_python, bytecode, monkeypatch):
    """In an interpreter without mptrace; from source when the child's bytecode differs from the parent's, and
    when the stowaway calls the loader of a fork server that turns out to hold no mptrace (its preload failed)."""
    from mptrace import _stowaway

    if bytecode == "source":
        not_code = (b"not code", b"\0\0\r\n")
        monkeypatch.setattr(_stowaway, "_compiled", {False: not_code, True: not_code})
    report = unpickle_a_stowaway(bare_python, tmp_path, server_has_loader=bytecode == "the server's")
    assert report["mptrace"] == os.path.join(ROOT, "mptrace", "__init__.py") and report["activated"]
    assert not list(tmp_path.glob("*" + _stowaway.NOTE_SUFFIX))


def test_a_child_that_cannot_load_mptrace_takes_back_what_it_loaded_and_leaves_a_note(tmp_path, bare_python, vendor,
                                                                                       monkeypatch):
    """The package is there but fails to import (here: a module it needs is broken): nothing of it stays."""
    from mptrace import _stowaway

    with open(os.path.join(vendor, "mptrace", "_child.py"), "a") as broken:
        broken.write("\nraise RuntimeError('broken on purpose')\n")
    monkeypatch.setattr(_stowaway, "_place", (vendor, os.path.join(vendor, "mptrace", "__init__.py")))
    report = unpickle_a_stowaway(bare_python, tmp_path)
    assert report["modules"] == [] and not report["activated"]
    assert _stowaway.take_note(str(tmp_path), 7) == "RuntimeError: broken on purpose"
