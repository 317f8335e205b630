"""Changes its own globals in main(), then starts two children kept in a module-level list.

    python -m tests.programs.run_traced OUT.json tests/programs/main_state.py METHOD
"""

import multiprocessing
import sys

MODE = "prod"
LIMITS = {"retries": 3}
UNTOUCHED = ("a", 1)
workers = []  # Process handles: not state


def report():
    print("child sees", MODE, LIMITS["retries"], flush=True)


def main(method):
    global MODE, STARTED_BY
    MODE = "test"  # same length: only its digest tells
    LIMITS["retries"] = 1  # mutated in place
    STARTED_BY = "main"  # exists only once main() ran
    context = multiprocessing.get_context(method)
    workers.extend(context.Process(target=report) for _ in range(2))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main(sys.argv[1])
