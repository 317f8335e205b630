"""Starts a child after each step: nothing changed, values rebound to equal ones, state changed in place,
values rebound to unequal ones of the same size. Each start must report the state as it is then.

    python -m tests.programs.run_traced OUT.json tests/programs/between_starts.py METHOD
"""

import multiprocessing
import sys

import between_starts_module as module

MODE = "prod"
LIMITS = {"retries": 3}
OPTIONS = ("a", ("bc", 2))


class Holder:
    def __init__(self):
        self.items = []


HOLDER = Holder()  # not a literal: only a spawn child's comparison tells it changed


def start(context, step):
    process = context.Process(target=module.report, name=step)
    process.start()
    process.join()


def main(method):
    global MODE, OPTIONS
    context = multiprocessing.get_context(method)
    start(context, "untouched")
    MODE = "".join(["pr", "od"])  # equal values, other objects
    OPTIONS = ("a", ("".join(["b", "c"]), 2))
    module.NAME = "".join(["al", "fa"])
    module.PAIR = ("".join(["a", "b"]), 1)
    module.Counter.limit = int("1000")
    start(context, "equal values")
    LIMITS["retries"] = 5  # in place
    HOLDER.items.append(1)
    module.settings["mode"] = "debug"
    module.queue.append("job")
    module.RECORD[1].append("job")
    module.config.retries = 3
    module.point.x = 5
    module.Counter.seen.append(1)
    start(context, "changed in place")
    MODE = "test"  # unequal, of the same size: only a digest tells
    OPTIONS = ("a", ("bd", 2))
    module.NAME = "beta"
    module.PAIR = ("ac", 1)
    module.Counter.limit = 1001
    start(context, "unequal values")


if __name__ == "__main__":
    main(sys.argv[1])
