"""A script that sets up its own provider and console exporter at import time.

    python tests/programs/own_provider.py METHOD

Under spawn and forkserver the top level runs again in the child (as
__mp_main__), so the child builds the same provider. mptrace must send the
child's spans home instead of letting the child print them itself.
"""

import concurrent.futures.thread  # noqa: F401  (see tests/__init__.py)
import json
import multiprocessing
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

provider = TracerProvider(resource=Resource({"service.name": "own-provider"}))
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
trace.set_tracer_provider(provider)


def child():
    with trace.get_tracer("child").start_as_current_span("child-work"):
        pass


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])
    import mptrace

    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    mptrace.install()
    process = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    process.start()
    process.join()
    mptrace.flush()
    print("MEMORY " + json.dumps(sorted(s.name for s in memory.get_finished_spans())))
