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
    """Every patch point that applies here: a replacement point whose factory gives back the original does
    not (multiprocessing.util._exit_function from Python 3.13, see _child.exit_function_hook)."""
    for module_name, owner_name, attribute, factory in PATCH_POINTS + REPLACEMENT_POINTS + SDK_PATCH_POINTS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        if callable(factory) and factory(getattr(owner, attribute)) is getattr(owner, attribute):
            continue
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


# What a program that starts processes by fork alone never needs, and install() used to load for it: the other
# start methods, the channels (with socket, selectors, _multiprocessing...), tempfile and shutil (with bz2 and lzma,
# shared libraries), and mptrace's pool side. Every module more in the root makes every fork slower.
NOT_FOR_FORK_ALONE = ("multiprocessing.spawn", "multiprocessing.forkserver", "multiprocessing.connection",
                      "multiprocessing.queues", "multiprocessing.resource_tracker", "runpy", "tempfile", "shutil",
                      "bz2", "lzma", "mptrace._tasks", "mptrace._pool", "mptrace._executor", "mptrace._envdiff",
                      "mptrace._spanparent")


def test_a_fork_only_program_loads_no_other_start_method_nor_channel(tmp_path):
    result = run_python("""
        import multiprocessing, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mptrace
        from tests import targets
        NOT_FOR_FORK_ALONE = %r
        before = [m for m in NOT_FOR_FORK_ALONE if m in sys.modules]
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider, spool_dir=%r)
        process = multiprocessing.get_context("fork").Process(target=targets.succeed)
        process.start()
        process.join()
        assert process.exitcode == 0
        assert mptrace.flush()
        print("loaded:", [m for m in NOT_FOR_FORK_ALONE if m in sys.modules and m not in before])
        print(sorted(span.name for span in exporter.get_finished_spans()))
    """ % (NOT_FOR_FORK_ALONE, str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stdout, result.stdout
    assert "['mp.process', 'mp.process.run', 'user-work']" in result.stdout, result.stdout


LATE_MODULES = ("multiprocessing.spawn", "multiprocessing.forkserver", "multiprocessing.connection",
                "multiprocessing.queues")


def test_start_method_and_channel_modules_imported_after_install_are_patched_then_and_restored():
    """install() leaves spawn, forkserver, connection and queues to the program: each is patched as it is
    imported, every start method is traced from its first start, and uninstall() undoes these patches too."""
    result = run_python("""
        import multiprocessing, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mptrace
        from tests import targets
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider)
        if __name__ == "__main__":
            print("loaded at install:", [m for m in %r if m in sys.modules])
            for method in ("spawn", "forkserver"):  # each imports its module now
                process = multiprocessing.get_context(method).Process(target=targets.succeed)
                process.start()
                process.join()
                assert process.exitcode == 0
            queue = multiprocessing.get_context("fork").Queue()
            queue.put([1, 2, 3])
            assert queue.get(timeout=30) == [1, 2, 3]
            sender, receiver = multiprocessing.Pipe()
            sender.send("x")
            assert receiver.recv() == "x"
            assert mptrace.flush()
            names = [span.name for span in exporter.get_finished_spans()]
            print("spans:", names.count("mp.process"), names.count("mp.process.run"), names.count("user-work"))
            stats = mptrace.stats()
            print("pickled:", stats.get("mp.pickle.queue.count", 0) >= 1, stats.get("mp.pickle.connection.count", 0) >= 1)
            from multiprocessing import connection, forkserver, queues, reduction, spawn

            def patched():
                return [hasattr(vars(spawn)["get_preparation_data"], "__wrapped__"),
                        hasattr(vars(forkserver)["ensure_running"], "__wrapped__"),
                        hasattr(vars(forkserver.ForkServer)["ensure_running"], "__wrapped__"),
                        hasattr(vars(connection._ConnectionBase)["__init__"], "__wrapped__"),
                        connection._ForkingPickler is not reduction.ForkingPickler,
                        queues._ForkingPickler is not reduction.ForkingPickler,
                        vars(queues.Queue)["_reset"].__qualname__ != "Queue._reset"]

            print("patched:", patched())
            mptrace.uninstall()
            print("after uninstall:", patched())
    """ % (LATE_MODULES,))
    assert result.returncode == 0, result.stderr
    assert "loaded at install: []" in result.stdout, result.stdout
    assert "spans: 2 2 2" in result.stdout, result.stdout
    assert "pickled: True True" in result.stdout, result.stdout
    assert "patched: [True, True, True, True, True, True, True]" in result.stdout, result.stdout
    assert "after uninstall: [False, False, False, False, False, False, False]" in result.stdout, result.stdout


def test_a_start_method_module_imported_after_uninstall_is_left_alone():
    result = run_python("""
        import sys
        from opentelemetry.sdk.trace import TracerProvider
        import mptrace
        from mptrace._importhook import AfterImportFinder
        mptrace.install(tracer_provider=TracerProvider())
        print("loaded at install:", [m for m in %r if m in sys.modules])
        mptrace.uninstall()
        print("finders:", [f for f in sys.meta_path if isinstance(f, AfterImportFinder)])
        from multiprocessing import connection, forkserver, queues, reduction, spawn
        print("patched:", [hasattr(spawn.get_preparation_data, "__wrapped__"),
                           hasattr(forkserver.ensure_running, "__wrapped__"),
                           hasattr(connection._ConnectionBase.__init__, "__wrapped__"),
                           connection._ForkingPickler is not reduction.ForkingPickler,
                           queues._ForkingPickler is not reduction.ForkingPickler])
    """ % (LATE_MODULES,))
    assert result.returncode == 0, result.stderr
    assert "loaded at install: []" in result.stdout, result.stdout
    assert "finders: []" in result.stdout and "patched: [False, False, False, False, False]" in result.stdout, \
        result.stdout


def test_a_spawn_child_that_starts_processes_patches_a_channel_module_it_imports_later(tmp_path):
    """A spawn child waits for its channel modules with callbacks of its own; once it starts a process it
    waits for them with install()'s patches too, and both run when its code imports one."""
    program = tmp_path / "late_connection.py"  # a file: the spawn child imports its target from it
    program.write_text(textwrap.dedent("""
        import multiprocessing, sys
        from opentelemetry.sdk.trace import TracerProvider
        import mptrace
        from tests import targets
        mptrace.install(tracer_provider=TracerProvider())

        def start_then_import_connection():
            process = multiprocessing.get_context("fork").Process(target=targets.succeed)
            process.start()
            process.join()
            loaded = "multiprocessing.connection" in sys.modules
            from multiprocessing import connection, reduction
            print("child:", loaded, hasattr(connection._ConnectionBase.__init__, "__wrapped__"),
                  connection._ForkingPickler is not reduction.ForkingPickler, flush=True)

        if __name__ == "__main__":
            process = multiprocessing.get_context("spawn").Process(target=start_then_import_connection)
            process.start()
            process.join()
            assert process.exitcode == 0
    """))
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert "child: False True True" in result.stdout, (result.stdout, result.stderr)
