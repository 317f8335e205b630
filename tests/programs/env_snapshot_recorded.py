"""env_snapshot's program under a SpanRecorder, as a user's own test would run it; writes what
mptrace.testing says about each worker, and the tree, as JSON.

    python tests/programs/env_snapshot_recorded.py METHOD OUT.json [capture]
"""

import json
import multiprocessing
import sys

import env_snapshot
from mptrace.testing import SpanRecorder


def failure(assertion, *args, **kwargs):
    """The message of the assertion's failure, or None when it passed."""
    try:
        assertion(*args, **kwargs)
    except AssertionError as error:
        return str(error).split("\n")[0]
    return None


def record(method, output, capture_values):
    with SpanRecorder(capture_values=capture_values) as recorder:
        env_snapshot.main(multiprocessing.get_context(method))
        workers = {p.name: {"environment_differences": p.environment_differences, "cwd_differs": p.cwd_differs,
                            "forkserver_snapshot_age": p.forkserver_snapshot_age,
                            "run": dict(p.run.attributes) if p.run is not None else None}
                   for p in recorder.processes()}
        found = {"workers": workers, "tree": recorder.tree(), "assertions": {
            name: [failure(recorder.assert_environment_inherited, process=name),
                   failure(recorder.assert_environment_inherited, "APP_MODE", process=name)]
            for name in ("first", "second")}}
    with open(output, "w") as f:
        json.dump(found, f, default=list)


if __name__ == "__main__":
    record(sys.argv[1], sys.argv[2], sys.argv[3:] == ["capture"])
