"""OpenTelemetry inside children: however the child's code sets it up."""

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from tests import lazy_otel
from tests.spans import one, parent_of, process_span_names
from tests.subprocesses import ROOT


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_opentelemetry_imported_lazily_in_the_child(traced, method):
    context = multiprocessing.get_context(method)
    queue = context.SimpleQueue()
    process = context.Process(target=lazy_otel.work, args=(queue,))
    process.start()
    loaded_before = queue.get()
    process.join(30)
    assert process.exitcode == 0
    if loaded_before:
        pytest.skip("this child had OpenTelemetry loaded before the target ran")
    spans = traced.spans()
    assert parent_of(spans, one(spans, "lazy-work")).name == "mp.process.run"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_provider_the_main_module_sets_up_does_not_export_from_children(method):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "programs", "own_provider.py"), method],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    memory_line = [line for line in result.stdout.splitlines() if line.startswith("MEMORY ")]
    assert process_span_names(json.loads(memory_line[0][len("MEMORY "):])) == [
        "child-work", "mp.process", "mp.process.run"]
    # The parent's console exporter prints each span once; the child printed none itself.
    assert result.stdout.count('"name": "child-work"') == 1, result.stdout
