"""Whether a fork child runs beside its parent on this machine: work before or after the fork.

    python benchmarks/fork_overlap.py [--work-us 500] [--child-us 2000] [--forks 300]

Forks ``--forks`` children that each spin for ``--child-us`` and exit; the
parent spins for ``--work-us`` either not at all, before each fork, or right
after it, and then waits for the child. Prints the median fork+wait per arm.
Where the child starts on another core at once, work after the fork is hidden
behind the child's ("after" costs about what "none" costs); where it does not
(one core, or a scheduler that keeps a new child on its parent's core for a
while), "after" costs what "before" costs. It tells whether moving mptrace's
work in the parent from before a fork to after it could shorten a start+join:
on the 2-core virtual machine of issue 19 it could not (none 2.74 ms, before
3.26 ms, after 3.25 ms, for 500 us of work and a 2 ms child).
"""

import argparse
import os
import statistics
import time


def spin(microseconds):
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


def one_arm(where, work_us, child_us, forks):
    times = []
    for _ in range(forks):
        began = time.perf_counter()
        if where == "before":
            spin(work_us)
        pid = os.fork()
        if pid == 0:
            spin(child_us)
            os._exit(0)
        if where == "after":
            spin(work_us)
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-us", type=float, default=500)
    parser.add_argument("--child-us", type=float, default=2000)
    parser.add_argument("--forks", type=int, default=300)
    options = parser.parse_args()
    found = {where: [] for where in ("none", "before", "after")}
    for _ in range(3):  # alternating, so drift hits every arm alike
        for where in found:
            found[where].append(one_arm(where, options.work_us, options.child_us, options.forks))
    for where, runs in found.items():
        print("%-7s %.3f ms per fork+wait (runs: %s)" % (where, statistics.median(runs),
                                                        " ".join("%.3f" % run for run in runs)))
    print("(parent work %.0f us, child %.0f us, %d forks per run, %d CPUs)"
          % (options.work_us, options.child_us, options.forks, os.cpu_count() or 0))


if __name__ == "__main__":
    main()
