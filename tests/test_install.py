"""install(), uninstall(), flush(): idempotence, exact restoration, validation."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider

import mptrace
from mptrace._install import PATCH_POINTS, REPLACEMENT_POINTS, SDK_PATCH_POINTS
from mptrace._patching import ABSENT
from mptrace._state import state
from tests.programs import TEST_RESOURCE
from tests import targets
from tests.spans import process_span_names
from tests.subprocesses import ROOT, run_traced


def patched_attributes():
    for module_name, owner_name, attribute, _ in PATCH_POINTS + REPLACEMENT_POINTS + SDK_PATCH_POINTS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        yield owner, attribute


def snapshot():
    """What each patched class or module holds itself (ABSENT: it inherits the attribute)."""
    return {(owner, attribute): vars(owner).get(attribute, ABSENT) for owner, attribute in patched_attributes()}


def test_uninstall_restores_every_original_object():
    before = snapshot()
    mptrace.install(tracer_provider=TracerProvider(resource=TEST_RESOURCE))
    during = snapshot()
    assert all(during[key] is not before[key] for key in before), "some patch point was not patched"
    mptrace.uninstall()
    after = snapshot()
    for key, original in before.items():
        assert after[key] is original, "%s.%s was not restored" % key


def test_install_twice_is_a_no_op(traced, caplog):
    patches = list(state.patches)
    spool_dir = state.tree["dir"]
    mptrace.install(tracer_provider=TracerProvider(resource=TEST_RESOURCE))  # even with another provider
    assert list(state.patches) == patches
    assert state.tree["dir"] == spool_dir
    assert state.root.provider is traced.provider
    assert "install() was called again with another provider" in caplog.text  # which is not silently ignored


def test_uninstall_twice_and_without_install_are_no_ops():
    mptrace.uninstall()
    mptrace.install(tracer_provider=TracerProvider(resource=TEST_RESOURCE))
    mptrace.uninstall()
    mptrace.uninstall()
    assert state.role is None


def test_reinstall_after_uninstall_traces_again(context):
    for _ in range(2):
        from tests.conftest import Traced

        t = Traced()
        mptrace.install(tracer_provider=t.provider)
        try:
            p = context.Process(target=targets.succeed)
            p.start()
            p.join(30)
            assert process_span_names(t.spans()) == ["mp.process", "mp.process.run", "user-work"]
        finally:
            mptrace.uninstall()


def test_children_of_an_uninstrumented_parent_are_untouched(context):
    queue = context.SimpleQueue()
    p = context.Process(target=report_mptrace_role, args=(queue,))
    p.start()
    role = queue.get()
    p.join(30)
    assert role is None


def report_mptrace_role(queue):
    module = sys.modules.get("mptrace._state")
    queue.put(module.state.role if module is not None else None)


def test_install_in_a_child_is_a_no_op(traced, context):
    p = context.Process(target=install_again_in_child)
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert process_span_names(traced.spans()) == ["mp.process", "mp.process.run", "user-work"]


def install_again_in_child():
    mptrace.install()
    targets.succeed()


@pytest.mark.parametrize("options, error, words", [
    ({"colour": "red"}, TypeError, ["'colour'", "spool_dir"]),
    ({"spool_dir": 42}, TypeError, ["'spool_dir'", "42"]),
    ({"spool_dir": "/no/such/dir"}, ValueError, ["'spool_dir'", "/no/such/dir"]),
])
def test_bad_options_name_the_option(options, error, words):
    with pytest.raises(error) as raised:
        mptrace.install(tracer_provider=TracerProvider(resource=TEST_RESOURCE), **options)
    for word in words:
        assert word in str(raised.value)
    assert state.role is None and not list(state.patches)


def test_bad_provider_is_a_type_error():
    with pytest.raises(TypeError, match="tracer_provider"):
        mptrace.install(tracer_provider="not a provider")
    assert state.role is None


@pytest.mark.parametrize("timeout", [-1, "soon", None])
def test_flush_rejects_bad_timeouts(timeout):
    with pytest.raises(ValueError, match="timeout"):
        mptrace.flush(timeout)


def test_spool_dir_option(tmp_path, context):
    mptrace.install(tracer_provider=TracerProvider(resource=TEST_RESOURCE), spool_dir=tmp_path)
    try:
        assert os.path.dirname(state.tree["dir"]) == str(tmp_path)
        assert os.stat(state.tree["dir"]).st_mode & 0o777 == 0o700
    finally:
        mptrace.uninstall()
    assert os.listdir(tmp_path) == []


def run_python(code, env=None, args=()):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
        env=environment, cwd=ROOT)


def test_importing_mptrace_patches_and_loads_nothing():
    result = run_python("""
        import multiprocessing.process, sys
        before = dict(vars(multiprocessing.process.BaseProcess))
        import mptrace
        assert dict(vars(multiprocessing.process.BaseProcess)) == before
        heavy = [m for m in ("wrapt", "opentelemetry", "opentelemetry.sdk") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    assert result.stdout.strip() == "ok", result.stderr


def test_install_without_provider_uses_the_global_one():
    result = run_python("""
        import multiprocessing as mp
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mptrace
        from tests import targets
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        mptrace.install()
        if __name__ == "__main__":
            p = mp.get_context("spawn").Process(target=targets.succeed); p.start(); p.join()
            mptrace.flush()
            print(sorted(s.name for s in exporter.get_finished_spans() if s.name not in ("mp.pickle", "mp.import")))
    """)
    assert result.stdout.strip() == "['mp.process', 'mp.process.run', 'user-work']", result.stderr


def test_install_without_any_provider_builds_one_from_otel_variables():
    result = run_python("""
        import multiprocessing as mp
        from opentelemetry import trace
        import mptrace
        from tests import targets
        mptrace.install()
        with trace.get_tracer("app").start_as_current_span("app-span"):
            p = mp.get_context("fork").Process(target=targets.succeed); p.start(); p.join()
        mptrace.flush()
    """, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "from-env"})
    assert result.returncode == 0, result.stderr
    for name in ("app-span", "mp.process", "mp.process.run", "user-work"):
        assert '"name": "%s"' % name in result.stdout
    assert result.stdout.count('"service.name": "from-env"') == 4


def test_pools_are_traced_though_install_imports_neither(start_method, tmp_path):
    """install() imports neither pool module (concurrent.futures.process would add an exit hook that every
    fork child runs); a program that imports them afterwards still gets both pools traced."""
    result, spans = run_traced(tmp_path, os.path.join(ROOT, "tests", "programs", "pools_imported_late.py"),
                               start_method)
    assert "imported before the program: []" in result.stdout
    assert "[4]" in result.stdout and "[9]" in result.stdout
    pools = [s for s in spans if s["name"] == "mp.pool"]
    assert sorted(s["attributes"].get("mp.pool.type") for s in pools) == ["concurrent.futures.ProcessPoolExecutor",
                                                                          "multiprocessing.pool.Pool"], pools
    assert len([s for s in spans if s["name"] == "mp.task"]) >= 2


def test_a_pool_module_imported_after_uninstall_is_left_alone():
    result = run_python("""
        import sys
        from opentelemetry.sdk.trace import TracerProvider
        import mptrace
        from mptrace._importhook import AfterImportFinder
        mptrace.install(tracer_provider=TracerProvider())
        mptrace.uninstall()
        print("finders:", [f for f in sys.meta_path if isinstance(f, AfterImportFinder)])
        import concurrent.futures.process, multiprocessing.pool
        print("wrapped:", [name for name in vars(concurrent.futures.process.ProcessPoolExecutor)
                           if hasattr(getattr(concurrent.futures.process.ProcessPoolExecutor, name), "__wrapped__")])
    """)
    assert result.returncode == 0, result.stderr
    assert "finders: []" in result.stdout and "wrapped: []" in result.stdout, result.stdout


def test_install_patches_the_start_paths_without_importing_wrapt():
    """wrapt's package imports asyncio, ssl, email and importlib.metadata: 8 MB more for every fork to copy,
    and asyncio's at-fork handler in every fork child. install() patches the start paths with plain
    functions (wrapt's convention, __wrapped__ kept); wrapt comes when a pool module is imported."""
    result = run_python("""
        import multiprocessing, sys
        from multiprocessing.process import BaseProcess
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mptrace
        from tests import targets
        original = vars(BaseProcess)["start"]
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider)
        loaded = [m for m in ("wrapt", "asyncio", "ssl", "importlib.metadata") if m in sys.modules]
        assert not loaded, loaded
        assert vars(BaseProcess)["start"].__wrapped__ is original
        if __name__ == "__main__":
            for method in multiprocessing.get_all_start_methods():
                process = multiprocessing.get_context(method).Process(target=targets.succeed)
                process.start()
                process.join()
                assert process.exitcode == 0
            assert mptrace.flush()
            names = [span.name for span in exporter.get_finished_spans()]
            methods = multiprocessing.get_all_start_methods()
            assert names.count("mp.process") == len(methods) == names.count("mp.process.run"), names
            import multiprocessing.pool
            assert "wrapt" in sys.modules, "the pool module was not patched with wrapt"
            mptrace.uninstall()
            assert vars(BaseProcess)["start"] is original
            print("ok")
    """)
    assert result.stdout.strip() == "ok", result.stderr
