"""A program with its own fork server preload list; its forkserver child reports what it had to import.

    cd tests/programs && python forkserver_preload.py SPANS.json install-first|server-first

Run from its own folder: the fork server imports its preload module
``fork_snapshot`` from its working directory (and not through the package
``tests.programs``, which imports OpenTelemetry).

``install-first`` calls mptrace.install() before the fork server starts, as
real programs do; ``server-first`` starts the server before install(). The
child prints, as JSON, the mptrace modules it imported itself (not forked with
from the server), what the server held when it forked the child, and whether
the program's own preload module was preloaded there.
"""

import json
import multiprocessing
import sys


def report(answers):
    import fork_snapshot

    began_with = fork_snapshot.began_with or []
    own = [name for name in sys.modules if name == "mptrace" or name.startswith("mptrace.")]
    preload = sys.modules.get("mptrace._preload")
    answers.put({"imported": sorted(set(own) - set(began_with)),
                 "server_held": began_with,
                 "loaded_for_mptrace": sorted(getattr(preload, "LOADED", ())),
                 "own_preload_ran": fork_snapshot.began_with is not None})


def as_json(span):
    return {"name": span.name, "span_id": span.context.span_id,
            "parent": span.parent.span_id if span.parent else None, "attributes": dict(span.attributes)}


def main(output, order):
    import mptrace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fork_snapshot"])
    if order == "server-first":
        from multiprocessing import forkserver

        forkserver.ensure_running()
    mptrace.install(tracer_provider=provider)
    answers = context.Queue()
    child = context.Process(target=report, args=(answers,))
    child.start()
    print(json.dumps(answers.get(timeout=60)), flush=True)
    child.join()
    mptrace.flush()
    with open(output, "w") as f:
        json.dump([as_json(span) for span in exporter.get_finished_spans()], f, default=list)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
