"""A child changes module state, then starts a grandchild.

    python -m tests.programs.run_traced OUT.json tests/programs/state_grandchild.py OUTER INNER
"""

import multiprocessing
import sys

import state_module


def child(method):
    state_module.counter = 11  # changed in the child, after its own import
    process = multiprocessing.get_context(method).Process(target=state_module.report)
    process.start()
    process.join()


if __name__ == "__main__":
    state_module.counter = 7
    outer, inner = sys.argv[1], sys.argv[2]
    process = multiprocessing.get_context(outer).Process(target=child, args=(inner,))
    process.start()
    process.join()
