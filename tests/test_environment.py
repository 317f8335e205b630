"""install() with no provider: an SDK provider from the standard OTEL_* variables."""

import socket
import subprocess
import sys
import textwrap

import pytest

from mptrace import ConfigurationError, _environment
from tests.subprocesses import ROOT, environment

BAD_VALUES = [
    ({"OTEL_TRACES_EXPORTER": "jaeger-thrift"}, "OTEL_TRACES_EXPORTER", "jaeger-thrift"),
    ({"OTEL_TRACES_EXPORTER": "none,console"}, "OTEL_TRACES_EXPORTER", "none,console"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_EXPORTER": "otlp"},
     "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://:4318"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://:4318"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:port"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port"),
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER", "sometimes"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG", "1.5"),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
     "OTEL_TRACES_SAMPLER_ARG", "half"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "team=core,lonely"}, "OTEL_RESOURCE_ATTRIBUTES", "lonely"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "=no-key"}, "OTEL_RESOURCE_ATTRIBUTES", "=no-key"),
]

OTEL_VARIABLES = ["OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                  "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER",
                  "OTEL_TRACES_SAMPLER_ARG", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED"]

# Makes the OTLP exporter packages impossible to import, as if not installed.
WITHOUT_OTLP = textwrap.dedent("""
    import sys

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.startswith("opentelemetry.exporter.otlp"):
                raise ModuleNotFoundError("No module named %r" % name, name=name)

    sys.meta_path.insert(0, NotInstalled())
""")


@pytest.fixture
def clean_environment(monkeypatch):
    for variable in OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.fixture
def build():
    """_environment.build(), its providers shut down after the test (their batch threads must not outlive it)."""
    built = []

    def build_and_keep():
        configured = _environment.build()
        built.append(configured.provider)
        return configured

    yield build_and_keep
    for provider in built:
        provider.shutdown()


@pytest.mark.parametrize("env, variable, value", BAD_VALUES, ids=[v for _, v, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_value(clean_environment, build, env, variable, value):
    for name, setting in env.items():
        clean_environment.setenv(name, setting)
    with pytest.raises(ConfigurationError) as raised:
        build()
    message = str(raised.value)
    assert variable in message and repr(value) in message and "\n" not in message


def test_otel_sdk_disabled_must_be_true_or_false(clean_environment):
    clean_environment.setenv("OTEL_SDK_DISABLED", "yes please")
    with pytest.raises(ConfigurationError, match="OTEL_SDK_DISABLED.*'yes please'"):
        _environment.sdk_disabled()


def test_the_standard_variables_shape_the_provider(clean_environment, build):
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_environment.setenv("OTEL_SERVICE_NAME", "billing")
    clean_environment.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=core,region=eu%2Dwest")
    clean_environment.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    clean_environment.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    configured = build()
    attributes = configured.provider.resource.attributes
    assert (attributes["service.name"], attributes["team"], attributes["region"]) == ("billing", "core", "eu-west")
    assert "0.25" in configured.provider.sampler.get_description()
    assert [type(e).__name__ for e in configured.exporters] == ["ConsoleSpanExporter"]
    assert configured.destinations == ["the console (standard output)"]


@pytest.mark.parametrize("protocol, expected", [
    ("grpc", "http://collector:4317 (OTLP/gRPC)"),
    ("http/protobuf", "http://collector:4317/v1/traces (OTLP/HTTP)"),
])
def test_otlp_follows_the_protocol_variable(clean_environment, build, protocol, expected):
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "otlp")
    clean_environment.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    clean_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    configured = build()
    module = type(configured.exporters[0]).__module__
    assert module.startswith("opentelemetry.exporter.otlp.proto.%s" % ("grpc" if protocol == "grpc" else "http"))
    assert configured.destinations == [expected]


def run_python(code, env, timeout=60):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=environment(env))


PROGRAM = textwrap.dedent("""
    import multiprocessing, mptrace
    from mptrace._state import state
    from tests import targets
    if __name__ == "__main__":
        mptrace.install()
        print("patched:", bool(list(state.patches)))
        child = multiprocessing.get_context("spawn").Process(target=targets.succeed)
        child.start()
        child.join()
        print("exitcode:", child.exitcode)
""")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_value_stops_install_with_that_one_line():
    result = run_python(PROGRAM, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_EXPORTER": "otlp"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "mptrace.ConfigurationError: OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got 'http/json' "
        "(the Python OTLP exporters do not send JSON)")


def test_with_nothing_configured_it_says_once_where_spans_go():
    result = run_python(PROGRAM, {"OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    assert result.returncode == 0, result.stderr
    assert "exitcode: 0" in result.stdout
    said = [line for line in result.stderr.splitlines() if "mptrace:" in line]
    assert len(said) == 1 and "http://localhost:4317 (OTLP/gRPC)" in said[0] and "OTEL_TRACES_EXPORTER" in said[0]


def test_without_the_otlp_extra_nothing_configured_warns_and_the_program_runs():
    result = run_python(WITHOUT_OTLP + PROGRAM, {})
    assert result.returncode == 0, result.stderr
    assert "patched: True" in result.stdout and "exitcode: 0" in result.stdout
    said = [line for line in result.stderr.splitlines() if "mptrace:" in line]
    assert len(said) == 1 and "spans are not exported" in said[0] and "pip install 'mptrace[otlp]'" in said[0]


def test_asking_for_otlp_without_the_extra_names_the_extra():
    result = run_python(WITHOUT_OTLP + PROGRAM, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mptrace.ConfigurationError: OTEL_TRACES_EXPORTER=otlp") and "mptrace[otlp]" in last


def test_otel_sdk_disabled_means_no_tracing_and_no_patches():
    result = run_python(PROGRAM, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})
    assert result.returncode == 0, result.stderr
    assert "patched: False" in result.stdout and "exitcode: 0" in result.stdout
    assert '"name"' not in result.stdout  # the console exporter printed no span


def test_the_console_exporter_prints_every_process_s_spans():
    result = run_python(PROGRAM, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "console-test"})
    assert result.returncode == 0, result.stderr
    for name in ("mp.process", "mp.process.run", "user-work"):
        assert '"name": "%s"' % name in result.stdout, result.stdout
    assert "console-test" in result.stdout


def test_an_always_off_sampler_exports_nothing_from_any_process():
    result = run_python(PROGRAM, {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"})
    assert result.returncode == 0, result.stderr
    assert "exitcode: 0" in result.stdout and '"name"' not in result.stdout


def test_an_application_provider_is_used_as_it_is():
    code = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        import mptrace
        from mptrace._state import state
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        mptrace.install()
        print("same:", state.root.provider is provider)
    """)
    result = run_python(code, {"OTEL_TRACES_EXPORTER": "console"})
    assert result.returncode == 0, result.stderr
    assert "same: True" in result.stdout and "mptrace:" not in result.stderr


def test_a_dead_backend_is_reported_once_not_per_batch():
    program = textwrap.dedent("""
        import multiprocessing, mptrace
        from tests import targets
        if __name__ == "__main__":
            mptrace.install()
            for _ in range(5):  # five batches, each failing
                child = multiprocessing.get_context("fork").Process(target=targets.succeed)
                child.start()
                child.join()
                mptrace.flush(3)
    """)
    result = run_python(program, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:%d" % closed_port()}, timeout=90)
    assert result.returncode == 0, result.stderr
    exporter_lines = [line for line in result.stderr.splitlines() if "export" in line.lower()]
    assert len(exporter_lines) == 1, result.stderr + "\n" + str(exporter_lines)
