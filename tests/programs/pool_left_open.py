"""Uses a Pool or a ProcessPoolExecutor and exits without closing it; dumps spans at the very end.

    python -m tests.programs.pool_left_open METHOD pool|executor OUTPUT.json
"""

import atexit
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import mptrace
from tests import pool_targets
from tests.programs import in_memory_pipeline
from tests.programs.run_traced import as_json

provider, exporter = in_memory_pipeline()


def dump():
    import json

    with open(sys.argv[3], "w") as f:
        json.dump([as_json(s) for s in exporter.get_finished_spans()], f, default=list)


if __name__ == "__main__":
    atexit.register(dump)  # registered before install(): runs after mptrace's exit work
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context(sys.argv[1])
    with provider.get_tracer("program").start_as_current_span("work"):
        if sys.argv[2] == "pool":
            pool = context.Pool(2)
            assert pool.map(pool_targets.square_in_span, range(4), chunksize=1) == [0, 1, 4, 9]
        else:
            executor = ProcessPoolExecutor(2, mp_context=context)
            assert list(executor.map(pool_targets.square_in_span, range(4))) == [0, 1, 4, 9]
    # no close(), join() or shutdown(): the interpreter's exit ends the pool
