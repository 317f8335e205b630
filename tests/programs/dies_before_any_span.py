"""A child that dies before it sends any span: under spawn and forkserver, the re-import of this main module
kills it (SIGKILL: no hook runs); under fork it runs. ``mptrace compare`` must not show "-" for it.

    python tests/programs/dies_before_any_span.py
"""

import multiprocessing
import os
import signal

if __name__ == "__mp_main__":  # a spawn or forkserver child re-importing the main module
    os.kill(os.getpid(), signal.SIGKILL)


def work():
    pass


if __name__ == "__main__":
    child = multiprocessing.Process(target=work, name="victim")
    child.start()
    child.join()
    print("child exit", child.exitcode)
