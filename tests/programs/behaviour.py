"""A program whose output and exit code must not change under mptrace.

    python -m tests.programs.behaviour METHOD [--traced]
"""

import multiprocessing
import sys


def square(queue, n):
    print("child", n, flush=True)
    queue.put(n * n)


def fail():
    raise KeyError("child failure")


def main():
    method = sys.argv[1]
    if "--traced" in sys.argv:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        import mptrace

        mptrace.install(tracer_provider=TracerProvider(resource=Resource({"service.name": "behaviour"})))
    context = multiprocessing.get_context(method)
    queue = context.SimpleQueue()
    children = [context.Process(target=square, args=(queue, n)) for n in range(3)]
    for child in children:
        child.start()
        child.join()
    print("results", sorted(queue.get() for _ in children))
    failing = context.Process(target=fail)
    failing.start()
    failing.join()
    print("exitcodes", [c.exitcode for c in children], failing.exitcode)
    sys.exit(3)


if __name__ == "__main__":
    main()
