"""Running whole programs in a fresh interpreter, as the tests need to."""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(variables=None):
    """This environment without any OTEL_* or MPTRACE_* setting, plus ``variables``: what a
    program configured only by the test sees."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MPTRACE_"))}
    clean.update(variables or {})
    return clean


def run_traced(output_dir, script, *args):
    """Run ``script`` as __main__ under mptrace; return (completed process, spans as dicts)."""
    output = os.path.join(str(output_dir), "spans.json")
    result = subprocess.run([sys.executable, "-m", "tests.programs.run_traced", output, str(script), *args],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    with open(output) as f:
        return result, json.load(f)


def eventually(condition, deadline=60.0, interval=0.05):
    """Whether ``condition()`` holds within ``deadline`` seconds (children, watchers and init work at their own
    pace); a condition that never holds fails the test at the deadline, it is not a timing."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(interval)
    return True
