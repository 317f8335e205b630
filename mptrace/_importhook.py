"""Run code right after a module has executed, without wrapt.

A ``sys.meta_path`` finder that finds the module's spec through the finders
after it (so the import system searches once, as usual), and wraps the loader
so that ``callback(module)`` runs once the module's code has run. Spawn
children use it too, so it needs only the standard library.
"""

import sys

from mptrace import _log


class AfterImportFinder:
    """Calls ``callback(module)`` after each module for which ``wanted(name)`` is true."""

    def __init__(self, wanted, callback):
        self.wanted = wanted
        self.callback = callback
        self._finding = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self._finding or not self.wanted(fullname):
            return None
        self._finding.add(fullname)
        try:
            spec = self._spec_from_the_others(fullname, path, target)
        except Exception:
            return None  # let the import system report it as usual
        finally:
            self._finding.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _CallbackLoader(spec.loader, self)
        return spec

    def _spec_from_the_others(self, fullname, path, target):
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def fire(self, module):
        _log.safely("running an after-import hook", self.callback, module)


class _CallbackLoader:
    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._finder.fire(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def call_after_import(name, callback, key=None):
    """``callback(module)`` once, right after module ``name`` is imported.

    One pending callback per module name and ``key``: a second request for the
    same pair is dropped while the first still waits; callbacks of different
    keys (different owners: a spawn child's own, install()'s) all run, oldest
    first. All of them wait in one finder: every import a process makes asks
    each finder of ``sys.meta_path`` in turn.
    """
    global _pending_finder
    _pending.setdefault(name, {}).setdefault(key, callback)
    if _pending_finder is None or _pending_finder not in sys.meta_path:
        _pending_finder = install(AfterImportFinder(_pending.__contains__, _run_pending))


def drop_pending(name, key=None):
    """Forget the callback of ``key`` still waiting for module ``name`` (see call_after_import)."""
    callbacks = _pending.get(name)
    if callbacks is not None:
        callbacks.pop(key, None)
        if not callbacks:
            del _pending[name]
    _remove_pending_finder_if_done()


# The callbacks waiting for a module (see call_after_import): {module name: {key: callback}}, and their finder.
_pending = {}
_pending_finder = None


def _run_pending(module):
    callbacks = _pending.pop(getattr(module, "__name__", None), {})
    _remove_pending_finder_if_done()
    for callback in callbacks.values():  # each on its own: one that fails leaves the others to run
        _log.safely("running an after-import hook", callback, module)


def _remove_pending_finder_if_done():
    global _pending_finder
    if not _pending and _pending_finder is not None:
        remove(_pending_finder)
        _pending_finder = None


def install(finder):
    sys.meta_path.insert(0, finder)
    return finder


def remove(finder):
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass
