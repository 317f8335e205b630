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

    def __init__(self, wanted, callback, once=False):
        self.wanted = wanted
        self.callback = callback
        self.once = once
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
        if self.once:
            remove(self)
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


def call_after_import(name, callback):
    """``callback(module)`` once, right after module ``name`` is imported.

    One pending callback per module name: a second request for the same name
    is dropped while the first still waits.
    """
    if not any(isinstance(f, AfterImportFinder) and f.once and f.wanted(name) for f in sys.meta_path):
        install(AfterImportFinder(name.__eq__, callback, once=True))


def drop_pending(name):
    """Forget the callbacks still waiting for module ``name`` (see call_after_import)."""
    for finder in [f for f in sys.meta_path if isinstance(f, AfterImportFinder) and f.once and f.wanted(name)]:
        remove(finder)


def install(finder):
    sys.meta_path.insert(0, finder)
    return finder


def remove(finder):
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass
