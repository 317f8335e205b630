"""A program that finds mptrace its own way; its children report what they see.

    python import_paths.py SPANS.json METHOD [--path DIR]... [--executable PYTHON] [--untraced] [--vanish]

``--path`` puts DIR on sys.path at run time (a vendored copy, a checkout),
``--executable`` is multiprocessing.set_executable's interpreter. Each child
prints its sys.path and what its own ``import mptrace`` gives: the output of a
traced run must equal the untraced one (but see --executable in the tests). ``--vanish`` renames the first
``--path``'s mptrace folder after a first child (as an upgrade would), then
starts a second child, which can no longer load the parent's mptrace (and
puts it back at the end).

Standard library only until the paths are in place: the interpreter running it
may have neither mptrace nor OpenTelemetry installed.
"""

import json
import multiprocessing
import os
import queue as queues
import sys


def report(answers):
    try:
        import mptrace  # the child's own import, once multiprocessing applied the parent's sys.path

        found = mptrace.__file__
    except ImportError as error:
        found = repr(error)
    answers.put({"sys_path": sys.path, "mptrace": found})


def run_child(context):
    answers = context.Queue()
    child = context.Process(target=report, args=(answers,))
    child.start()
    while True:  # a child that died never answers: do not wait for it forever
        try:
            print(json.dumps(answers.get(timeout=1)), flush=True)
            break
        except queues.Empty:
            if not child.is_alive():
                print("the child never answered", flush=True)
                break
    child.join()
    print("exit code", child.exitcode, flush=True)


def as_json(span):
    return {"name": span.name, "span_id": span.context.span_id,
            "parent": span.parent.span_id if span.parent else None,
            "attributes": dict(span.attributes)}


def main(output, method, paths, executable, traced, vanish):
    for path in reversed(paths):
        sys.path.insert(0, path)
    if executable:
        multiprocessing.set_executable(executable)
    if traced:
        import mptrace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource({"service.name": "import-paths"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context(method)
    run_child(context)
    if vanish:
        package = os.path.join(paths[0], "mptrace")
        os.rename(package, package + "-removed")
        run_child(context)
        os.rename(package + "-removed", package)  # for the next run
    if traced:
        mptrace.flush()
        with open(output, "w") as f:
            json.dump([as_json(s) for s in exporter.get_finished_spans()], f, default=list)


if __name__ == "__main__":
    arguments = sys.argv[3:]
    main(sys.argv[1], sys.argv[2],
         paths=[arguments[i + 1] for i, a in enumerate(arguments) if a == "--path"],
         executable=arguments[arguments.index("--executable") + 1] if "--executable" in arguments else None,
         traced="--untraced" not in arguments, vanish="--vanish" in arguments)
