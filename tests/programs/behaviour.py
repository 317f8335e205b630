"""A program whose output and exit code must not change under mptrace.

    python -m tests.programs.behaviour METHOD [--traced | --uninstalled | --quiet-first]

``--quiet-first``: start one child that does nothing first. ``--uninstalled``:
the same, traced (under forkserver, that starts the fork server, which mptrace
prepares for its children), then ``uninstall()`` before the rest.
"""

import multiprocessing
import sys


def square(queue, n):
    print("child", n, flush=True)
    queue.put(n * n)


def quiet():
    pass


def fail():
    raise KeyError("child failure")


def main():
    method = sys.argv[1]
    context = multiprocessing.get_context(method)
    if "--traced" in sys.argv or "--uninstalled" in sys.argv:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        import mptrace

        mptrace.install(tracer_provider=TracerProvider(resource=Resource({"service.name": "behaviour"})))
    if "--uninstalled" in sys.argv or "--quiet-first" in sys.argv:
        first = context.Process(target=quiet)
        first.start()
        first.join()
    if "--uninstalled" in sys.argv:
        mptrace.uninstall()
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
