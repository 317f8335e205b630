"""CPython's own multiprocessing and concurrent.futures suites, plain and traced, compared test by test.

    python tools/cpython_suites.py --python .venv310/bin/python [--out DIR] [--timeout 1800]
    python tools/cpython_suites.py --python .venv313/bin/python --compare-only --out DIR

The interpreter given (one with mptrace installed, a venv of this checkout)
runs each of SUITES from its own ``test`` package twice with ``-m test``:
plain, then traced: a .pth file put in the interpreter's site-packages for the
run loads tools/traced_site/mptrace_suites_site.py, which installs mptrace in
every root process of the run (the test runner, its worker, any program a test
starts, even with ``-I``); multiprocessing's own children are traced by mptrace
itself. The .pth file acts only when $MPTRACE_SUITES_SPANS is set, and is
removed after the run. Each suite runs in one regrtest worker (``-j1``), so a hang is cut by
``--timeout`` without losing the other suites.

Results come from the JUnit XML of each run, test by test, and from regrtest's
summary, file by file ("env changed": dangling threads, processes or files).
Every test that passes plain must pass traced, and a file that leaves its
environment unchanged plain must do so traced, except what ALLOWED lists with
its reason. The script prints a table and exits 1 on any other difference,
2 when a run produced no results at all.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

SUITES = ("test_multiprocessing_fork", "test_multiprocessing_spawn", "test_multiprocessing_forkserver",
          "test_concurrent_futures")
MODES = ("plain", "traced")
SITE_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traced_site", "mptrace_suites_site.py")
PTH_NAME = "mptrace_cpython_suites.pth"
# One line, run by site.py at start-up: loads SITE_MODULE by path (nothing added to sys.path).
PTH_LINE = ("import os; exec(compile(open(%r).read(), %r, 'exec'), {'__name__': 'mptrace_suites_site'}) "
            "if os.environ.get('MPTRACE_SUITES_SPANS') else None\n")

# Test ids (or file names, for "env changed") whose premise mptrace necessarily
# changes, with the reason. Nothing else may differ.
ALLOWED = {
    "test.test_multiprocessing_spawn.test_misc.MiscTestCase.test_spawn_sys_executable_none_allows_import":
        "its program asserts that multiprocessing is not imported yet at start-up; install(), run at start-up "
        "here, imports multiprocessing to patch it (3.13)",
}

# ---------------------------------------------------------------- running


def run_suite(python, suite, mode, out_dir, timeout):
    """One ``-m test`` run of ``suite``; its JUnit XML and its output land in ``out_dir/mode``."""
    mode_dir = os.path.join(out_dir, mode)
    spans_dir = os.path.join(mode_dir, "spans", suite)
    os.makedirs(spans_dir, exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTHON", "OTEL_", "MPTRACE"))}
    if mode == "traced":
        env["MPTRACE_SUITES_SPANS"] = spans_dir
    command = [python, "-m", "test", "-j1", "-v", "--timeout", str(timeout),
               "--junit-xml", os.path.join(mode_dir, suite + ".xml"), suite]
    started = time.monotonic()
    with open(os.path.join(mode_dir, suite + ".log"), "wb") as log:
        status = subprocess.call(command, env=env, cwd=mode_dir, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, preexec_fn=default_sigint)
    print("%-32s %-6s exit %d in %.0f s" % (suite, mode, status, time.monotonic() - started), flush=True)


def default_sigint():
    """Run in the suite's process before exec: SIGINT back to its default.

    A job started in the background by a non-interactive shell (``cmd &``,
    nohup) inherits SIGINT ignored, and exec keeps it ignored; Python then
    installs no KeyboardInterrupt handler, and the tests that send SIGINT
    (test_wait_result, test_shared_memory_SharedMemoryServer_ignores_sigint)
    fail in both modes, so they would compare nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def install_pth(python):
    """Put the .pth line in ``python``'s site-packages; returns its path, to remove after the runs."""
    site_packages = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip()
    path = os.path.join(site_packages, PTH_NAME)
    with open(path, "w") as pth:
        pth.write(PTH_LINE % (SITE_MODULE, SITE_MODULE))
    return path


def run_all(python, suites, modes, out_dir, timeout):
    pth = install_pth(python) if "traced" in modes else None
    try:
        for suite in suites:
            for mode in modes:
                run_suite(python, suite, mode, out_dir, timeout)
    finally:
        if pth:
            os.remove(pth)


# ---------------------------------------------------------------- reading results


def read_junit(path):
    """{test id: "passed" | "failed" | "skipped"} from a regrtest JUnit file ({} when there is none)."""
    if not os.path.exists(path):
        return {}
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            results[case.get("name")] = "failed"
        elif "skipped" in kinds or case.get("status") == "skipped":
            results[case.get("name")] = "skipped"
        else:
            results[case.get("name")] = "passed"
    return results


# "test_multiprocessing_fork.test_processes failed (env changed)", in a progress or summary line
ENV_CHANGED = re.compile(r"(test_[\w.]+) failed \(env changed\)")
# a verbose unittest line: "test_x (module.Class) ..." (3.10), "test_x (module.Class.test_x) ..." (3.11+)
TEST_LINE = re.compile(r"^(test\w*) \(([\w.]+)\)")


def id_of(match):
    name, where = match.group(1), match.group(2)
    return where if where.endswith("." + name) else where + "." + name


def read_log(path):
    """What regrtest said in its output: the files it reported "env changed", and each warning with the test before it.

    A file with failures is reported "failed", not "env changed", even when it
    also altered its environment: its "Warning -- Dangling ..." lines say so.
    The test named with a warning is the last one the log showed before it:
    the culprit or close to it on 3.11+, where a worker's stdout and stderr
    share one file; on 3.9 and 3.10 the worker's stderr (its warnings) comes
    after all of its stdout (the test lines), so only the file is known.
    """
    env_changed, warnings = set(), []
    if not os.path.exists(path):
        return env_changed, warnings
    last_test = None
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            test = TEST_LINE.match(line)
            if test:
                last_test = id_of(test)
            found = ENV_CHANGED.search(line)
            if found:
                env_changed.add(found.group(1))
            if line.startswith("Warning -- "):
                warnings.append((last_test, line[len("Warning -- "):].strip()))
    return env_changed, warnings


def file_of(test_id, suites):
    """The test file (or package module, on 3.13) a test id belongs to: the longest suite name it starts with."""
    parts = test_id.split(".")
    if parts and parts[0] == "test":
        parts = parts[1:]
    name = parts[0] if parts else test_id
    for depth in range(len(parts), 0, -1):
        candidate = ".".join(parts[:depth])
        if candidate in suites:
            return candidate
    return name


# ---------------------------------------------------------------- comparing


class FileComparison:
    """One test file's results in both modes."""

    def __init__(self, name):
        self.name = name
        self.results = {mode: {} for mode in MODES}
        self.env_changed = {mode: False for mode in MODES}
        self.warnings = {mode: [] for mode in MODES}

    def count(self, mode, outcome):
        return sum(1 for result in self.results[mode].values() if result == outcome)

    def altered(self, mode):
        """Whether the file left its environment changed: said so by regrtest, or by a warning."""
        return self.env_changed[mode] or bool(self.warnings[mode])

    def altered_cell(self, mode):
        if not self.altered(mode):
            return "no"
        return "yes (%d warnings)" % len(self.warnings[mode])

    def lost_passes(self):
        """Tests that passed plain and did not pass traced (failed, skipped or missing)."""
        plain, traced = self.results["plain"], self.results["traced"]
        return sorted(test for test, result in plain.items() if result == "passed" and traced.get(test) != "passed")

    def unexpected(self):
        """(what, why it is not allowed) for each difference that ALLOWED does not excuse."""
        problems = [(test, "passed plain, %s traced" % self.results["traced"].get(test, "missing"))
                    for test in self.lost_passes() if test not in ALLOWED]
        if self.altered("traced") and not self.altered("plain") and self.name not in ALLOWED:
            problems.append((self.name, "env changed traced only"))
        return problems


def compare(out_dir, suites):
    """{file name: FileComparison} from the runs in ``out_dir``."""
    files = {}
    for mode in MODES:
        for suite in suites:
            for test, result in read_junit(os.path.join(out_dir, mode, suite + ".xml")).items():
                name = file_of(test, suites_and_modules(out_dir, suites))
                files.setdefault(name, FileComparison(name)).results[mode][test] = result
            env_changed, warnings = read_log(os.path.join(out_dir, mode, suite + ".log"))
            for name in env_changed:
                files.setdefault(name, FileComparison(name)).env_changed[mode] = True
            for test, warning in warnings:
                name = file_of(test, suites_and_modules(out_dir, suites)) if test else suite
                files.setdefault(name, FileComparison(name)).warnings[mode].append((test, warning))
    return files


def suites_and_modules(out_dir, suites):
    """The suite names, and on 3.13 the modules regrtest split them into (from its output)."""
    names = set(suites)
    for mode in MODES:
        for suite in suites:
            path = os.path.join(out_dir, mode, suite + ".log")
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as log:
                    names.update(re.findall(r"\] (%s\.\w+)" % re.escape(suite), log.read()))
    return names


def spans_counted(out_dir, suite):
    directory = os.path.join(out_dir, "traced", "spans", suite)
    if not os.path.isdir(directory):
        return 0
    total = 0
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as count:
            total += int(count.read().strip() or 0)
    return total


def print_table(files, out_dir, suites):
    header = ("test file", "tests", "passed plain", "passed traced", "failed plain", "failed traced",
              "env changed plain", "env changed traced", "unexpected")
    rows = []
    for name in sorted(files):
        f = files[name]
        rows.append((name, str(max(len(f.results["plain"]), len(f.results["traced"]))),
                     str(f.count("plain", "passed")), str(f.count("traced", "passed")),
                     str(f.count("plain", "failed")), str(f.count("traced", "failed")),
                     f.altered_cell("plain"), f.altered_cell("traced"),
                     str(len(f.unexpected()))))
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    print("spans exported in the traced runs: " + ", ".join(
        "%s %d" % (suite, spans_counted(out_dir, suite)) for suite in suites))


def print_differences(files):
    """Every unexpected difference, the allowed ones with their reason, and the traced-only warnings."""
    for name in sorted(files):
        f = files[name]
        for test in f.lost_passes():
            if test in ALLOWED:
                print("allowed  %s: %s" % (test, ALLOWED[test]))
        for what, why in f.unexpected():
            print("UNEXPECTED  %s: %s" % (what, why))
        plain_warnings = {warning for _, warning in f.warnings["plain"]}
        for test, warning in f.warnings["traced"]:
            if warning not in plain_warnings:
                print("  traced only, after %s in the log: Warning -- %s" % (test, warning[:300]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with mptrace installed")
    parser.add_argument("--out", default=None, help="folder for XML and logs (default: suites-<version>)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per test file before regrtest kills it")
    parser.add_argument("--compare-only", action="store_true", help="compare the results already in --out")
    parser.add_argument("--modes", default=",".join(MODES), help="run only these modes (plain,traced)")
    parser.add_argument("suites", nargs="*", default=list(SUITES))
    args = parser.parse_args(argv)
    if os.sep in args.python:
        args.python = os.path.abspath(args.python)  # the runs have their own working directory
    version = subprocess.check_output([args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                      text=True).strip()
    out_dir = os.path.abspath(args.out or "suites-" + version)
    if not args.compare_only:
        run_all(args.python, args.suites, args.modes.split(","), out_dir, args.timeout)
    files = compare(out_dir, args.suites)
    print("\nPython %s, results in %s\n" % (version, out_dir))
    if not any(f.results["plain"] or f.results["traced"] for f in files.values()):
        print("no results: did the runs start?")
        return 2
    print_table(files, out_dir, args.suites)
    print()
    print_differences(files)
    unexpected = sum(len(f.unexpected()) for f in files.values())
    print("\n%d unexpected difference(s)" % unexpected)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
