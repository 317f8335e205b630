"""Process targets for the tests.

They live in an importable module (``tests.targets``) because spawn and
forkserver children import a target by its qualified name.
"""

import multiprocessing
import os
import sys
import time

from opentelemetry import trace

tracer = trace.get_tracer("tests.targets")


def user_span(name="user-work"):
    with tracer.start_as_current_span(name) as span:
        span.set_attribute("pid", os.getpid())


def succeed():
    user_span()


def raise_error():
    user_span()
    raise ValueError("boom in child")


def exit_with(code):
    user_span()
    sys.exit(code)


def os_exit_with(code):
    with tracer.start_as_current_span("outer-never-ended"):
        user_span()
        os._exit(code)


def signal_ready_then_sleep(ready):
    user_span()
    ready.set()
    time.sleep(60)


def start_grandchild(method):
    with tracer.start_as_current_span("child-work"):
        process = multiprocessing.get_context(method).Process(target=user_span, args=("grandchild-work",))
        process.start()
        process.join()
    if process.exitcode != 0:
        sys.exit(10 + process.exitcode)


def write_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
