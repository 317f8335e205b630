"""Starts children and exits without joining them; dumps spans at the very end.

    python -m tests.programs.exit_without_join METHOD OUTPUT.json
"""

import atexit
import json
import multiprocessing
import sys
import time


import mptrace
from tests.programs import in_memory_pipeline

provider, exporter = in_memory_pipeline()


def dump():
    spans = [{"name": s.name, "attributes": dict(s.attributes), "status": s.status.status_code.name,
              "span_id": s.context.span_id, "parent": s.parent.span_id if s.parent else None}
             for s in exporter.get_finished_spans()]
    with open(sys.argv[2], "w") as f:
        json.dump(spans, f)


def nap(seconds, ready=None):
    if ready is not None:
        ready.set()
    time.sleep(seconds)


if __name__ == "__main__":
    atexit.register(dump)  # registered before install(): runs after mptrace's exit work
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context(sys.argv[1])
    context.Process(target=nap, args=(0.3,), name="worker").start()
    ready = context.Event()
    context.Process(target=nap, args=(60, ready), name="daemon", daemon=True).start()
    assert ready.wait(30)  # the daemon is running when the parent exits
