"""Start children under every start method and show that all their spans arrive.

    python examples/hello_processes.py

Each child (and one grandchild) creates a span with the plain OpenTelemetry
API. mptrace brings every span back to this process's provider, in one trace;
the program prints that trace as a tree, one line per span, with the process
each span happened in.
"""

import multiprocessing
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mptrace

tracer = trace.get_tracer("hello_processes")


def work(label):
    with tracer.start_as_current_span("work: " + label) as span:
        span.set_attribute("label", label)


def work_and_spawn_grandchild(label):
    work(label)
    grandchild = multiprocessing.get_context("spawn").Process(target=work, args=(label + " -> grandchild",))
    grandchild.start()
    grandchild.join()


def fail(label):
    raise RuntimeError("%s failed on purpose" % label)


def print_tree(spans):
    by_parent = {}
    for span in spans:
        by_parent.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]

    def show(span, depth):
        attributes = span.attributes
        details = [attributes[k] for k in ("mp.start_method", "mp.exit.signal") if k in attributes]
        if "mp.exitcode" in attributes:
            details.append("exit %s" % attributes["mp.exitcode"])
        status = " ERROR" if span.status.status_code.name == "ERROR" else ""
        print("%s%s  [pid %s%s]%s" % (
            "  " * depth, span.name, span.resource.attributes.get("process.pid", os.getpid()),
            ", " + ", ".join(map(str, details)) if details else "", status))
        for child in sorted(by_parent.get(span.context.span_id, []), key=lambda s: s.start_time):
            show(child, depth + 1)

    for root in roots:
        show(root, 0)


def main():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "hello-processes"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    mptrace.install(tracer_provider=provider)

    with tracer.start_as_current_span("main"):
        for method in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context(method)
            child = context.Process(target=work_and_spawn_grandchild, args=(method,), name="worker-" + method)
            child.start()
            child.join()
        failing = multiprocessing.get_context("spawn").Process(target=fail, args=("spawned child",), name="failing")
        failing.start()
        failing.join()

    mptrace.flush()
    spans = exporter.get_finished_spans()
    pids = {s.resource.attributes.get("process.pid", os.getpid()) for s in spans}
    print("\n%d spans from %d processes reached this process's provider, in %d trace(s):\n" % (
        len(spans), len(pids), len({s.context.trace_id for s in spans})))
    print_tree(spans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
