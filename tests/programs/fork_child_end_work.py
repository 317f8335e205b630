"""Which of mptrace's functions a traced fork child runs after its target (a regression guard for its end).

    python -m tests.programs.fork_child_end_work
Prints one function per line (module:name), in the order they first ran, then the child's exit code,
then how many mp.process.run spans arrived ended by the child itself with exit code 0.
"""

import multiprocessing
import os
import sys

import mptrace
from tests.programs import in_memory_pipeline, mptrace_call_recorder

_ran = []
_write_end = []


def _first_run(name):
    if name not in _ran:
        _ran.append(name)


def _at_builtin(function):
    if function is os._exit:  # the child's very end: say what ran since the target
        os.write(_write_end[0], "\n".join(_ran).encode())


_record = mptrace_call_recorder(_first_run, _at_builtin)


def target():
    sys.setprofile(_record)  # from here to os._exit


if __name__ == "__main__":
    from opentelemetry import trace

    provider, exporter = in_memory_pipeline()
    trace.set_tracer_provider(provider)  # as most programs do
    mptrace.install()
    read_end, write_end = os.pipe()
    _write_end.append(write_end)
    process = multiprocessing.get_context("fork").Process(target=target)
    process.start()
    os.close(write_end)
    ran = os.read(read_end, 1 << 20).decode()
    process.join()
    print(ran)
    print("exit code", process.exitcode)
    if not mptrace.flush(timeout=60):
        sys.exit("flush() timed out")
    print(sum(1 for span in exporter.get_finished_spans() if span.name == "mp.process.run"
              and span.attributes.get("mp.exitcode") == 0 and not span.attributes.get("mp.span.synthesized")))
