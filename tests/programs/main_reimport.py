"""Run as a script: its top level runs again in spawn children (as __mp_main__).

    python tests/programs/main_reimport.py METHOD OUTPUT

In a child, the top level records whether mptrace had already instrumented
the process when the main module was re-imported.
"""

import multiprocessing
import sys

if __name__ == "__mp_main__":
    import multiprocessing.process as _mp_process

    _bootstrap = vars(_mp_process.BaseProcess)["_bootstrap"]
    with open(sys.argv[2], "a") as _out:
        _out.write("%s %s\n" % (__name__, getattr(_bootstrap, "__module__", None)))


def child():
    pass


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    import mptrace

    mptrace.install(tracer_provider=TracerProvider(resource=Resource({"service.name": "reimport"})))
    process = multiprocessing.get_context(sys.argv[1]).Process(target=child)
    process.start()
    process.join()
    sys.exit(process.exitcode)
