"""Starts one child that starts one grandchild; prints the spans as JSON.

    python -m tests.programs.tree CHILD_METHOD GRANDCHILD_METHOD
"""

import json
import multiprocessing
import sys


import mptrace
from tests.programs import in_memory_pipeline
from tests import targets

if __name__ == "__main__":
    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    child = multiprocessing.get_context(sys.argv[1]).Process(target=targets.start_grandchild, args=(sys.argv[2],))
    child.start()
    child.join()
    mptrace.flush()
    print(json.dumps({"exitcode": child.exitcode, "spans": [
        {"name": s.name, "span_id": s.context.span_id, "parent": s.parent.span_id if s.parent else None,
         "trace_id": s.context.trace_id, "pid": s.resource.attributes.get("process.pid")}
        for s in exporter.get_finished_spans()]}))
