"""Two workers started while both are alive, with the application's resources opened at import.

    FDS_ECHO_PORT=N FDS_LOG_PATH=P python -m tests.programs.run_traced OUT.json tests/programs/inherited_fds.py [METHODS]

METHODS: the start method of both workers (``fork``), or of each (``spawn,fork``); default: the default.
"""

import multiprocessing
import sys

import fds_app

if __name__ == "__main__":
    methods = sys.argv[1].split(",") if len(sys.argv) > 1 else [None]
    contexts = [multiprocessing.get_context(methods[n % len(methods)]) for n in range(2)]
    # a fork context's Event cannot reach a spawn child; a spawn context's works in a fork child too
    ready = next((c for c in contexts if c.get_start_method() != "fork"), contexts[0]).Event()
    workers = [context.Process(target=fds_app.query, args=(ready,)) for context in contexts]
    for worker in workers:
        worker.start()
    ready.set()
    for worker in workers:
        worker.join()
    print("done")
