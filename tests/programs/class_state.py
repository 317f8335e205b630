"""Changes class attributes after import, then passes an instance to a child.

    python -m tests.programs.run_traced OUT.json tests/programs/class_state.py [METHOD]

Without METHOD, the default start method (``mptrace run --start-method``, ``mptrace compare``).
"""

import multiprocessing
import sys

import class_settings
from class_settings import Counter, Job  # another module's classes: watched there, not here


class Registry:
    entries = 0  # the import-time value a spawn child re-creates


if __name__ == "__main__":
    Counter.bump()
    Counter.bump()
    Counter.bump()
    Job.retries = 5
    Registry.entries += 1
    context = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None)
    process = context.Process(target=class_settings.run, args=(Job("nightly"),))
    process.start()
    process.join()
