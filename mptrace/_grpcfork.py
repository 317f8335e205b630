"""gRPC's fork handlers against Python 3.9's fork-then-exec.

On Python 3.9, multiprocessing starts spawn and forkserver processes with
``fork()`` and then ``exec()`` (3.10 and later use ``vfork()``, which runs no
fork handlers). grpcio 1.80 and later, while ``GRPC_ENABLE_FORK_SUPPORT`` is
unset, restart gRPC's poller thread in the forked child; the child then closes
the descriptors it inherited before it execs, the poller finds its epoll
descriptor gone, and gRPC aborts the child (SIGABRT, exit code -6) before it
runs a line of Python (grpc/grpc#43055). A program that exports over OTLP/gRPC
then loses spawn children at random: 9 in 150 here, with the OpenTelemetry
SDK's exporter alone, without mptrace.

So when mptrace builds the exporters itself, it sets the variable to ``0``
(fork support off, gRPC's documented default) while gRPC loads and the
exporter's channel is made, and removes it afterwards: children's environments
stay as the program made them. A value the user set is kept. When the program
loaded gRPC before ``install()`` (or loads it later), it is too late to
choose, and a warning says what to do: at ``install()``, or at the first spawn
or forkserver start after gRPC was loaded.
"""

import contextlib
import functools
import os
import sys

from mptrace import _log

VARIABLE = "GRPC_ENABLE_FORK_SUPPORT"
FIRST_AFFECTED_GRPCIO = (1, 80)
ISSUE = "grpc/grpc#43055"

_loaded_with_handlers_off = False  # whether gRPC first loaded inside fork_handlers_off()
_warned = False


def affected(python=None, grpcio=None):
    """Whether this Python and the installed grpcio abort children between fork and exec."""
    python = sys.version_info[:2] if python is None else python
    if python >= (3, 10):
        return False
    grpcio = installed_grpcio() if grpcio is None else grpcio
    return grpcio is not None and grpcio >= FIRST_AFFECTED_GRPCIO


@functools.lru_cache(maxsize=None)
def installed_grpcio():
    """grpcio's (major, minor) from its metadata, without importing it; None if absent."""
    from importlib import metadata

    try:
        major, minor = metadata.version("grpcio").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


@contextlib.contextmanager
def fork_handlers_off():
    """Around the first load of gRPC: its fork handlers off, where they abort children."""
    global _loaded_with_handlers_off
    if VARIABLE in os.environ or "grpc" in sys.modules or not affected():
        yield
        return
    os.environ[VARIABLE] = "0"
    try:
        yield
    finally:
        os.environ.pop(VARIABLE, None)
        if "grpc" in sys.modules:
            _loaded_with_handlers_off = True
            _log.debug("gRPC loaded with %s=0, so that it does not abort spawn and forkserver children (%s)",
                       VARIABLE, ISSUE)


def warn_if_exposed():
    """Once: a warning when gRPC is loaded with the fork handlers that abort this Python's children."""
    global _warned
    if (_warned or _loaded_with_handlers_off or "grpc" not in sys.modules or VARIABLE in os.environ
            or not affected()):
        return
    _warned = True
    _log.warning("grpcio %s on Python %d.%d can abort children started by spawn or forkserver before they run "
                 "(exit code -6, %s); set %s=0 before gRPC is imported, or export over OTLP/HTTP",
                 ".".join(map(str, installed_grpcio())), sys.version_info[0], sys.version_info[1], ISSUE,
                 VARIABLE)
