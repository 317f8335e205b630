"""Random generators a child starts with: identical ones make sibling workers draw identical streams.

A fork child is a copy of its parent, generators included: two workers that
draw from a module-level ``random.Random()`` or from numpy's legacy global
generator draw the same numbers. (The ``random`` module's own global generator
is the exception: CPython reseeds it in every fork child.) A spawn or
forkserver child re-creates a module-level ``random.Random(42)`` in the same
state in every child too.

When ``run()`` begins, each child hashes the state of the generators it can
see (keyed with the process tree's digest key, so a hash on a span cannot be
matched against known seeds) and reports ``name:hash`` in
``mp.random.states``; a pool or executor worker with an initializer hashes
them again when the initializer returns. A fork child's parent finds the
generators for it, just before the fork (see ``generators``); the child only
hashes them. Which processes share a state is seen only where all runs are:
the tree, ``mptrace compare`` and ``mptrace.testing`` (``shared_states``).

Looked at: the ``random`` module's global generator (``random``) when the
child has imported that module (never imported here: a spawn child that has
not imported it has no such generator yet, and the one it makes when it does
is seeded afresh; not under fork, where CPython reseeds it in the child),
numpy's legacy global
``RandomState`` (``numpy.random``) when numpy is already imported (never
imported here), and ``random.Random``, numpy ``RandomState`` and
``Generator`` objects held by globals of watched modules. At most
MAX_GENERATORS are hashed; the rest are named in ``mp.random.unknown``.
Standard library only: spawn children run it.
"""

import importlib
import sys
from array import array

from mptrace._blake import blake2b

MAX_GENERATORS = 16  # hashed per child; more are named in mp.random.unknown
MAX_UNKNOWN = 16  # names listed in mp.random.unknown
HASH_BYTES = 6  # a short hash: 12 hex digits tell states apart, and reveal nothing
GLOBAL_RANDOM = "random"  # the name of the random module's global generator
NUMPY_GLOBAL = "numpy.random"  # the name of numpy's legacy global RandomState


# The modules whose classes make the generators looked at: with neither loaded, no process holds one.
GENERATOR_MODULES = ("random", "numpy.random")


def any_generator_possible():
    """Whether this process can hold a generator at all: one of GENERATOR_MODULES is loaded.

    Asked before the application's modules are listed (a module watch): a spawn child that never imported
    either module need not make one (nor load _modstate, its largest module) to learn that it has none."""
    modules = sys.modules
    for name in GENERATOR_MODULES:  # a loop, not any() of a generator: no function object made per start
        if modules.get(name) is not None:
            return True
    return False


def generators(modules, fork=False):
    """``[(name, namespace, key)]``: where the generators live (``namespace[key]``), the global ones first, then
    those held by globals of ``modules`` (``[(module name, module)]``); each generator under its first name.

    ``fork``: for a fork child, found in its parent just before the fork (the parent's memory is warm; in the
    child every first touch costs a copy-on-write fault). The child then hashes what each place holds when its
    run() begins, after every at-fork hook (one that reseeds a generator is how a program fixes the sharing).
    The random module's global generator is left out: CPython reseeds it in every fork child.
    """
    random = sys.modules.get("random")  # never imported here: a child that has not, has no generator from it
    found = [] if fork or random is None else [(GLOBAL_RANDOM, vars(random), "_inst")]
    numpy_random = sys.modules.get("numpy.random")
    numpy_classes = ()
    if numpy_random is not None:
        mtrand = sys.modules.get("numpy.random.mtrand")
        if mtrand is not None:
            found.append((NUMPY_GLOBAL, vars(mtrand), "_rand"))
        for name in ("RandomState", "Generator"):  # a loop, not a generator: no function object made per start
            numpy_class = getattr(numpy_random, name, None)
            if isinstance(numpy_class, type):
                numpy_classes += (numpy_class,)
    random_class = getattr(random, "Random", None)
    kinds = ((random_class,) if isinstance(random_class, type) else ()) + numpy_classes
    if kinds:  # else no value can be one
        # Loaded at first use, not with this module (see any_generator_possible); not by a from-import, whose
        # Python code a forking parent would run at every start.
        _modstate = sys.modules.get("mptrace._modstate") or importlib.import_module("mptrace._modstate")
        for module_name, module in modules:
            namespace = _modstate.own_namespace(module) or {}
            for name in _modstate.namespace_names(namespace, module_name)[1]:  # values only: no (name, value) tuples
                value = dict.get(namespace, name)
                if isinstance(value, kinds) and not isinstance(value, type):
                    found.append(("%s.%s" % (module_name, name), namespace, name))
    if not found:
        return found
    seen, unique = set(), []
    for name, namespace, key in found:
        generator = namespace.get(key)
        if generator is not None and id(generator) not in seen:
            seen.add(id(generator))
            unique.append((name, namespace, key))
    return unique


def states(places, key):
    """(``["name:hash", ...]``, ``[names not hashed]``): the states of the generators at ``places`` (see
    generators) now. A place that no longer holds a generator is left out."""
    hashed, unknown = [], []
    for name, namespace, attribute in places:
        generator = namespace.get(attribute)
        if generator is None:
            continue
        if len(hashed) >= MAX_GENERATORS:
            unknown.append(name)
            continue
        digest = state_hash(generator, key)
        if digest is None:
            unknown.append(name)  # a generator without a readable state (SystemRandom, a broken subclass)
        else:
            hashed.append("%s:%s" % (name, digest))
    return hashed, unknown[:MAX_UNKNOWN]


def state_hash(generator, key):
    """The keyed hash (hex) of a generator's state, or None if it has none that can be read."""
    try:
        state = _state_of(generator)
        digest = blake2b(key=key or b"", digest_size=HASH_BYTES)
        digest.update(type(generator).__qualname__.encode())
        _feed(digest, state, 0)
    except Exception:
        return None
    return digest.hexdigest()


def _state_of(generator):
    bit_generator = getattr(generator, "bit_generator", None)  # numpy's Generator
    if bit_generator is not None:
        return bit_generator.state
    get_state = getattr(generator, "get_state", None)  # numpy's RandomState
    if get_state is not None:
        return get_state()
    return generator.getstate()  # random.Random; SystemRandom raises NotImplementedError


MAX_DEPTH = 4  # generator states are shallow: (version, (624 words...), gauss) or a dict of arrays


def _feed(digest, value, depth):
    if depth > MAX_DEPTH:
        raise ValueError("a generator state nested too deeply")
    if isinstance(value, (tuple, list)):
        digest.update(b"(%d" % len(value))
        words = _words(value)
        if words is not None:
            digest.update(words)
        else:
            for item in value:
                _feed(digest, item, depth + 1)
        return
    if isinstance(value, dict):
        digest.update(b"{%d" % len(value))
        for item_key in sorted(value, key=repr):
            _feed(digest, item_key, depth + 1)
            _feed(digest, value[item_key], depth + 1)
        return
    to_bytes = getattr(value, "tobytes", None)  # a numpy array
    if to_bytes is not None and not isinstance(value, (bytes, str)):
        digest.update(repr(getattr(value, "dtype", "")).encode())
        digest.update(to_bytes())
        return
    digest.update(repr(value).encode())


def _words(numbers):
    """A list of non-negative ints (a Mersenne Twister's 625 words) as bytes, fast; None if it is not one."""
    try:
        return array("L", numbers).tobytes()
    except (OverflowError, TypeError):
        return None


def shared_states(states_by_process):
    """``{process: {generator name: [other processes with the same state]}}`` from ``{process: ["name:hash"]}``.

    Only processes that share something are in the result.
    """
    holders = {}
    for process, entries in states_by_process.items():
        for entry in entries or ():
            holders.setdefault(str(entry), []).append(process)
    shared = {}
    for entry, processes in holders.items():
        if len(processes) < 2:
            continue
        name = entry.rsplit(":", 1)[0]
        for process in processes:
            shared.setdefault(process, {})[name] = [p for p in processes if p != process]
    return shared
