import multiprocessing
import os

import pytest

import mptrace
from mptrace._state import state
from mptrace.testing import start_methods
from tests.programs import in_memory_pipeline

START_METHODS = start_methods()


@pytest.fixture(params=START_METHODS)
def start_method(request):
    """Each test that takes this runs once per start method the platform has."""
    return request.param


@pytest.fixture
def context(start_method):
    return multiprocessing.get_context(start_method)


@pytest.fixture
def pickled_context(context, start_method):
    """The context of a start method that pickles what it sends the child: not fork."""
    if start_method == "fork":
        pytest.skip("fork pickles nothing")
    return context


class Traced:
    """mptrace installed on an in-memory pipeline, for one test."""

    def __init__(self):
        self.provider, self.exporter = in_memory_pipeline()
        self.tracer = self.provider.get_tracer("tests")

    def spans(self):
        assert mptrace.flush(), "flush() timed out"
        return list(self.exporter.get_finished_spans())


def traced_with(**options):
    """Yield a Traced installed with ``options``; uninstall and check nothing is left."""
    t = Traced()
    mptrace.install(tracer_provider=t.provider, **options)
    spool_dir = state.tree["dir"]
    yield t
    mptrace.uninstall()
    assert not os.path.exists(spool_dir), "uninstall() left the spool directory behind"
    assert not any(True for _ in state.patches), "uninstall() left patches behind"


@pytest.fixture
def traced():
    yield from traced_with()
