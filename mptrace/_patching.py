"""Every patch mptrace makes, recorded so that undoing them is one loop.

A patch is (owner, attribute, original): the object whose attribute was
replaced, the attribute's name, and exactly what ``owner.__dict__`` held before
(a function, staticmethod, ...; ``ABSENT`` when the attribute was inherited).
Undoing sets the original back (or deletes what mptrace added), so after
``uninstall()`` every patched attribute is ``is``-identical to what it was.

wrapt is imported only when a wrapt patch is made: spawn children patch one
method with a plain function (see ``replace``) and must not pay for it, and
the root patches the start paths with plain functions that follow wrapt's
convention (``wrap_plain``): importing wrapt's package imports asyncio, and
with it ssl, email and importlib.metadata, which made every fork start of a
program that does not use them about 0.4 ms slower (see ``wrap_plain``).
"""

import functools
import types


class Patch:
    """One patch: (owner, attribute, original). A class, not a namedtuple: building a namedtuple's class
    (an exec of its source) at import cost every spawn child, which imports this module, some 0.1 ms."""

    __slots__ = ("owner", "attribute", "original")

    def __init__(self, owner, attribute, original):
        self.owner = owner
        self.attribute = attribute
        self.original = original

    def __repr__(self):
        return "Patch(owner=%r, attribute=%r, original=%r)" % (self.owner, self.attribute, self.original)


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

    def wrap_plain(self, owner, attribute, wrapper):
        """Like ``wrap``, with a plain function instead of wrapt's FunctionWrapper, for a function or a
        bound method in a module, or a plain method in a class; ``wrapper`` gets the same arguments.

        For the patches ``install()`` makes: importing wrapt's package (2.x) imports asyncio, ssl,
        email and importlib.metadata, some 8 MB of the root's memory, so every fork copied that much
        more page table (0.13 ms on a 2-core virtual machine), and each fork child's at-fork handlers
        (asyncio's among them) wrote some 70 more pages: about 0.4 ms per fork start, a tenth of one.
        """
        original = vars(owner)[attribute]
        setattr(owner, attribute, _plain_wrapper(original, wrapper, in_class=isinstance(owner, type)))
        self._record(Patch(owner, attribute, original))

    def replace(self, owner, attribute, replacement):
        """Replace ``owner.attribute`` with a plain object (no wrapt); it may be one ``owner`` inherits."""
        original = vars(owner).get(attribute, ABSENT)
        setattr(owner, attribute, replacement)
        self._record(Patch(owner, attribute, original))

    def replace_with(self, owner, attribute, factory):
        """``replace`` with ``factory(what owner.attribute is now)``, unless the factory gives that back: its
        patch does not apply here (see _child.exit_function_hook)."""
        original = getattr(owner, attribute)
        replacement = factory(original)
        if replacement is not original:
            self.replace(owner, attribute, replacement)

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


def _plain_wrapper(original, wrapper, in_class):
    """A function that calls ``wrapper(wrapped, instance, args, kwargs)`` as wrapt's FunctionWrapper does;
    functools.wraps gives it the original's name, docstring and ``__wrapped__``."""
    if in_class:
        if not isinstance(original, types.FunctionType):
            raise TypeError("wrap_plain patches plain methods only, not %r" % (original,))

        def method(self, *args, **kwargs):
            return wrapper(original.__get__(self, type(self)), self, args, kwargs)

        return functools.wraps(original)(method)
    instance = getattr(original, "__self__", None) if isinstance(original, types.MethodType) else None

    def function(*args, **kwargs):
        return wrapper(original, instance, args, kwargs)

    return functools.wraps(original)(function)


def _function_wrapper(original):
    """wrapt's FunctionWrapper; for a staticmethod or classmethod, one whose bound form holds no instance."""
    import wrapt

    return _class_level_wrapper() if isinstance(original, (staticmethod, classmethod)) else wrapt.FunctionWrapper


_class_level = []  # the ClassLevelWrapper class, once made (not functools.lru_cache: its wrapper at import)


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
    if _class_level:
        return _class_level[0]
    import wrapt

    class ClassLevelWrapper(wrapt.FunctionWrapper):
        def __get__(self, instance, owner=None):
            if owner is None and instance is not None:
                owner = type(instance)
            return super().__get__(None, owner)

    _class_level.append(ClassLevelWrapper)
    return ClassLevelWrapper


def _restore(patch):
    if patch.original is ABSENT:
        delattr(patch.owner, patch.attribute)
    else:
        setattr(patch.owner, patch.attribute, patch.original)
