"""Pool and executor workers that run many tasks each, calling functions of a user module (counter).

    carryover.py START_METHOD pool|pool_with|executor count|cached|pure [ITEMS]
"""

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import counter

if __name__ == "__main__":
    method, api, function = sys.argv[1], sys.argv[2], getattr(counter, sys.argv[3])
    items = range(int(sys.argv[4]) if len(sys.argv) > 4 else 8)
    context = multiprocessing.get_context(method)
    if api == "pool":
        pool = context.Pool(2, maxtasksperchild=None)
        print(pool.map(function, items, chunksize=1))
        pool.close()
        pool.join()
    elif api == "pool_with":  # terminate() at the end: the workers are killed, never end their spans
        with context.Pool(2) as pool:
            print(pool.map(function, items, chunksize=1))
    else:
        with ProcessPoolExecutor(2, mp_context=context) as executor:
            print(list(executor.map(function, items)))
