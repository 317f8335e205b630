"""Changes module state after import, then starts a child.

    python -m tests.programs.run_traced OUT.json tests/programs/state_program.py METHOD
"""

import multiprocessing
import sys

import state_module

if __name__ == "__main__":
    state_module.counter = 7  # reassigned
    state_module.settings["mode"] = "debug"  # mutated in place
    state_module.config.retries = 3  # an object's attribute
    configured_in_main = True  # set only in the main block: a spawn child never runs it
    process = multiprocessing.get_context(sys.argv[1]).Process(target=state_module.report)
    process.start()
    process.join()
