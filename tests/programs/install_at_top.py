"""Calls mptrace.install() at module top level, as many programs do, then starts three children.

    python tests/programs/install_at_top.py START_METHOD

Spawn and forkserver children re-run that line while they re-import this
module; each child reports whether mptrace's install machinery was loaded in it.
"""

import multiprocessing
import sys

import mptrace

mptrace.install()


def work(index):
    print("child %d install machinery loaded: %s" % (index, "mptrace._install" in sys.modules), flush=True)


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    children = [context.Process(target=work, args=(index,)) for index in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    print("exit codes", [child.exitcode for child in children])
