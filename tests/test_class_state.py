"""Class-level state: what a spawn child loses when it re-imports a class the parent changed.

Classes travel by reference: a spawn or forkserver child imports the class
afresh, with its class body's values, whatever the parent did to it at run
time, even when an instance of it is passed in the arguments.
"""

import ast
import os
import re
import sys
import textwrap
import types

import pytest

from mptrace import _mainsource, _modstate
from mptrace.testing import SpanRecorder
from tests.subprocesses import ROOT, run_traced
from tests.test_cli import mptrace

PROGRAM = os.path.join(ROOT, "tests", "programs", "class_state.py")
CHANGED = ["__main__.Registry.entries", "class_settings.Counter.count", "class_settings.Job.retries"]


def run_class_state_program(start_method, tmp_path):
    result, spans = run_traced(tmp_path, PROGRAM, start_method)
    [launch] = [s for s in spans if s["name"] == "mp.process"]
    [run] = [s for s in spans if s["name"] == "mp.process.run"]
    return result.stdout, launch, run


def test_class_attributes_changed_after_import(start_method, tmp_path):
    out, launch, run = run_class_state_program(start_method, tmp_path)
    # Under every start method: what a spawn or forkserver child would not see, and which argument carries it.
    assert launch["attributes"]["mp.state.not_portable"] == CHANGED
    assert launch["attributes"]["mp.args.class_state_not_portable"] == ["args[0]: class_settings.Job.retries"]
    if start_method == "fork":
        assert out == "child: nightly, 5 retries; 3 requests counted\n"
        assert run["attributes"]["mp.state.diverged"] == []
        return
    assert out == "child: nightly, 1 retries; 0 requests counted\n"  # the bug the trace explains
    assert run["attributes"]["mp.state.diverged"] == CHANGED
    differences = {e["attributes"]["mp.state.name"]: e["attributes"]["mp.state.differences"]
                   for e in run["events"] if e["name"] == "mp.state.diverged"}
    assert differences == {
        "__main__.Registry.entries": ["__main__.Registry.entries: parent 1, child 0"],
        "class_settings.Counter.count": ["class_settings.Counter.count: parent 3, child 0"],
        "class_settings.Job.retries": ["class_settings.Job.retries: parent 5, child 1"],
    }


@pytest.mark.parametrize("start_method", ["spawn"])
def test_the_tree_names_the_class_attributes_and_the_argument(start_method, tmp_path):
    code, out, err = mptrace("run", "--start-method", start_method, "--trace-file", str(tmp_path / "trace.json"),
                             PROGRAM, cwd=str(tmp_path))
    assert code == 0, err
    shown = " ".join(re.sub("[│├└─]", " ", err).split())  # the tree wraps long lines at the terminal's width
    assert "state diverged: __main__.Registry.entries: parent 1, child 0; class_settings.Counter.count: " \
           "parent 3, child 0; class_settings.Job.retries: parent 5, child 1" in shown, err
    assert "class state of arguments changed after import (a spawn or forkserver child re-imports the class): " \
           "args[0]: class_settings.Job.retries" in shown, err


def test_compare_says_what_the_child_got_of_the_class_state(tmp_path):
    code, out, err = mptrace("compare", "--start-methods", "fork,spawn", PROGRAM, cwd=str(tmp_path))
    assert code == 0, err
    differences = " ".join(out[out.index("What differs:"):].split())  # the console wraps long lines
    assert "state diverged differs: fork: -; spawn: __main__.Registry.entries: parent 1, child 0; " \
           "class_settings.Counter.count: parent 3, child 0; class_settings.Job.retries: parent 5, child 1" \
           in differences
    assert "argument class state differs: fork: args[0]: class_settings.Job.retries (inherited with the memory); " \
           "spawn: args[0]: class_settings.Job.retries (re-imported without it)" in differences


USER_MODULE = '''
class Counter:
    count = 0

    def __init__(self, name):
        self.name = name


def report(counter):
    print(counter.name, Counter.count)
'''


def test_assert_state_inherited_fails_for_a_diverged_class_attribute(context, start_method, tmp_path, monkeypatch):
    name = "class_counter.Counter.count"
    (tmp_path / "class_counter.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_module_after_test(monkeypatch, "class_counter")  # imported afresh by each test
    with SpanRecorder() as recorder:
        import class_counter as counters  # imported while traced: its import-time state is the baseline

        counters.Counter.count += 1
        process = context.Process(target=counters.report, args=(counters.Counter("a"),))
        process.start()
        process.join(60)
        [found] = recorder.processes()
        assert found.not_portable == (name,)
        assert found.class_state_not_portable == ("args[0]: " + name,)
        if start_method == "fork":
            recorder.assert_state_inherited(name)
            return
        assert name in found.diverged
        recorder.assert_state_diverged(name)
        with pytest.raises(AssertionError) as failure:
            recorder.assert_state_inherited(name)
    message = str(failure.value)
    assert "expected %s to inherit %s from its parent, but it saw something else" % (found.name, name) in message
    assert "%s: parent 1, child 0" % name in message, message  # the tree under it


WORKER_MODULE = '''
import multiprocessing


class Worker(multiprocessing.get_context("spawn").Process):
    runs = 0  # the parent counts the workers it started


class Settings:
    level = "info"


def check(settings_class):
    pass
'''


def forget_module_after_test(monkeypatch, name):
    """Import ``name`` afresh in the test, and drop it after: its changed class state must not
    show up in the trees of later tests in this process."""
    monkeypatch.setitem(sys.modules, name, None)  # records "absent" (or the old module) for teardown
    monkeypatch.delitem(sys.modules, name)


def test_a_process_subclass_and_a_class_argument_carry_their_class_state(tmp_path, monkeypatch):
    (tmp_path / "class_workers.py").write_text(WORKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_module_after_test(monkeypatch, "class_workers")
    with SpanRecorder() as recorder:
        import class_workers

        class_workers.Worker.runs += 1
        class_workers.Settings.level = "debug"
        process = class_workers.Worker(target=class_workers.check, kwargs={"settings_class": class_workers.Settings})
        process.start()
        process.join(60)
        [found] = recorder.processes()
        assert found.class_state_not_portable == (
            "process: class_workers.Worker.runs", "kwargs['settings_class']: class_workers.Settings.level")
        assert [name for name in found.diverged if name.startswith("class_workers.")] == [
            "class_workers.Settings.level", "class_workers.Worker.runs"]  # (pytest-xdist's __main__ differs too)


def test_only_state_is_watched_and_no_code_runs_to_read_it():
    module = types.ModuleType("shapes")
    exec(textwrap.dedent('''
        import enum
        import functools
        from collections import OrderedDict  # another module's class: watched there

        class Meta(type):
            def __getattr__(cls, name):
                raise AssertionError("the metaclass's __getattr__ ran")

            def __eq__(cls, other):
                raise AssertionError("the metaclass's __eq__ ran")

            __hash__ = type.__hash__

        class Shape(metaclass=Meta):
            sides = 0
            _registry = {}
            __slots__ = ()

            def area(self):
                pass

            @property
            def name(self):
                raise AssertionError("the property ran")

            @staticmethod
            def unit():
                pass

            @classmethod
            def make(cls):
                pass

            @functools.cached_property
            def cached(self):
                pass

            class Nested:
                depth = 1

        class Color(enum.Enum):
            RED = 1

        Alias = Shape  # the same class again: watched once, under its own name
        LIMIT = 3
    '''), module.__dict__)
    assert sorted(_modstate.state_of(module)) == ["LIMIT", "Shape._registry", "Shape.sides"]


def test_each_class_is_bounded():
    module = types.ModuleType("wide")
    exec("class Wide:\n" + "".join("    a%03d = %d\n" % (i, i) for i in range(_modstate.MAX_CLASS_NAMES + 5)),
         module.__dict__)
    assert len(_modstate.state_of(module)) == _modstate.MAX_CLASS_NAMES


def test_a_class_attribute_changed_in_place_is_not_portable():
    """The same object, changed inside: the per-class cache keeps only immutable values, so this still shows."""
    module = types.ModuleType("registry")
    module.__file__ = "registry.py"
    exec("class Plugins:\n    loaded = []\n    name = 'x'\n", module.__dict__)
    watch = _modstate.ModuleWatch(include=["registry"], key=b"k" * 16)
    watch.watched_modules = lambda: [("registry", module)]
    watch.record_baseline(module)
    assert watch.state_at_start()[1] == []
    module.Plugins.loaded.append("csv")
    assert watch.state_at_start()[1] == ["registry.Plugins.loaded"]
    module.Plugins.name = "y"
    assert watch.state_at_start()[1] == ["registry.Plugins.loaded", "registry.Plugins.name"]


MAIN_SOURCE = '''
class Counter:
    count = 0
    seen = make_set()
    made = make()

    def remember(self):
        type(self).seen = make_set()

    @classmethod
    def reset(cls):
        cls.made = None


class Fixed:
    size = 1


Fixed.size = 2  # at import: a spawn child runs this too


def handle():
    Counter.count += 1


if __name__ == "__main__":
    class Late:
        flag = True
'''


def test_the_main_modules_source_tells_its_class_attributes():
    source = _mainsource.MainSource(ast.parse(MAIN_SOURCE))
    told = {name: (source.literals.get(name), source.set_after_import(name)) for name in (
        "Counter.count", "Counter.seen", "Counter.made", "Fixed.size", "Late.flag", "Counter.other")}
    assert told == {
        "Counter.count": (0, True),  # a literal in the class body: compared by value
        "Counter.seen": (None, True),  # assigned through type(self) in a method
        "Counter.made": (None, True),  # assigned through cls in a classmethod
        "Fixed.size": (None, None),  # assigned at import, outside the guard: nothing to claim
        "Late.flag": (None, True),  # the class exists only once the main block ran
        "Counter.other": (None, None),  # not in the source: a decorator or a metaclass may have set it
    }
