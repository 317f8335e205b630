"""What one page fault costs on this machine, after a fork: the unit of a fork start's cost.

After ``os.fork()`` every page of the parent is shared with the child and
write-protected; the first write to a page faults. While the child is alive
the kernel copies the page (a copy-on-write fault); once the child has exited
it only makes the page writable again (a reuse fault). Both are counted by
``ru_minflt``. This writes one byte to each page of a large ``bytearray`` in
three states and prints the time per page, median of ``--rounds`` rounds:
already writable (no fault), after a fork whose child has exited (reuse), and
after a fork whose child is still alive (copy).

    python benchmarks/fault_cost.py [--pages 2000] [--rounds 7]
"""

import argparse
import os
import statistics
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _write_every_page(buffer, value):
    """Microseconds per page to write one byte to each page of ``buffer``."""
    began = time.perf_counter()
    for offset in range(0, len(buffer), PAGE):
        buffer[offset] = value
    return (time.perf_counter() - began) / (len(buffer) // PAGE) * 1e6


def _after_fork(buffer, child_alive):
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        if child_alive:
            os.read(release_read, 1)  # stays until the parent has written every page
        os._exit(0)
    if not child_alive:
        os.waitpid(pid, 0)
    per_page = _write_every_page(buffer, 2)
    os.write(release_write, b"x")
    if child_alive:
        os.waitpid(pid, 0)
    os.close(release_read)
    os.close(release_write)
    return per_page


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    buffer = bytearray(options.pages * PAGE)
    _write_every_page(buffer, 1)
    writable = statistics.median(_write_every_page(buffer, 1) for _ in range(options.rounds))
    reuse = statistics.median(_after_fork(buffer, child_alive=False) for _ in range(options.rounds))
    copy = statistics.median(_after_fork(buffer, child_alive=True) for _ in range(options.rounds))
    print("us per page written: no fault %.2f, after a fork whose child exited (reuse) %.2f, "
          "while the child lives (copy) %.2f" % (writable, reuse, copy))


if __name__ == "__main__":
    main()
