"""Children that die before run(), one way per CASE.

    python tests/programs/prerun_failures.py METHOD CASE

CASE (each needs a spawn or forkserver child; under fork nothing fails):

* import: the main module's top level imports a module the child cannot find
  (it stands for a dependency missing from the child's path);
* syntax: the top level imports a module with a syntax error;
* setstate: an argument's ``__setstate__`` raises while the child rebuilds it;
* missing-target: the target lives in a module the parent loaded by path,
  which the child cannot import.
"""

import importlib.util
import multiprocessing
import os
import sys
import tempfile

CASE = sys.argv[2] if len(sys.argv) > 2 else ""

if __name__ == "__mp_main__" and CASE == "import":  # the child re-runs the top level
    import prerun_module_the_child_lacks  # noqa: F401
if __name__ == "__mp_main__" and CASE == "syntax":
    import prerun_broken_plugin  # noqa: F401


class Fragile:
    def __getstate__(self):
        return {"size": 3}

    def __setstate__(self, state):
        raise ValueError("Fragile cannot be rebuilt here")


def work(*args):
    print("work ran")


def module_loaded_by_path(directory):
    path = os.path.join(directory, "prerun_loaded_by_path.py")
    with open(path, "w") as f:
        f.write("def work():\n    print('work ran')\n")
    spec = importlib.util.spec_from_file_location("prerun_loaded_by_path", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main():
    context = multiprocessing.get_context(sys.argv[1])
    directory = tempfile.mkdtemp()
    target, args = work, ()
    if CASE == "syntax":
        with open(os.path.join(directory, "prerun_broken_plugin.py"), "w") as f:
            f.write("VALUE = 1\ndef broken(:\n    pass\n")
        sys.path.insert(0, directory)
    elif CASE == "setstate":
        args = (Fragile(),)
    elif CASE == "missing-target":
        target = module_loaded_by_path(directory).work
    process = context.Process(target=target, args=args)
    process.start()
    process.join()
    import shutil  # here: the tests name lines above

    shutil.rmtree(directory, ignore_errors=True)
    print("exit code", process.exitcode)


if __name__ == "__main__":
    main()
