"""A service that reads its mode from the environment: it starts a first worker, then switches to test mode
and to another working directory, and starts a second worker.

    python -m tests.programs.run_traced OUT.json tests/programs/env_snapshot.py [METHOD]
    mptrace compare tests/programs/env_snapshot.py

Under forkserver the second worker still runs in "prod": a fork server's environment is the parent's as it
was when the server started (with the first worker). Under spawn, os.environ's changes arrive, but what only
os.putenv or os.unsetenv changed differs from what the parent's os.environ says.
"""

import multiprocessing
import os
import sys
import tempfile


def work():
    print(multiprocessing.current_process().name, os.environ.get("APP_MODE"), flush=True)


def start_worker(context, name):
    worker = context.Process(target=work, name=name)
    worker.start()
    worker.join()


def main(context):
    os.environ["APP_MODE"] = "prod"
    os.environ["LEGACY_FLAG"] = "1"
    start_worker(context, "first")
    os.environ["APP_MODE"] = "test"
    os.putenv("CACHE_DIR", "/var/cache/app")  # the C environment only: os.environ does not show it
    os.unsetenv("LEGACY_FLAG")  # likewise: os.environ still has it
    home, workdir = os.getcwd(), tempfile.mkdtemp(prefix="env-snapshot-")
    os.chdir(workdir)
    try:
        start_worker(context, "second")
    finally:
        os.chdir(home)
        os.rmdir(workdir)


if __name__ == "__main__":
    main(multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else None))
