"""Starts two processes and a pool at top level, outside any span of its own.

    python tests/programs/starts_at_top.py START_METHOD [fail]

With ``fail``, it raises once its children have ended.
"""

import multiprocessing
import sys


def work(value):
    return value * 2


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    for _ in range(2):
        child = context.Process(target=work, args=(1,))
        child.start()
        child.join()
    with context.Pool(2) as pool:
        print("pool", pool.map(work, range(4)), flush=True)
    if sys.argv[2:] == ["fail"]:
        raise LookupError("the program's own failure")
