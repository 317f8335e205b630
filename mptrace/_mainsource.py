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

Class attributes (``Class.attr``) of the classes defined at top level follow
the same rules: one bound in the class body to a literal (``count = 0``) has
that literal as its import-time value; one assigned through the class
(``Class.attr = x``, ``Class.attr += 1``; ``cls.attr`` in a classmethod,
``type(self).attr`` or ``self.__class__.attr`` in a method) in the main guard
or in any function was set after import; the attributes of a class defined
only in the guard do not exist at import time. Anything else (a decorator, a
metaclass, ``setattr``) is not claimed.
"""

import ast
import os
import sys

from mptrace import _log

# The last parsed main module: [(path, size, mtime in ns, its MainSource or None)]. A program has one, read
# once; it is read again when its size or modification time changed (checked at each call: one stat).
_last = [None]


class MainSource:
    """The main module's top-level bindings, as its source shows them."""

    def __init__(self, tree):
        self.literals = {}  # name -> its literal import-time value
        self.at_import = set()  # names bound by the code a spawn child re-runs
        self.later = set()  # names (re)bound in the main guard or through `global` in a function
        for statement in tree.body:
            if _is_main_guard(statement):
                self.later.update(_bound_names(statement.body + statement.orelse))
                self.later.update(_class_attribute_stores(statement))
            else:
                self._note_import_time(statement)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.later.update(_global_names(node))
                self.later.update(_class_attribute_stores(node))
            elif isinstance(node, ast.ClassDef):
                self.later.update(_stores_through_the_class(node))

    def _note_import_time(self, statement):
        names = _bound_names([statement])
        names.update(_class_attribute_stores(statement, module_level=True))  # ``Class.attr = x`` runs at import
        if isinstance(statement, ast.ClassDef):
            names.update(self._note_class_body(statement))
        literal = _literal_assignment(statement)
        for name in names:
            if literal is not None and name == literal[0] and name not in self.at_import:
                self.literals[name] = literal[1]
            elif not (isinstance(statement, ast.ClassDef) and name.startswith(statement.name + ".")):
                self.literals.pop(name, None)  # bound again, or to something only running the code would tell
        self.at_import.update(names)

    def _note_class_body(self, statement):
        """``Class.attr`` of the names the class body binds; the literal ones go to ``literals``."""
        prefix = statement.name + "."
        if statement.name in self.at_import:  # a class defined again: the first one's attributes are gone
            self.literals = {n: v for n, v in self.literals.items() if not n.startswith(prefix)}
        names, bound = set(), set()
        for body_statement in statement.body:
            literal = _literal_assignment(body_statement)
            for name in _bound_names([body_statement]):
                qualified = prefix + name
                if literal is not None and name == literal[0] and name not in bound:
                    self.literals[qualified] = literal[1]
                else:
                    self.literals.pop(qualified, None)
                bound.add(name)
                names.add(qualified)
        return names

    def set_after_import(self, name):
        """True: the value ``name`` has now was set after import; None: the source cannot tell.

        For a name bound to a literal, compare its value with ``literals`` instead.
        ``Class.attr`` is a class attribute (see the module's docstring).
        """
        owner, dot, _ = name.partition(".")
        if dot:
            if owner not in self.at_import:  # the class is defined only in the guard (or not by this source)
                return self.set_after_import(owner)
            return True if name in self.later else None
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


def _class_attribute_stores(node, module_level=False):
    """``Class.attr`` of every ``Class.attr = ...`` (or ``+=``, ``del``) under ``node``
    (``module_level``: only where it runs in the module's scope, not in a function's)."""
    nodes = _module_level_nodes(node) if module_level else ast.walk(node)
    return {"%s.%s" % (found.value.id, found.attr) for found in nodes
            if isinstance(found, ast.Attribute) and isinstance(found.ctx, (ast.Store, ast.Del))
            and isinstance(found.value, ast.Name)}


def _stores_through_the_class(class_node):
    """``Class.attr`` assigned in the class's own methods through ``cls``, ``type(self)`` or ``self.__class__``."""
    stores = set()
    for method in class_node.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) or not method.args.args:
            continue
        first = method.args.args[0].arg
        is_classmethod = any(isinstance(d, ast.Name) and d.id == "classmethod" for d in method.decorator_list)
        for found in ast.walk(method):
            if isinstance(found, ast.Attribute) and isinstance(found.ctx, (ast.Store, ast.Del)) \
                    and _names_the_class(found.value, first, is_classmethod):
                stores.add("%s.%s" % (class_node.name, found.attr))
    return stores


def _names_the_class(node, first, is_classmethod):
    """``cls`` (in a classmethod), ``type(self)`` or ``self.__class__``: the class, seen from a method."""
    if isinstance(node, ast.Name):
        return is_classmethod and node.id == first
    if isinstance(node, ast.Attribute):
        return node.attr == "__class__" and isinstance(node.value, ast.Name) and node.value.id == first
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == first)


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
    if not os.path.isabs(path):  # "python app.py": relative to where the program began, not to where it is now
        began_in = getattr(sys.modules.get("multiprocessing.process"), "ORIGINAL_DIR", None)
        if began_in:  # as multiprocessing resolves it for a spawn child (spawn.get_preparation_data)
            path = os.path.join(began_in, path)
    try:
        status = os.stat(path)
    except OSError:
        return None
    last = _last[0]  # read once: another thread may start a process too
    if last is None or last[0] != path or last[1] != status.st_size or last[2] != status.st_mtime_ns:
        last = _last[0] = (path, status.st_size, status.st_mtime_ns,
                           _log.safely("reading the main module's source", _parse, path))
    return last[3]


def _parse(path):
    try:
        with open(path, "rb") as f:
            return MainSource(ast.parse(f.read(), path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
