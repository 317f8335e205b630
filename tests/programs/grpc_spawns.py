"""Spawn children while an OTLP/gRPC exporter is busy (see mptrace/_grpcfork.py).

    OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=... python -m tests.programs.grpc_spawns N [grpc-first]

Starts N spawn children one after another while a thread keeps the exporter
sending; prints each child's exit code, and what each child saw of
GRPC_ENABLE_FORK_SUPPORT. With ``grpc-first`` the program imports gRPC before
``mptrace.install()``, as a program using gRPC for its own work would; with
``grpc-after``, after it (and with an exporter that does not load gRPC).
"""

import multiprocessing
import os
import sys
import threading
import time

from opentelemetry import trace


def report_variable(queue):
    queue.put(os.environ.get("GRPC_ENABLE_FORK_SUPPORT", "unset"))


def keep_exporting(stop):
    tracer = trace.get_tracer("program")
    while not stop.is_set():
        with tracer.start_as_current_span("background-work"):
            pass
        time.sleep(0.01)


def main(count, grpc_after):
    import mptrace

    mptrace.install()
    if grpc_after:
        __import__("grpc")  # loaded after install(), for the program's own work
    stop = threading.Event()
    exporting = threading.Thread(target=keep_exporting, args=(stop,))
    exporting.start()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    codes, seen = [], []
    with trace.get_tracer("program").start_as_current_span("program-work"):
        for _ in range(count):
            child = context.Process(target=report_variable, args=(queue,))
            child.start()
            child.join()
            codes.append(child.exitcode)
            if child.exitcode == 0:
                seen.append(queue.get(timeout=10))
    stop.set()
    exporting.join()
    print("exit codes:", " ".join(map(str, codes)))
    print("children saw:", " ".join(sorted(set(seen))))


if __name__ == "__main__":
    if "grpc-first" in sys.argv[2:]:
        __import__("grpc")  # loaded before install(), as by a program that uses gRPC itself
    main(int(sys.argv[1]), "grpc-after" in sys.argv[2:])
