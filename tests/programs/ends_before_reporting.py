"""One child killed after its run span began and before it reported its comparisons (see
tests/unreported_targets.py).

    python ends_before_reporting.py [START_METHOD]     (default: the program's default start method)
"""

import multiprocessing
import sys

from tests import unreported_targets

if __name__ == "__main__":
    unreported_targets.SETTING = "changed"
    unreported_targets.arm()
    context = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None)
    child = context.Process(target=unreported_targets.target, args=(unreported_targets.Arm(),), name="reporter")
    child.start()
    child.join()
    print("child exit", child.exitcode)
