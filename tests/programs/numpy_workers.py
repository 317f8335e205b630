"""Workers that draw from numpy's generators: the legacy global one (np.random.rand) and a module-level Generator.

    python numpy_workers.py [START_METHOD]
"""

import multiprocessing
import sys

import numpy as np

generator = np.random.default_rng(7)


def draw(results):
    results.put((multiprocessing.current_process().name, float(np.random.rand()), float(generator.random())))


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None)
    results = context.Queue()
    workers = [context.Process(target=draw, args=(results,), name="worker-%d" % i) for i in range(2)]
    for worker in workers:
        worker.start()
    (_, legacy_a, generator_a), (_, legacy_b, generator_b) = sorted(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join()
    print("legacy same:", legacy_a == legacy_b)
    print("generator same:", generator_a == generator_b)
