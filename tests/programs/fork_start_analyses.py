"""The function objects the parent's analyses of a fork start make (a regression guard for start-up).

    python -m tests.programs.fork_start_analyses
Prints one line per comprehension, generator expression or lambda of the analyses run before a fork
(module state: of the main module, of modules imported before and after install(); threads, inherited
descriptors, random generators) that ran during the measured starts, then the children's exit codes.
Each one is a function object made at every start (a comprehension's too, before 3.12): memory the
parent writes again after every fork.
"""

import multiprocessing
import os
import random
import sys

import mptrace

ANALYSES = ("_record_module_state", "_thread_attributes", "_record_inherited_fds", "_random_generators")
MADE_PER_CALL = ("<genexpr>", "<listcomp>", "<setcomp>", "<dictcomp>", "<lambda>")
# The analyses' own modules (a fingerprint's walk, in _fingerprint, is not looked at here).
OWN_FILES = ("_modstate.py", "_mainsource.py", "_fds.py", "_randomstate.py", "_parent.py")
LIMITS = {"retries": 3}  # a literal: compared as written at each start


class Settings:
    mode = "prod"  # class-level state, read at each start
    generator = random.Random(1)


def target():
    pass


def _within_analyses(frame):
    while frame is not None:
        if frame.f_code.co_name in ANALYSES:
            return True
        frame = frame.f_back
    return False


def _recorder(found):
    def record(frame, event, arg):
        if (event == "call" and frame.f_code.co_name in MADE_PER_CALL
                and os.path.basename(frame.f_code.co_filename) in OWN_FILES and _within_analyses(frame.f_back)):
            found.add("%s:%d %s" % (os.path.basename(frame.f_code.co_filename), frame.f_code.co_firstlineno,
                                    frame.f_code.co_name))
    return record


if __name__ == "__main__":
    from opentelemetry import trace

    from tests.programs import in_memory_pipeline

    provider, exporter = in_memory_pipeline()
    trace.set_tracer_provider(provider)
    mptrace.install()
    from tests.programs import class_settings, state_module  # imported traced: compared with their baselines

    class_settings.Counter.bump()
    state_module.settings["mode"] = "changed"
    results = []  # bound after import: not portable
    shared = random.Random(2)  # a generator the children would share
    made = set()
    os.register_at_fork(after_in_child=lambda: sys.setprofile(None))
    context = multiprocessing.get_context("fork")
    for _ in range(3):  # the first starts fill what later ones keep
        process = context.Process(target=target)
        process.start()
        process.join()
        results.append(process.exitcode)
    for _ in range(3):
        sys.setprofile(_recorder(made))
        process = context.Process(target=target)
        process.start()
        sys.setprofile(None)
        process.join()
        results.append(process.exitcode)
    for line in sorted(made):
        print(line)
    print("exit codes", results)
