"""A spawn or forkserver child: which library modules its parent's answers spared it.

    cd <repository> && python tests/programs/library_answers.py spawn|forkserver
    cd <repository> && python -c "$(cat tests/programs/library_answers.py)" spawn|forkserver

The main module imports OpenTelemetry's API at its top level, as an
application does. Run as a file, the child runs that import again, and the
parent sends it the library modules it found; run as ``-c``, the child runs
no main module again, and is sent none. Prints JSON: the directories the
child resolved to tell the application's modules from libraries', the modules
whose answer its parent sent, and the child's exit code.
"""

import importlib
import json
import multiprocessing
import os
import sys

importlib.import_module("opentelemetry.trace")  # what a child of the file imports again, with the main module

if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # the repository: tests.targets, importable by the child too
    import mptrace
    from tests import targets
    from tests.programs import in_memory_pipeline

    provider, exporter = in_memory_pipeline()
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context(sys.argv[1])
    outbox = context.Queue()
    child = context.Process(target=targets.report_resolved_directories, args=(outbox,))
    child.start()
    resolved, adopted = outbox.get(timeout=60)
    child.join(60)
    print(json.dumps({"resolved": resolved, "adopted": adopted, "exitcode": child.exitcode}))
