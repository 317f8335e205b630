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
    control = "--thread" in sys.argv
    if control:  # this must warn on 3.12+ (and stays shallow: forking with threads can deadlock)
        threading.Thread(target=stop.wait).start()
    context = multiprocessing.get_context("fork")
    for _ in range(3):
        p = context.Process(target=targets.succeed) if control else context.Process(
            target=targets.start_grandchild, args=("fork",))
        p.start()
        p.join()
    stop.set()
    mptrace.flush()
    print(len(exporter.get_finished_spans()), "spans")
