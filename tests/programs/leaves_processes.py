"""A program that leaves processes running: for the tests that ``mptrace compare`` kills them.

    python tests/programs/leaves_processes.py MODE READY_FILE

Starts a multiprocessing child (under the default start method) and a
subprocess, both of which sleep for an hour; once the child has created
READY_FILE, prints "ready", then sleeps for an hour too (MODE ``hang``) or
leaves at once through ``os._exit`` without joining anything (MODE ``leave``).
"""

import multiprocessing
import os
import subprocess
import sys
import time


def child(ready_file):
    with open(ready_file, "w"):
        pass
    time.sleep(3600)


if __name__ == "__main__":
    mode, ready_file = sys.argv[1:3]
    multiprocessing.Process(target=child, args=(ready_file,)).start()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    while not os.path.exists(ready_file):
        time.sleep(0.05)
    print("ready", flush=True)
    if mode == "hang":
        time.sleep(3600)
    os._exit(0)
