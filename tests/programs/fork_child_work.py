"""Which of mptrace's functions a traced fork child runs before its target (a regression guard for start-up).

    python -m tests.programs.fork_child_work
Prints one function per line (module:name), then how many writes the child made before its target (its
spool file's header goes with its first record), then the child's exit code.
"""

import multiprocessing
import os
import sys

import mptrace
from tests.programs import in_memory_pipeline, mptrace_call_recorder

_ran = []
_writes = []
_record = mptrace_call_recorder(_ran.append, lambda function: function is os.write and _writes.append(1))


def target(write_end):
    sys.setprofile(None)
    os.write(write_end, ("\n".join(sorted(set(_ran))) + "\nwrites %d" % len(_writes)).encode())


if __name__ == "__main__":
    from opentelemetry import trace

    provider, exporter = in_memory_pipeline()
    trace.set_tracer_provider(provider)  # as most programs do
    mptrace.install()
    read_end, write_end = os.pipe()
    os.register_at_fork(after_in_child=lambda: sys.setprofile(_record))
    process = multiprocessing.get_context("fork").Process(target=target, args=(write_end,))
    process.start()
    os.close(write_end)
    ran = os.read(read_end, 1 << 20).decode()
    process.join()
    print(ran)
    print("exit code", process.exitcode)
