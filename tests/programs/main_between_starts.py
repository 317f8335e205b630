"""Changes its main module's globals between starts: a list that grows at each start, a list inside a
tuple, a global created and deleted at run time, a class attribute, each put back as written at the end.
Each start must report the main module as it is then, under every start method.

    python -m tests.programs.run_traced OUT.json tests/programs/main_between_starts.py METHOD
"""

import multiprocessing
import sys

MODE = "prod"
PAIR = ("jobs", [])  # a tuple, not immutable: it holds a list
RESULTS = []  # grows by one exit code at each start


class Counter:
    limit = 1


def start(context, step):
    process = context.Process(target=print, args=(Counter(),), name=step)
    process.start()
    process.join()
    RESULTS.append(process.exitcode)


def main(method):
    global MODE
    context = multiprocessing.get_context(method)
    start(context, "untouched")
    start(context, "appended")
    PAIR[1].append("job")
    start(context, "nested in place")
    globals()["DYNAMIC"] = 1  # a global the source never binds
    MODE = "test"
    Counter.limit = 2
    start(context, "rebound")
    PAIR[1].clear()
    del globals()["DYNAMIC"]
    MODE = "".join(["pr", "od"])  # as written, another object
    Counter.limit = 1
    RESULTS.clear()
    start(context, "as written again")


if __name__ == "__main__":
    main(sys.argv[1])
