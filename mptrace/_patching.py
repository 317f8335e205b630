"""Every patch mptrace makes, recorded so that undoing them is one loop.

A patch is (owner, attribute, original): the object whose attribute was
replaced, the attribute's name, and exactly what ``owner.__dict__`` held before
(a function, staticmethod, ...; ``ABSENT`` when the attribute was inherited).
Undoing sets the original back (or deletes what mptrace added), so after
``uninstall()`` every patched attribute is ``is``-identical to what it was.

wrapt is imported only when a wrapt patch is made: spawn children patch one
method with a plain function (see ``replace``) and must not pay for it.
"""

import functools
from collections import namedtuple

Patch = namedtuple("Patch", "owner attribute original")
ABSENT = object()  # the owner had no attribute of its own: it inherited it


class PatchRegistry:
    def __init__(self):
        self._patches = []
        # (id(owner), attribute) -> its patches, oldest first: a fork child asks
        # is_patched() several times as it starts, and a scan of every patch
        # ran a Python generator per patch there.
        self._by_target = {}

    def __iter__(self):
        return iter(list(self._patches))

    def is_patched(self, owner, attribute):
        return (id(owner), attribute) in self._by_target

    def _record(self, patch):
        self._patches.append(patch)
        self._by_target.setdefault((id(patch.owner), patch.attribute), []).append(patch)

    def _forget(self, patch):
        """Drop ``patch`` from the records (by identity: no object's __eq__ runs)."""
        self._patches[:] = [p for p in self._patches if p is not patch]
        self._unindex(patch)

    def _unindex(self, patch):
        key = (id(patch.owner), patch.attribute)
        same = [p for p in self._by_target[key] if p is not patch]
        if same:
            self._by_target[key] = same
        else:
            del self._by_target[key]

    def wrap(self, owner, attribute, wrapper):
        """Wrap ``owner.attribute`` with a wrapt FunctionWrapper.

        ``wrapper(wrapped, instance, args, kwargs)`` follows wrapt's convention.
        """
        original = vars(owner)[attribute]
        setattr(owner, attribute, _function_wrapper(original)(original, wrapper))
        self._record(Patch(owner, attribute, original))

    def replace(self, owner, attribute, replacement):
        """Replace ``owner.attribute`` with a plain object (no wrapt); it may be one ``owner`` inherits."""
        original = vars(owner).get(attribute, ABSENT)
        setattr(owner, attribute, replacement)
        self._record(Patch(owner, attribute, original))

    def original(self, owner, attribute):
        same = self._by_target.get((id(owner), attribute))
        return same[0].original if same else vars(owner)[attribute]

    def undo(self, owner, attribute):
        """Restore one attribute."""
        same = self._by_target.get((id(owner), attribute))
        if same:
            patch = same[-1]
            _restore(patch)
            self._forget(patch)

    def undo_all(self):
        """Restore every attribute, newest patch first."""
        while self._patches:
            patch = self._patches.pop()
            _restore(patch)
            self._unindex(patch)


def _function_wrapper(original):
    """wrapt's FunctionWrapper; for a staticmethod or classmethod, one whose bound form holds no instance."""
    import wrapt

    return _class_level_wrapper() if isinstance(original, (staticmethod, classmethod)) else wrapt.FunctionWrapper


@functools.lru_cache(maxsize=None)
def _class_level_wrapper():
    """A FunctionWrapper that binds a staticmethod or classmethod through the class alone.

    ``pool._terminate_pool`` (a classmethod) is bound to the class, never to
    the pool, so ``util.Finalize(pool, pool._terminate_pool, ...)`` keeps no
    pool alive. wrapt's bound wrapper stores the instance it was reached
    through, though for these two it hands the wrapper the class or None
    instead: binding through the class changes nothing the wrapper sees, and
    keeps the original's lifetimes (else a pool in the finaliser registry lives,
    with its workers and threads, until exit).
    """
    import wrapt

    class ClassLevelWrapper(wrapt.FunctionWrapper):
        def __get__(self, instance, owner=None):
            if owner is None and instance is not None:
                owner = type(instance)
            return super().__get__(None, owner)

    return ClassLevelWrapper


def _restore(patch):
    if patch.original is ABSENT:
        delattr(patch.owner, patch.attribute)
    else:
        setattr(patch.owner, patch.attribute, patch.original)
