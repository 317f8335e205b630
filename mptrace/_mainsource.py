"""What the main module's source says about its import-time state.

Other modules get an import-time baseline from the after-import hook; the main
module is never imported, it is run, and mptrace is often installed from its
first lines. Yet its import-time state is exactly what a spawn or forkserver
child sees: the child re-runs the module as ``__mp_main__``, without the
``if __name__ == "__main__":`` block. So the baseline comes from the source,
read and parsed, never run:

* a name bound at top level, outside the main guard, to a literal
  (``MODE = "prod"``, ``LIMITS = {"retries": 3}``) has that literal as its
  import-time value;
* a name bound only inside the main guard, or only through ``global`` in a
  function, does not exist at import time;
* a name bound at top level to anything else is known only by running the
  code; if the guard or a ``global`` statement rebinds it, it was set after
  import (not portable), otherwise nothing is claimed about it.
"""

import ast
import os

from mptrace import _log

# A parsed main module per (path, size, mtime): a program has one, read once.
_cache = {}


class MainSource:
    """The main module's top-level bindings, as its source shows them."""

    def __init__(self, tree):
        self.literals = {}  # name -> its literal import-time value
        self.at_import = set()  # names bound by the code a spawn child re-runs
        self.later = set()  # names (re)bound in the main guard or through `global` in a function
        for statement in tree.body:
            if _is_main_guard(statement):
                self.later.update(_bound_names(statement.body + statement.orelse))
            else:
                self._note_import_time(statement)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.later.update(_global_names(node))

    def _note_import_time(self, statement):
        names = _bound_names([statement])
        literal = _literal_assignment(statement)
        for name in names:
            if literal is not None and name == literal[0] and name not in self.at_import:
                self.literals[name] = literal[1]
            else:  # bound again, or to something only running the code would tell
                self.literals.pop(name, None)
        self.at_import.update(names)

    def set_after_import(self, name):
        """True: the value ``name`` has now was set after import; None: the source cannot tell.

        For a name bound to a literal, compare its value with ``literals`` instead.
        """
        if name in self.at_import:
            return True if name in self.later else None
        # Not bound at import, unless a star import or a dynamic binding did it.
        return None if "*" in self.at_import else True


def _is_main_guard(statement):
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    test = statement.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    texts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(texts) == 1


def _bound_names(statements):
    """Names these statements bind in the module's namespace (not inside functions or classes)."""
    names = set()
    for statement in statements:
        for node in _module_level_nodes(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
    return names


def _module_level_nodes(statement):
    """The nodes of ``statement`` that run in the module's scope: not function or class bodies."""
    pending = [statement]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # its name is bound here; its body runs elsewhere
        pending.extend(ast.iter_child_nodes(node))


def _global_names(function):
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Global):
            names.update(node.names)
    return names


def _literal_assignment(statement):
    """(name, value) for ``name = <literal>``; None for anything else."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target, value = statement.targets[0], statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target, value = statement.target, statement.value
    else:
        return None
    if not isinstance(target, ast.Name):
        return None
    try:
        return target.id, ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def read(module):
    """The MainSource of ``module`` (``__main__``), or None when its source cannot be read."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None  # python -c, stdin, a notebook, a zipapp: nothing to read
    try:
        status = os.stat(path)
    except OSError:
        return None
    key = (path, status.st_size, status.st_mtime_ns)
    if key not in _cache:
        _cache.clear()
        _cache[key] = _log.safely("reading the main module's source", _parse, path)
    return _cache[key]


def _parse(path):
    try:
        with open(path, "rb") as f:
            return MainSource(ast.parse(f.read(), path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
