"""The interpreter the start-up benchmarks run their arms with (benchmarks/arms_python.py).

An editable install of mptrace (the README's) loads its finder, and pathlib, re
and more with it, at every interpreter's start-up: in every spawn child of every
arm, mptrace's or not. Measured so, the spawn baseline is longer by some 6-12 ms
and mptrace's share looks smaller than an installed mptrace's is.
"""

import json
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
try:
    import arms_python
finally:
    sys.path.remove(BENCHMARKS)

# What the arms' interpreter says of itself at start-up (mptrace comes from the checkout, on PYTHONPATH).
REPORT = """
import json, sys, sysconfig
import opentelemetry.sdk.trace
import mptrace
print(json.dumps({
    "finders": [name for name in sys.modules if "editable" in name and "mptrace" in name],
    "site": sysconfig.get_paths()["purelib"],
    "sdk": opentelemetry.sdk.trace.__file__,
    "mptrace": mptrace.__file__,
}))
"""


def test_the_arms_run_without_an_editable_mptrace_and_find_their_libraries_installed(tmp_path):
    editable = arms_python.editable_mptrace_files(arms_python.site_directories())
    if not editable:
        pytest.skip("mptrace is not installed editable here: the arms run this interpreter")
    python = arms_python.arms_python(str(tmp_path))
    assert python != sys.executable
    root = os.path.dirname(BENCHMARKS)
    done = subprocess.run([python, "-c", REPORT], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=root))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["finders"] == [], "the arms' interpreter loaded mptrace's editable finder at start-up"
    # In a site-packages directory of the interpreter itself, as an installed package is: mptrace tells the
    # application's modules from libraries by that, and watches the application's.
    assert os.path.realpath(found["sdk"]).startswith(os.path.realpath(found["site"]) + os.sep)
    assert os.path.realpath(found["mptrace"]) == os.path.realpath(os.path.join(root, "mptrace", "__init__.py"))


def test_an_interpreter_without_an_editable_mptrace_runs_the_arms_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(arms_python, "site_directories", lambda: [str(tmp_path)])
    assert arms_python.arms_python(str(tmp_path)) == sys.executable
    (tmp_path / "__editable__.mptrace-0.1.0.pth").write_text("import nothing\n")
    assert arms_python.editable_mptrace_files([str(tmp_path)]) == [str(tmp_path / "__editable__.mptrace-0.1.0.pth")]
