"""Keeps its processes and queues in __main__ globals, as programs often do.

    python -m tests.programs.run_traced OUT.json tests/programs/process_handles.py METHOD
"""

import multiprocessing
import sys

workers = []
mixed = [1]


def work(queue):
    queue.put(1)


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    queues = {"results": context.Queue()}
    mixed.append(queues["results"])  # a handle among other things: changed, and only because of the append
    workers.extend(context.Process(target=work, args=(queues["results"],)) for _ in range(3))
    for worker in workers:
        worker.start()
    for worker in workers:
        queues["results"].get()
        worker.join()
