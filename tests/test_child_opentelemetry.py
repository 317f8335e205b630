"""OpenTelemetry inside children: however the child's code sets it up."""

import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from tests import lazy_otel
from tests.spans import one, parent_of, process_span_names
from tests.subprocesses import ROOT


@pytest.mark.parametrize("first_import", ["api", "sdk"])
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_opentelemetry_imported_lazily_in_the_child(traced, method, first_import, capfd):
    context = multiprocessing.get_context(method)
    queue = context.SimpleQueue()
    target = lazy_otel.work if first_import == "api" else lazy_otel.work_through_the_sdk
    process = context.Process(target=target, args=(queue,))
    process.start()
    loaded_before = queue.get()
    process.join(30)
    assert process.exitcode == 0
    if loaded_before:
        pytest.skip("this child had OpenTelemetry loaded before the target ran")
    spans = traced.spans()
    assert parent_of(spans, one(spans, "lazy-work")).name == "mp.process.run"
    assert "continuing without it" not in capfd.readouterr().err  # no failed attempt on the way


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_pool_task_whose_module_brings_the_opentelemetry_sdk(traced, method, capfd):
    """The worker imports the task's module, and with it OpenTelemetry's SDK, only to run the first task."""
    with multiprocessing.get_context(method).Pool(1) as pool:
        assert pool.apply(lazy_otel.task_through_the_sdk, (21,)) == 42
    spans = traced.spans()
    assert parent_of(spans, one(spans, "lazy-task")).name == "mp.task.run"
    assert "continuing without it" not in capfd.readouterr().err


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_an_executor_task_whose_module_brings_the_opentelemetry_sdk(traced, method, capfd):
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
        assert executor.submit(lazy_otel.task_through_the_sdk, 21).result(60) == 42
    spans = traced.spans()
    assert parent_of(spans, one(spans, "lazy-task")).name == "mp.task.run"
    assert "continuing without it" not in capfd.readouterr().err


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_pool_initializer_that_brings_the_opentelemetry_sdk(traced, method):
    with multiprocessing.get_context(method).Pool(1, initializer=lazy_otel.initializer_through_the_sdk) as pool:
        assert pool.apply(lazy_otel.task_through_the_sdk, (1,)) == 2
    spans = traced.spans()
    assert parent_of(spans, one(spans, "lazy-initializer")).name == "mp.pool.initializer"
    assert parent_of(spans, one(spans, "lazy-task")).name == "mp.task.run"


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
