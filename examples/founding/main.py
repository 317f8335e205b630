"""The program mptrace was founded on.

On Linux up to Python 3.13 (fork) it prints ``1 2 3`` and ``1``; on Windows,
macOS, or Linux from 3.14 (spawn, forkserver) it prints ``__getstate__``,
``1 2 0`` and ``None``:

* ``import_mock.to_mock`` is set after import: a fork child is a copy of the
  parent and sees 1, a spawn child re-imports ``import_mock`` and sees None;
* ``A.__getstate__`` drops ``c``: only pickling runs it, and only spawn and
  forkserver pickle the arguments.

    python examples/founding/main.py [fork|spawn|forkserver]
"""

import multiprocessing
import sys

import import_mock


class A:
    def __init__(self):
        self.a, self.b, self.c = 1, 2, 3

    def __getstate__(self):
        print("__getstate__", flush=True)
        state = self.__dict__.copy()
        state["c"] = 0
        return state


def show(obj):
    print(obj.a, obj.b, obj.c, flush=True)
    print(import_mock.to_mock, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        multiprocessing.set_start_method(sys.argv[1])
    import_mock.to_mock = 1
    process = multiprocessing.Process(target=show, args=(A(),))
    process.start()
    process.join()
