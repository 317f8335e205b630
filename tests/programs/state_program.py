"""Changes module state after import, then starts a child.

    python -m tests.programs.run_traced OUT.json tests/programs/state_program.py METHOD

METHOD ``default``: multiprocessing's default, not chosen yet when start() runs (printed).
"""

import multiprocessing
import sys

import state_module

if __name__ == "__main__":
    state_module.counter = 7  # reassigned
    state_module.settings["mode"] = "debug"  # mutated in place
    state_module.config.retries = 3  # an object's attribute
    configured_in_main = True  # set only in the main block: a spawn child never runs it
    if sys.argv[1] == "default":
        print("chosen before start():", multiprocessing.get_start_method(allow_none=True))
        process = multiprocessing.Process(target=state_module.report)
    else:
        process = multiprocessing.get_context(sys.argv[1]).Process(target=state_module.report)
    process.start()
    process.join()
