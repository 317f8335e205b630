"""A pool whose workers draw from a module-level generator; with "reseed", its initializer reseeds it (the fix).

    python random_pool.py START_METHOD {shared|reseed} {close|with}
"""

import multiprocessing
import random
import sys

rng = random.Random()


def reseed():
    rng.seed()  # from the operating system: each worker its own stream


def draw(_):
    return rng.random()


if __name__ == "__main__":
    method, fix, ending = sys.argv[1:4]
    context = multiprocessing.get_context(method)
    initializer = reseed if fix == "reseed" else None
    if ending == "with":  # the pool's __exit__ terminates its workers
        with context.Pool(2, initializer=initializer) as pool:
            print(len(pool.map(draw, range(4), chunksize=1)))
    else:
        pool = context.Pool(2, initializer=initializer)
        print(len(pool.map(draw, range(4), chunksize=1)))
        pool.close()
        pool.join()
