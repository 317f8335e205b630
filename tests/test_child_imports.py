"""What spawn and forkserver children import before run(): two bounded spans."""

import pytest

from tests.subprocesses import run_traced

MAIN = '''
import multiprocessing, sys
sys.path.insert(0, {generated!r})
{imports}

def work():
    pass

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
    script.write_text(MAIN.format(generated=str(generated),
                                  imports="\n".join("import gen_%03d" % i for i in range(module_count))))
    return run_traced(tmp_path, script, method)[1]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_reimport_and_unpickling_are_two_bounded_spans(tmp_path, method):
    spans = run_program(tmp_path, method, 200)
    run = [s for s in spans if s["name"] == "mp.process.run"][0]
    imports = {s["attributes"]["mp.import.phase"]: s for s in spans if s["name"] == "mp.import"}
    assert sorted(imports) == ["main", "unpickle"]
    assert all(s["parent"] == run["span_id"] for s in imports.values())
    main = imports["main"]["attributes"]
    if main["mp.import.count"] == 0 and method == "forkserver":
        pytest.skip("this Python imports the main module once, in the fork server")
    assert main["mp.import.module"].endswith("main.py")
    assert main["mp.import.count"] >= 200
    assert len(main["mp.import.slowest"]) == 8
    assert all(entry.endswith(" ms") for entry in main["mp.import.slowest"])


def test_fork_children_import_nothing(tmp_path):
    spans = run_program(tmp_path, "fork", 3)
    assert not [s for s in spans if s["name"] == "mp.import"]
