"""Workers that draw from module-level random generators, the way a simulation or a sampler would.

    python random_workers.py [START_METHOD]     (default: the program's default start method)
"""

import multiprocessing
import random
import sys

rng = random.Random()  # unseeded: seeded from the OS once, when this module runs
replay = random.Random(42)  # a fixed seed, for reproducible runs


def draw(results):
    results.put((multiprocessing.current_process().name, rng.random(), replay.random(), random.random()))


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None)
    results = context.Queue()
    workers = [context.Process(target=draw, args=(results,), name="worker-%d" % i) for i in range(2)]
    for worker in workers:
        worker.start()
    drawn = sorted(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join()
    (_, rng_a, replay_a, global_a), (_, rng_b, replay_b, global_b) = drawn
    print("rng same:", rng_a == rng_b)
    print("replay same:", replay_a == replay_b)
    print("global same:", global_a == global_b)
