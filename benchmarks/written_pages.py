"""Which pages one fork start+join makes the parent write, and how much of it is Python code (Linux).

After a fork every page is shared and write-protected, and the first write to
each page costs a fault (see ``fault_cost.py``): a fork start's cost is the
number of distinct pages written per start, wherever in the start they are
written. Each arm (the same two as ``start_faults.py``: provider only, and
traced) is a fresh interpreter that warms up with 30 fork starts, then:

* forks a witness child that only waits, so every page stays shared, and runs
  one start+join of an empty target; a page ``/proc/self/pagemap`` then shows
  as exclusively mapped (bit 56) was written, or allocated, by the parent
  meanwhile. Pages already exclusive right after the witness's fork (written
  by that fork and the reading itself) are left out, so this is a lower bound;
* runs ``--starts`` more start+joins under ``sys.setprofile`` and counts the
  distinct Python functions that ran in the parent, and the distinct pages
  their code objects and function objects are on (each call writes the
  reference counts of both).

Before each, the traced arm flushes: mptrace's collection of children's spans
runs once per batch of children (every 100 ms), so its pages are not counted
as a start's. Medians over ``--runs`` runs per arm.

    python benchmarks/written_pages.py [--runs 3] [--starts 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_start import PROVIDER_AND_TARGET, ROOT, alternate_runs  # noqa: E402

ARMS = ("provider only", "traced")

PROGRAM = PROVIDER_AND_TARGET + r'''
import gc, json, multiprocessing, os, struct

PAGE = os.sysconf("SC_PAGE_SIZE")
context = multiprocessing.get_context("fork")


def start_and_join():
    process = context.Process(target=noop)
    process.start()
    process.join()


def writable_regions():
    for line in open("/proc/self/maps"):
        fields = line.split()
        if "w" in fields[1] and not (len(fields) > 5 and fields[5].startswith("[v")):
            yield tuple(int(address, 16) for address in fields[0].split("-"))


def exclusive_pages(regions):
    found = set()
    with open("/proc/self/pagemap", "rb") as pagemap:
        for start, end in regions:
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            for index in range(len(entries) // 8):
                entry = struct.unpack_from("<Q", entries, index * 8)[0]
                if entry >> 63 & 1 and entry >> 56 & 1:  # present, and mapped by this process only
                    found.add(start // PAGE + index)
    return found


def pages_one_start_writes():
    regions = list(writable_regions())
    release_read, release_write = os.pipe()
    witness = os.fork()
    if witness == 0:
        os.close(release_write)
        os.read(release_read, 1)  # until the parent has measured, or has ended
        os._exit(0)
    os.close(release_read)
    try:
        already = exclusive_pages(regions)
        start_and_join()
        written = exclusive_pages(regions) - already
    finally:
        os.close(release_write)
        os.waitpid(witness, 0)
    return len(written)


def python_code_run(starts):
    codes, parent = {}, os.getpid()

    def record(frame, event, arg):
        if event == "call" and os.getpid() == parent:
            codes[id(frame.f_code)] = frame.f_code

    sys.setprofile(record)
    for _ in range(starts):
        start_and_join()
    sys.setprofile(None)
    functions = [f for f in gc.get_objects() if type(f).__name__ == "function" and id(f.__code__) in codes]
    return len(codes), len({id(code) // PAGE for code in codes.values()}), len({id(f) // PAGE for f in functions})


def settle():
    """No collection of mptrace's due during what follows (one is due 100 ms after the last; a few starts
    take far less): its pages are written once per batch of children, not per start."""
    if "mptrace" in sys.modules:
        mptrace.flush()


for _ in range(30):
    start_and_join()
settle()
gc.disable()  # a garbage collection during the measured start would write pages of its own
written = pages_one_start_writes()
gc.enable()
settle()
functions, code_pages, function_pages = python_code_run(int(sys.argv[2]))
print(json.dumps([written, functions, code_pages, function_pages]))
'''

COLUMNS = ("pages written", "py functions", "their code pages", "function pages")


def one_run(arm, starts, target_dir, python):
    result = subprocess.run([python, "-c", PROGRAM, "traced" if arm == "traced" else "provider", str(starts)],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, target_dir])),
                            capture_output=True, text=True, cwd=target_dir, timeout=600)
    if result.returncode:
        raise SystemExit("the %s arm failed:\n%s" % (arm, result.stderr))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--starts", type=int, default=3, help="start+joins whose Python functions are counted")
    options = parser.parse_args()
    if not os.path.exists("/proc/self/pagemap"):
        raise SystemExit("needs Linux's /proc/self/pagemap")
    found = alternate_runs(ARMS, options.runs,
                           lambda arm, target_dir, python: one_run(arm, options.starts, target_dir, python))
    print("%-14s" % "per fork start" + "".join("%18s" % column for column in COLUMNS))
    for arm in ARMS:
        print("%-14s" % arm + "".join("%18d" % statistics.median(values) for values in zip(*found[arm])))
    print("(medians of %d runs; functions over %d start+joins; Python %s)" % (
        options.runs, options.starts, sys.version.split()[0]))


if __name__ == "__main__":
    main()
