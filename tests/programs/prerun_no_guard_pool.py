"""A main module that creates a pool at its top level, without the main guard.

    python tests/programs/prerun_no_guard_pool.py METHOD

Under spawn and forkserver every worker dies re-running this top level, and
the pool replaces it, without end: the program waits until the pool has
started at least MIN_WORKERS workers (or its map is done, as under fork), then
terminates the pool, so it always ends.
"""

import multiprocessing
import sys
import time

MIN_WORKERS = 6


def square(n):
    return n * n


context = multiprocessing.get_context(sys.argv[1])
pool = context.Pool(2)
result = pool.map_async(square, range(4))
started = set()
deadline = time.monotonic() + 60
while not result.ready() and len(started) < MIN_WORKERS and time.monotonic() < deadline:
    started.update(worker.pid for worker in list(pool._pool))
    time.sleep(0.005)
pool.terminate()
pool.join()
print("map done" if result.ready() else "workers kept failing")
