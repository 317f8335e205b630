"""A program that imports its pools only after mptrace is installed (run through run_traced)."""

import sys

IMPORTED_BEFORE = [name for name in ("concurrent.futures.process", "multiprocessing.pool") if name in sys.modules]

import multiprocessing  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402


def square(x):
    return x * x


if __name__ == "__main__":
    print("imported before the program:", IMPORTED_BEFORE)
    context = multiprocessing.get_context(sys.argv[1])
    with ProcessPoolExecutor(1, mp_context=context) as executor:
        print(list(executor.map(square, [2])))
    with context.Pool(1) as pool:
        print(pool.map(square, [3]))
