"""A main module that starts a process at its top level, without the main guard.

    python tests/programs/prerun_no_guard.py METHOD

Under fork this works. A spawn or forkserver child re-runs this top level as
``__mp_main__`` and CPython's RuntimeError ends it before run().
"""

import multiprocessing
import sys


def work():
    print("work ran")


context = multiprocessing.get_context(sys.argv[1])
process = context.Process(target=work)
process.start()
process.join()
print("exit code", process.exitcode)
