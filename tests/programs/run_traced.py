"""Run a script as __main__ with mptrace installed; write every span as JSON.

    python -m tests.programs.run_traced OUTPUT.json SCRIPT [ARGS...]
"""

import json
import runpy
import sys

import mptrace
from tests.programs import in_memory_pipeline


def as_json(span):
    return {
        "name": span.name, "span_id": span.context.span_id, "trace_id": span.context.trace_id,
        "parent": span.parent.span_id if span.parent else None, "status": span.status.status_code.name,
        "description": span.status.description, "attributes": dict(span.attributes),
        "pid": span.resource.attributes.get("process.pid"),
        "events": [{"name": e.name, "attributes": dict(e.attributes)} for e in span.events],
        "start": span.start_time, "end": span.end_time,
    }


if __name__ == "__main__":
    output, script = sys.argv[1], sys.argv[2]
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    sys.argv = sys.argv[2:]
    sys.path.insert(0, script.rsplit("/", 1)[0] if "/" in script else ".")
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        mptrace.flush()
        with open(output, "w") as f:
            json.dump([as_json(s) for s in exporter.get_finished_spans()], f, default=list)
