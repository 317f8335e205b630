"""What spawn and forkserver children import before run(): two bounded spans."""

import pytest

from tests.subprocesses import run_traced

MAIN = '''
import multiprocessing, os, sys
sys.path.insert(0, {generated!r})
{imports}
with open({ran!r}, "a") as ran:  # which processes ran this module's top level
    ran.write("%d\\n" % os.getpid())

def work():
    with open({ran!r}, "a") as ran:
        ran.write("child %d\\n" % os.getpid())

if __name__ == "__main__":
    p = multiprocessing.get_context(sys.argv[1]).Process(target=work)
    p.start()
    p.join()
'''


def run_program(tmp_path, method, module_count):
    generated = tmp_path / "generated"
    generated.mkdir()
    for i in range(module_count):
        (generated / ("gen_%03d.py" % i)).write_text("VALUE = %d\n" % i)
    script = tmp_path / "main.py"
    ran = tmp_path / "ran.txt"
    script.write_text(MAIN.format(generated=str(generated), ran=str(ran),
                                  imports="\n".join("import gen_%03d" % i for i in range(module_count))))
    spans = run_traced(tmp_path, script, method)[1]
    lines = ran.read_text().split()
    return spans, lines


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_reimport_and_unpickling_are_two_bounded_spans(tmp_path, method):
    spans, ran = run_program(tmp_path, method, 200)
    run = [s for s in spans if s["name"] == "mp.process.run"][0]
    imports = {s["attributes"]["mp.import.phase"]: s for s in spans if s["name"] == "mp.import"}
    assert sorted(imports) == ["main", "unpickle"]
    assert all(s["parent"] == run["span_id"] for s in imports.values())
    main = imports["main"]["attributes"]
    assert main["mp.import.module"].endswith("main.py")
    assert len(main["mp.import.slowest"]) == 8 or not main["mp.import.main_reran"]
    assert all(entry.endswith(" ms") for entry in main["mp.import.slowest"])
    # Whether the child ran the main module again: a fork server that preloads
    # it (multiprocessing's default, broken before 3.12.8/3.13.1) runs it once.
    child_pid = int(ran[ran.index("child") + 1])
    reran = str(child_pid) in ran[:ran.index("child")]
    assert main["mp.import.main_reran"] is reran
    if reran:
        assert main["mp.import.count"] >= 200
    else:
        assert main["mp.import.count"] < 200 and run["attributes"]["mp.import.inherited"] >= 200
    if method == "spawn":
        assert reran
    else:
        assert run["attributes"]["mp.forkserver.preload"] == ["__main__"]
        assert run["attributes"]["mp.import.inherited"] > 0


def test_fork_children_import_nothing(tmp_path):
    spans, _ = run_program(tmp_path, "fork", 3)
    assert not [s for s in spans if s["name"] == "mp.import"]


OPENSSL_PROGRAM = '''
import multiprocessing, random, sys
import mptrace
from tests.programs import in_memory_pipeline

CONFIG = {"retries": 3}  # module state to compare
rng = random.Random(7)  # a generator to hash


class Job:
    def __init__(self):
        self.settings = {"mode": "prod"}  # an argument whose fingerprint carries digests


def report(job, queue):
    queue.put(sorted(name for name in ("hashlib", "_hashlib", "ssl", "_ssl") if name in sys.modules))


if __name__ == "__main__":
    if sys.argv[2] == "traced":
        mptrace.install(tracer_provider=in_memory_pipeline()[0])
    CONFIG["retries"] = 5
    context = multiprocessing.get_context(sys.argv[1])
    queue = context.Queue()
    process = context.Process(target=report, args=(Job(), queue))
    process.start()
    print(queue.get(timeout=60))
    process.join()
'''


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_loads_no_openssl_for_mptrace(tmp_path, method):
    """Digests use the builtin blake2b: importing hashlib (OpenSSL) would cost each child about 3 ms."""
    import subprocess
    import sys

    from tests.subprocesses import ROOT, environment

    script = tmp_path / "openssl_program.py"
    script.write_text(OPENSSL_PROGRAM)
    loaded = {}
    for arm in ("plain", "traced"):
        result = subprocess.run([sys.executable, str(script), method, arm], capture_output=True, text=True,
                                timeout=120, cwd=ROOT, env=environment({"PYTHONPATH": ROOT}))
        assert result.returncode == 0, result.stderr
        loaded[arm] = result.stdout.strip()
    assert loaded["traced"] == loaded["plain"]


def run_preload_program(tmp_path, order):
    """tests/programs/forkserver_preload.py: (what its forkserver child reported, the run span, spans)."""
    import json
    import os
    import subprocess
    import sys

    from tests.subprocesses import ROOT, environment

    programs = os.path.join(ROOT, "tests", "programs")
    spans_file = tmp_path / "spans.json"
    result = subprocess.run([sys.executable, "forkserver_preload.py", str(spans_file), order], capture_output=True,
                            text=True, timeout=120, cwd=programs, env=environment())
    assert result.returncode == 0 and result.stderr == "", result.stderr
    spans = json.loads(spans_file.read_text())
    [process] = [s for s in spans if s["name"] == "mp.process"]
    [run] = [s for s in spans if s["name"] == "mp.process.run"]
    assert run["parent"] == process["span_id"]  # the child was traced
    assert "mp.child.traced" not in process["attributes"]
    assert run["attributes"]["mp.forkserver.preload"] == ["fork_snapshot"]  # the program's own list
    return json.loads(result.stdout), run


def test_a_fork_server_started_under_mptrace_preloads_its_child_side(tmp_path):
    """install() before the server starts, as real programs do: the server loads mptrace's child side once,
    after the program's own preload list, and its children import none of it."""
    child, run = run_preload_program(tmp_path, "install-first")
    assert child["own_preload_ran"]  # the program's own preload module was preloaded in the server
    assert child["imported"] == []
    assert "mptrace._child" in child["loaded_for_mptrace"]
    assert not [name for name in child["server_held"] if name.partition(".")[0] in ("opentelemetry", "wrapt")]
    # What mptrace loaded in the server is not among the modules the child began with.
    assert run["attributes"]["mp.import.inherited"] == len(child["server_held"]) - len(child["loaded_for_mptrace"])


def test_a_fork_server_started_before_install_still_yields_traced_children(tmp_path):
    """That server preloads nothing of mptrace: its children load it themselves, as before, and do not count
    what they loaded among the modules they began with."""
    child, run = run_preload_program(tmp_path, "server-first")
    assert child["own_preload_ran"]
    assert "mptrace._child" in child["imported"] and child["loaded_for_mptrace"] == []
    assert run["attributes"]["mp.import.inherited"] == len(child["server_held"])



LEAN_PROGRAM = '''
import multiprocessing, sys


def report(path, looked_for):  # into a file: a queue or a pipe would import random (tempfile) in the child
    with open(path, "w") as out:
        out.write(" ".join(sorted(name for name in looked_for if name in sys.modules)))


if __name__ == "__main__":
    method, arm, path = sys.argv[1:4]
    if arm == "traced":  # only here: a spawn child re-runs the top of this module
        import mptrace
        from tests.programs import in_memory_pipeline

        mptrace.install(tracer_provider=in_memory_pipeline()[0])
    looked_for = ("random", "sysconfig", "json", "zlib", "mptrace._channels")
    process = multiprocessing.get_context(method).Process(target=report, args=(path, looked_for))
    process.start()
    process.join()
'''


def test_a_spawn_child_imports_neither_random_nor_sysconfig_for_mptrace(tmp_path):
    """Nor the json package (the spool writes records with _json's encoder alone), nor zlib (their checksum is
    _blake2's, loaded for the keyed digests anyway), nor, while its code uses no queue or connection, what
    counts their pickles (mptrace._channels).

    A child whose program never imports ``random`` has no generator of its to hash; a spawn child running
    its parent's interpreter takes the parent's library paths (which need sysconfig) from the carrier. (A
    forkserver child has both from the server: multiprocessing.forkserver imports random, and a server that
    preloads mptrace looks the paths up.)"""
    method = "spawn"
    import subprocess
    import sys

    from tests.subprocesses import ROOT, environment

    script = tmp_path / "lean_program.py"
    script.write_text(LEAN_PROGRAM)
    loaded = {}
    for arm in ("plain", "traced"):
        found = tmp_path / ("%s.txt" % arm)
        result = subprocess.run([sys.executable, str(script), method, arm, str(found)], capture_output=True,
                                text=True, timeout=120, cwd=ROOT, env=environment({"PYTHONPATH": ROOT}))
        assert result.returncode == 0, result.stderr
        loaded[arm] = found.read_text()
    assert loaded["traced"] == loaded["plain"] == ""


UNFINGERPRINTED_PROGRAM = '''
import multiprocessing, sys


def report(path):  # into a file: a queue would import the channel modules mptrace waits for
    with open(path, "w") as out:
        out.write(" ".join(sorted(name for name in ("mptrace._descriptions", "mptrace._fingerprint",
                                                    "mptrace._modstate") if name in sys.modules)))


if __name__ == "__main__":
    import mptrace
    from tests.programs import in_memory_pipeline

    method, found = sys.argv[1:3]  # state the child compares: strings it does not hold (they diverge)
    mptrace.install(tracer_provider=in_memory_pipeline()[0])
    process = multiprocessing.get_context(method).Process(target=report, args=(found,))
    process.start()
    process.join()
'''


def test_a_spawn_child_with_nothing_to_fingerprint_does_not_import_the_fingerprint_walk(tmp_path):
    """Plain arguments (no fingerprint sent) and module state its own modules do not hold: the child compares
    the parent's state (the names diverge) with _descriptions alone, and never imports _fingerprint."""
    found = _run_reporting_program(tmp_path, UNFINGERPRINTED_PROGRAM, "spawn")
    assert found == "mptrace._descriptions mptrace._modstate"


# The end of each reporting program: install(), then one child of the start method argv[1] that runs
# report(argv[2]).
REPORT_IN_A_CHILD = '''

if __name__ == "__main__":
    import mptrace
    from tests.programs import in_memory_pipeline

    mptrace.install(tracer_provider=in_memory_pipeline()[0])
    process = multiprocessing.get_context(sys.argv[1]).Process(target=report, args=(sys.argv[2],))
    process.start()
    process.join()
'''

FINDERS_PROGRAM = '''
import multiprocessing, sys


def report(path):  # into a file: a queue would import the channel modules mptrace waits for
    from mptrace._importhook import AfterImportFinder
    waiting = [f for f in sys.meta_path if isinstance(f, AfterImportFinder)]
    with open(path, "w") as out:
        out.write("%d %s" % (len(waiting), sorted(name for name in ("multiprocessing.pool", "opentelemetry.trace")
                                                   if any(f.wanted(name) for f in waiting))))

''' + REPORT_IN_A_CHILD


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_waits_for_modules_with_one_finder(tmp_path, method):
    """A spawn or forkserver child waits for several modules (pools, OpenTelemetry, the channel modules): one
    finder holds them all, as every import the child makes asks each finder of sys.meta_path in turn."""
    found = _run_reporting_program(tmp_path, FINDERS_PROGRAM, method)
    assert found == "1 ['multiprocessing.pool', 'opentelemetry.trace']"


def _run_reporting_program(tmp_path, program, method):
    """Run ``program`` (argv: start method, a file its child reports into); what the child reported."""
    import subprocess
    import sys

    from tests.subprocesses import ROOT, environment

    script = tmp_path / "reporting_program.py"
    script.write_text(program)
    found = tmp_path / "found.txt"
    result = subprocess.run([sys.executable, str(script), method, str(found)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=environment({"PYTHONPATH": ROOT}))
    assert result.returncode == 0, result.stderr
    return found.read_text()


WATCH_PROGRAM = '''
import json, multiprocessing, random, sys

rng = random.Random(1)  # a generator the child hashes: the watch looks at this module


def report(path):
    from mptrace._modstate import _in_standard_library
    from mptrace._state import state
    decided = list(state.child.watch._decisions)
    with open(path, "w") as out:
        json.dump({"standard": [name for name in decided if _in_standard_library(name)],
                   "decided": len(decided)}, out)

''' + REPORT_IN_A_CHILD


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_childs_module_watch_decides_about_no_standard_library_module(tmp_path, method):
    """Which modules are the application's: a spawn child has some 150 of the standard library's loaded, and
    deciding about each cost it about 1 ms; none can be watched unless watch_modules names it."""
    import json

    decisions = json.loads(_run_reporting_program(tmp_path, WATCH_PROGRAM, method))
    assert decisions["standard"] == [] and decisions["decided"] > 0


NO_GENERATOR_PROGRAM = '''
import multiprocessing, sys


def report(path):  # into a file: a queue would import random (tempfile)
    with open(path, "w") as out:
        out.write(" ".join(name for name in ("random", "numpy.random", "mptrace._modstate") if name in sys.modules))


def main():  # no global set in the main block, no application module imported: no state to compare
    import mptrace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mptrace.install(tracer_provider=provider)
    process = multiprocessing.get_context(sys.argv[1]).Process(target=report, args=(sys.argv[2],))
    process.start()
    process.join()
    mptrace.flush()
    runs = [span for span in exporter.get_finished_spans() if span.name == "mp.process.run"]
    print(repr([span.attributes.get("mp.random.states") for span in runs]))


if __name__ == "__main__":
    main()
'''


def test_a_spawn_child_that_cannot_hold_a_generator_makes_no_module_watch(tmp_path):
    """Without random or numpy.random loaded, no module can hold a generator: the child says it has none
    (mp.random.states is empty, as when it looks) without listing the application's modules, which would
    load _modstate, its largest module (0.5-1 ms of a spawn child's start)."""
    import subprocess
    import sys

    from tests.subprocesses import ROOT, environment

    script = tmp_path / "no_generator_program.py"
    script.write_text(NO_GENERATOR_PROGRAM)
    found = tmp_path / "found.txt"
    result = subprocess.run([sys.executable, str(script), "spawn", str(found)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=environment({"PYTHONPATH": ROOT}))
    assert result.returncode == 0, result.stderr
    assert found.read_text() == ""
    assert result.stdout.strip() == "[()]"
