"""OTLP/gRPC export and spawn children: gRPC must not abort them (mptrace/_grpcfork.py).

Where the bug is live (Python 3.9 with grpcio 1.80 or later), about one spawn
child in 25 died with SIGABRT before mptrace's fix, under a busy exporter.
"""

import subprocess
import sys

import pytest

from mptrace import _grpcfork
from tests.otlp_receivers import GrpcReceiver
from tests.subprocesses import ROOT, environment

CHILDREN = 20


def run_spawns(receiver, count, *args, variables=None):
    """``tests.programs.grpc_spawns`` exporting to ``receiver``; the completed process."""
    env = environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                       "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "5"})
    env.pop(_grpcfork.VARIABLE, None)
    env.update(variables or {})
    return subprocess.run([sys.executable, "-m", "tests.programs.grpc_spawns", str(count), *args],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)


def test_spawn_children_survive_a_busy_grpc_exporter():
    with GrpcReceiver() as receiver:
        result = run_spawns(receiver, CHILDREN)
        spans = receiver.spans()
    assert result.returncode == 0, result.stderr
    assert "exit codes: " + " ".join(["0"] * CHILDREN) + "\n" in result.stdout, result.stdout + result.stderr
    assert "children saw: unset\n" in result.stdout, "mptrace's setting leaked into the children's environment"
    assert len([s for s in spans if s.name == "mp.process.run"]) == CHILDREN
    assert _grpcfork.VARIABLE not in result.stderr, "mptrace loaded gRPC itself, so there is nothing to warn about"


def test_a_program_that_loaded_grpc_first_is_warned_only_where_grpc_aborts_children():
    with GrpcReceiver() as receiver:
        result = run_spawns(receiver, 1, "grpc-first")
    assert result.returncode == 0, result.stderr
    warned = "set %s=0 before gRPC is imported" % _grpcfork.VARIABLE in result.stderr
    assert warned == _grpcfork.affected(), result.stderr


def test_a_program_that_loads_grpc_after_install_is_warned_at_its_first_spawn_start():
    with GrpcReceiver() as receiver:
        result = run_spawns(receiver, 2, "grpc-after", variables={"OTEL_TRACES_EXPORTER": "none"})
    assert result.returncode == 0, result.stderr
    said = result.stderr.count("set %s=0 before gRPC is imported" % _grpcfork.VARIABLE)
    assert said == (1 if _grpcfork.affected() else 0), result.stderr  # once, not at each start


@pytest.mark.parametrize("first", ["grpc-first", "mptrace-first"])
def test_the_users_own_setting_is_kept_and_not_warned_about(first):
    with GrpcReceiver() as receiver:
        result = run_spawns(receiver, 1, first, variables={_grpcfork.VARIABLE: "false"})
    assert result.returncode == 0, result.stderr
    assert "children saw: false\n" in result.stdout, result.stdout + result.stderr
    assert "before gRPC is imported" not in result.stderr


@pytest.mark.parametrize("python, grpcio, expected", [
    ((3, 9), (1, 80), True),
    ((3, 9), (1, 83), True),
    ((3, 9), (1, 78), False),  # before the regression
    ((3, 10), (1, 80), False),  # 3.10 starts spawn children with vfork(): no fork handlers run
    ((3, 13), (1, 85), False),
])
def test_which_pythons_and_grpcio_versions_are_affected(python, grpcio, expected):
    assert _grpcfork.affected(python=python, grpcio=grpcio) is expected


def test_the_installed_grpcio_version_is_read_without_importing_it():
    grpc = pytest.importorskip("grpc")
    assert _grpcfork.installed_grpcio() == tuple(int(part) for part in grpc.__version__.split(".")[:2])
