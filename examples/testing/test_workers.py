"""An example of the mptrace pytest plugin: does the worker see what the test set up?

    python -m pytest examples/testing -v

Passes under fork; under spawn and forkserver the worker re-imports
app_settings (DEBUG is False again) and receives a pickled Client whose
__getstate__ dropped the connection, and the assertions say so.
"""


class Client:
    """Holds a live connection; pickling drops it."""

    def __init__(self):
        self.connection = "open"

    def __getstate__(self):
        return {"connection": None}


def work(client):  # module level: a spawn child imports it from this test module
    import app_settings

    assert app_settings.DEBUG, "the worker runs without DEBUG"


def test_the_worker_sees_the_test_setup(mptrace_spans, mptrace_context):
    import app_settings  # imported after mptrace is installed: its import-time state is known

    app_settings.DEBUG = True
    worker = mptrace_context.Process(target=work, args=(Client(),))
    worker.start()
    worker.join()

    mptrace_spans.assert_state_inherited("app_settings.DEBUG")
    mptrace_spans.assert_args_unchanged()
    mptrace_spans.assert_no_errors()
