"""mptrace's pytest plugin, registered through the ``pytest11`` entry point.

* fixture ``mptrace_spans``: a ``mptrace.testing.SpanRecorder`` installed for
  one test and uninstalled after it, pass or fail;
* fixture ``mptrace_start_method``: a test that asks for it runs once per
  start method the platform has (ids ``fork``, ``spawn``, ``forkserver``);
  ``@pytest.mark.mptrace_start_methods("spawn", "forkserver")`` narrows the
  list; ``mptrace_context`` is ``multiprocessing.get_context`` of it.

Nothing of mptrace or OpenTelemetry is imported until a test uses a fixture:
the plugin loads into every pytest run of an environment that has mptrace.
"""

import pytest

MARKER = "mptrace_start_methods"


def pytest_configure(config):
    config.addinivalue_line("markers", "%s(*methods): run the test only under these start methods (with the "
                            "mptrace_start_method fixture)" % MARKER)


def pytest_generate_tests(metafunc):
    if "mptrace_start_method" not in metafunc.fixturenames or _parametrized_by_hand(metafunc):
        return
    from mptrace.semconv import START_METHODS
    from mptrace.testing import start_methods

    available = start_methods()
    marker = metafunc.definition.get_closest_marker(MARKER)
    wanted = list(marker.args) if marker is not None else available
    unknown = [m for m in wanted if m not in START_METHODS]
    if unknown:
        raise pytest.UsageError("@pytest.mark.%s: unknown start method %r (fork, spawn, forkserver)"
                                % (MARKER, unknown[0]))
    methods = [m for m in wanted if m in available]
    if not methods:  # e.g. only fork asked for, on Windows: skipped, not silently passed
        methods = [pytest.param(wanted[0], marks=pytest.mark.skip(reason="%s is not available on this platform"
                                                                 % ", ".join(wanted)))]
    metafunc.parametrize("mptrace_start_method", methods, ids=lambda method: method)


def _parametrized_by_hand(metafunc):
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else ""
        names = names.split(",") if isinstance(names, str) else names
        if "mptrace_start_method" in [n.strip() for n in names]:
            return True
    return False


@pytest.fixture
def mptrace_context(mptrace_start_method):
    """``multiprocessing.get_context`` of this run's start method."""
    import multiprocessing

    return multiprocessing.get_context(mptrace_start_method)


@pytest.fixture
def mptrace_spans():
    """mptrace on an in-memory pipeline for this test: ``.spans``, ``.clear()``, helpers and assertions
    (see ``mptrace.testing.SpanRecorder``)."""
    from mptrace.testing import SpanRecorder

    recorder = SpanRecorder().start()
    try:
        yield recorder
    finally:
        recorder.stop()
