"""Forks traced children from a single thread (or, with --thread, with a second one).

    python -W always::DeprecationWarning -m tests.programs.fork_quietly [--thread]
"""

import multiprocessing
import sys
import threading


import mptrace
from tests.programs import in_memory_pipeline
from tests import targets

if __name__ == "__main__":
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    stop = threading.Event()
    if "--thread" in sys.argv:  # the control: this must warn on 3.12+
        threading.Thread(target=stop.wait).start()
    # Only this (root) process forks. A fork child that forks again can see a
    # short-lived thread that opentelemetry-sdk's own at-fork handler starts
    # (resource re-detection), which is not mptrace's to remove.
    context = multiprocessing.get_context("fork")
    for _ in range(3):
        p = context.Process(target=targets.succeed)
        p.start()
        p.join()
    stop.set()
    mptrace.flush()
    print(len(exporter.get_finished_spans()), "spans")
