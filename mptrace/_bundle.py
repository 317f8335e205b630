"""The child side in one file: what a spawn child loads mptrace's modules from.

A spawn child of a traced parent imports about 17 of mptrace's modules before
its target runs. Through the import system each costs some 100 us beyond its
own code (asking every finder, statting the source, opening, reading and
checking its ``.pyc``): about 2 ms a child, a third of what mptrace adds to it.

So the parent writes, once, the code objects of those modules, each
marshalled, to one file in its spool directory, the bundle. A child that runs
the parent's interpreter (the bundle is bytecode) reads that one file, and the
stowaway's finder (``_stowaway``'s ``Bundled``) serves the modules from it,
each unmarshalled when it is imported, through the import system's own
machinery: the modules are what an import makes (``__spec__``, ``__file__``,
their place in ``sys.modules``), from the same source files, only not searched
for. Any module not in the bundle is imported the usual way, and the child
stops asking the bundle once its target is about to run.

The code is what the child's import would have loaded: each module's current
``.pyc`` (compiled now if there is none). The file lives in the spool
directory, which only this user can enter, as ``__pycache__`` lives beside
the sources.
"""

import marshal
import os

# What a spawn child may load before its target: a plain Process, its channels and the hooks of its
# arguments, a pool's or an executor's worker, OpenTelemetry wired in the child. A child reads only the
# modules it imports. tests/test_start_up_bundle.py holds that such children load them all from here.
CHILD_SIDE = (
    "mptrace",
    "mptrace._errors",
    "mptrace._log",
    "mptrace.semconv",
    "mptrace._spool",
    "mptrace._litespan",
    "mptrace._prerun",
    "mptrace._patching",
    "mptrace._state",
    "mptrace._child",
    "mptrace._importhook",
    "mptrace._childimports",
    "mptrace._blake",
    "mptrace._envcompare",
    "mptrace._descriptions",
    "mptrace._modstate",
    "mptrace._randomstate",
    "mptrace._fingerprint",
    "mptrace._channels",
    "mptrace._trailer",
    "mptrace._pickling",
    "mptrace._spanparent",
    "mptrace._carryover",
    "mptrace._tasks",
    "mptrace._worker",
    "mptrace._otel_child",
    "mptrace._bounded",
)

SUFFIX = ".bundle"

# {spool directory: the bundle's path there, or None when it could not be made}, once per process.
_made = {}


def for_children(directory):
    """The path of the bundle in ``directory`` (made now if need be), or None.

    One per interpreter and package for the whole tree, whoever makes it first: a spawn child that
    starts children of its own uses the bundle it was started with. Its modules' sources are checked by
    each child (see ``_stowaway``'s ``Bundled``), so a bundle made before a source changed is never
    served for that module."""
    try:
        return _made[directory]
    except KeyError:
        pass
    path = None
    try:
        path = os.path.join(directory, _name())
        if not os.path.exists(path):
            _write(path, _code_of_the_child_side())
    except Exception as error:  # a module with no file (a frozen application), a full disk: children import
        from mptrace import _log

        _log.debug("no start-up bundle for spawn children: %r", error)
        path = None
    _made[directory] = path
    return path


def _name():
    """The bundle's file name: the interpreter's bytecode (its magic number) and the package's place (the
    origin a child checks the bundle against: see _stowaway's serve_bundle)."""
    import importlib.util
    import zlib

    from mptrace._stowaway import origin_of_mptrace

    return "%s-%08x%s" % (importlib.util.MAGIC_NUMBER.hex(), zlib.crc32(os.fsencode(origin_of_mptrace())), SUFFIX)


def _code_of_the_child_side():
    """{module name: (its source path, its code object marshalled, the source's mtime and size)}: what the
    child's import would load, from the same files (whatever loaded them here: pytest's assertion rewriter
    loads mptrace's plugin module)."""
    import importlib.machinery
    import importlib.util
    import sys

    codes = {}
    for name in CHILD_SIDE:
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None) or importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None)
        if not (spec is not None and spec.has_location and isinstance(origin, str) and origin.endswith(".py")):
            raise ImportError("%s is not loaded from a source file: %r" % (name, spec))
        source = os.stat(origin)  # what the child checks: the source must still be this one
        code = _current_bytecode(origin, source)
        if code is None:  # no .pyc, an old one, a hash-checked one: as the import would, here once
            code = marshal.dumps(importlib.machinery.SourceFileLoader(name, origin).get_code(name))
        codes[name] = (origin, code, int(source.st_mtime), source.st_size)
    return codes


def _current_bytecode(origin, source):
    """The marshalled code in the ``.pyc`` an import of ``origin`` would take, as it is (not unmarshalled and
    marshalled again: that was most of the bundle's cost); None unless it is this interpreter's, checked by
    timestamp, and says it was compiled from the source as it is (``source``: its stat)."""
    import importlib.util

    try:
        with open(importlib.util.cache_from_source(origin), "rb") as file:
            data = file.read()
    except (OSError, NotImplementedError, ValueError):  # no .pyc; no cache tag; a pycache_prefix mismatch
        return None
    header = importlib.util.MAGIC_NUMBER + b"\0\0\0\0" + (
        (int(source.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (source.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    return data[16:] if data[:16] == header else None


def _write(path, codes):
    """Write the bundle whole (a child reads a complete file or none): under a name of this process's first,
    then renamed.

    Its layout: the length of the index in ASCII digits and a newline; the index, marshalled:
    {module name: (source path, where its code begins after the index, its length, the source's mtime in
    whole seconds and size)}; each module's code, marshalled. A child reads the index, then each module it
    imports, and nothing else."""
    index, blobs, offset = {}, [], 0
    for name, (origin, blob, mtime, size) in codes.items():
        index[name] = (origin, offset, len(blob), mtime, size)
        blobs.append(blob)
        offset += len(blob)
    head = marshal.dumps(index)
    partial = "%s.%d.partial" % (path, os.getpid())
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
        file.write(b"%d\n" % len(head))
        file.write(head)
        file.writelines(blobs)
    os.replace(partial, path)
    return path
