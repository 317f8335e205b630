"""Two children with the same module-level generator: "sibling" reports its state; "reporter" is killed
while it hashes its own (see tests/unreported_targets.py), so whether the two share one is not known.

    python sibling_of_one_that_ends_before_reporting.py [START_METHOD]
"""

import multiprocessing
import sys

from tests import unreported_targets

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None)
    sibling = context.Process(target=unreported_targets.target, args=(None,), name="sibling")
    sibling.start()
    sibling.join()
    unreported_targets.arm()  # after the sibling's fork: only the reporter dies
    reporter = context.Process(target=unreported_targets.target, args=(unreported_targets.Arm(),), name="reporter")
    reporter.start()
    reporter.join()
    print("exits", sibling.exitcode, reporter.exitcode)
