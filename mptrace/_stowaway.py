"""The stowaway: how a spawn or forkserver child of a traced parent loads mptrace.

The parent adds a ``Stowaway`` to the preparation data. The child unpickles
that data before multiprocessing applies the parent's ``sys.path`` and working
directory (``spawn.prepare``), so at that moment the child's own import system
cannot be trusted to find the parent's mptrace: it finds nothing when the
program put mptrace on ``sys.path`` at run time (a vendored copy, a checkout, a
zipapp), when the child runs another interpreter (``set_executable``) or with
``-I``/``-S``, and it finds the wrong thing when the current directory holds a
folder named ``mptrace`` (a clone of this repository, say).

So the stowaway pickles as a call of a builtin, ``exec``, of the loader below
(compiled by the parent when the child's bytecode is the same: see
``_BOOTSTRAP``): standard library only, nothing that unpickling can fail to
find, nothing that can raise out of it. When the parent knows the child runs
its own interpreter, what ``exec`` runs is code it compiled, unmarshalled by
the builtin ``marshal.loads`` as the stowaway is unpickled: compiling even a
few lines cost a forkserver child about 0.5 ms (the compiler's code, never
run in the server, is new to each child). The loader
loads the package from the very file the parent loaded (``origin``), looked up
in the parent's directory only, never through the child's ``sys.path``, and
activates the child (``mptrace._child._activate``). It changes neither
``sys.path`` nor any module but mptrace's own. If that package cannot be loaded,
or another ``mptrace`` is loaded already, the child runs untraced: the loader
takes back what it added to ``sys.modules``, leaves a note in the spool
directory saying why, and returns. The parent reads the note when it observes
the child's exit (``take_note``). A forkserver child whose server preloaded
this mptrace (see _preload) is sent a call, of builtins too, of the loader its
server defined from the same source (``_call_the_servers_loader``): nothing to
unmarshal or compile.

In a traced child, ``mptrace`` in ``sys.modules`` is the parent's package, so
the program's own ``import mptrace`` there gives what it gave in the parent.
"""

import marshal
import os
import sys

NOTE_SUFFIX = ".untraced"

# Runs in the child, in a namespace of its own that holds ``place`` and ``carrier``.
# Python 3.9 syntax; nothing but builtins and modules every spawn child has loaded.
_LOADER_CORE = '''
import sys


def load(location, origin, carrier, bundle=None):
    # How many modules there were, not which: a set of every name would write to the page of each
    # (a reference count), and a forkserver child shares those pages with its server. What this
    # adds comes after them in sys.modules, which keeps insertion order.
    began_with = len(sys.modules)
    try:
        package = sys.modules.get("mptrace")
        if package is None:
            load_package(location, origin, serve_bundle(bundle, origin) if bundle is not None else None)
        elif getattr(package.__spec__, "origin", None) != origin:
            raise ImportError("another mptrace is loaded here: %s" % package.__spec__)
        from mptrace._child import _activate
    except Exception as error:
        for finder in [finder for finder in sys.meta_path if getattr(finder, "serves_mptrace_bundle", False)]:
            finder.stop()
        for name in list(sys.modules)[began_with:]:
            if name.partition(".")[0] == "mptrace":
                del sys.modules[name]
        try:
            with open(carrier["tree"]["dir"] + "/%016x" % carrier["rsid"] + NOTE_SUFFIX, "x") as note:
                note.write("%s: %s" % (type(error).__name__, error))
        except Exception:
            pass
        return
    _activate(carrier, began_with)


def load_package(location, origin, bundled):
    import importlib.machinery, importlib.util

    spec = bundled.find_spec("mptrace") if bundled is not None else None
    if spec is None:
        cached = location in sys.path_importer_cache
        spec = importlib.machinery.PathFinder.find_spec("mptrace", [location])
        if not cached:
            sys.path_importer_cache.pop(location, None)
    if spec is None or spec.origin != origin:  # not in a directory or zip: a frozen application, say
        spec = importlib.util.find_spec("mptrace")
    if spec is None or spec.origin != origin or spec.loader is None:
        raise ImportError("the parent's mptrace cannot be loaded: no " + origin)
    if not hasattr(spec.loader, "exec_module"):  # 3.9's zipimporter
        spec.loader.load_module("mptrace")
        return
    package = sys.modules["mptrace"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
'''.replace("NOTE_SUFFIX", repr(NOTE_SUFFIX))

# The bundle's finder: only a spawn child that is sent a bundle (see Stowaway._bundle) runs this part.
_LOADER_BUNDLE = '''

def serve_bundle(path, origin):
    # The modules the parent bundled (mptrace._bundle), served ahead of every other finder. A bundle
    # that cannot be read serves nothing: the modules are imported as usual.
    import marshal, os

    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except Exception:
        return None
    try:
        first = os.pread(descriptor, 8192, 0)
        digits, newline, rest = first.partition(b"\\n")
        length = int(digits)
        if len(rest) < length:
            rest += os.pread(descriptor, length - len(rest), len(first))
        index = marshal.loads(rest[:length])
        if index["mptrace"][0] != origin:
            raise ValueError(path)
    except Exception:
        os.close(descriptor)
        return None
    bundled = Bundled(descriptor, len(digits) + 1 + length, index)
    sys.meta_path.insert(0, bundled)
    return bundled


class Bundled:
    # Finds and loads the bundled modules: each is read and unmarshalled when it is imported; the import
    # system does the rest, as for any module. Serves each module once, while the file is open, and only
    # while its source file is the one bundled (gone or changed, it is imported as usual).
    serves_mptrace_bundle = True  # how mptrace._child finds it

    def __init__(self, descriptor, base, index):
        self.descriptor = descriptor
        self.base = base  # where the modules' code begins
        self.index = index  # {name: (source path, where its code begins after base, its length)}

    def find_spec(self, name, path=None, target=None):
        entry = self.index.get(name)
        if entry is None or self.descriptor is None:
            return None
        import importlib.machinery, os

        try:  # the source file as it was bundled, as an import checks a .pyc against its source
            stat = os.stat(entry[0])
        except OSError:
            return None
        if int(stat.st_mtime) != entry[3] or stat.st_size != entry[4]:
            return None
        spec = importlib.machinery.ModuleSpec(name, self, origin=entry[0], is_package=name == "mptrace")
        spec.has_location = True  # __file__, as a module imported from that file has
        if name == "mptrace":
            spec.submodule_search_locations = [os.path.dirname(entry[0])]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import _imp, marshal, os

        origin, offset, length = self.index.pop(module.__spec__.name)[:3]
        code = os.pread(self.descriptor, length, self.base + offset)
        if len(code) != length:
            raise ImportError("the bundle ends before " + module.__spec__.name)
        code = marshal.loads(code)
        _imp._fix_co_filename(code, origin)  # as an import does: a .pyc compiled where the sources were before
        exec(code, module.__dict__)

    def stop(self):
        # Serves nothing more: off sys.meta_path, its file closed.
        import os

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        descriptor, self.descriptor = self.descriptor, None
        if descriptor is not None:
            os.close(descriptor)
'''
_LOADER_FUNCTIONS = _LOADER_CORE + _LOADER_BUNDLE
_CALL = """

load(place[0], place[1], carrier, bundle)
"""
# What a child is sent: with the bundle's finder only when it is sent a bundle. A forkserver child is sent the
# smaller one (some 3 KB of code against 8.5): every byte of the preparation data is pickled by the parent,
# written through a pipe, and read and allocated by the child on its start-up path.
_LOADER = _LOADER_FUNCTIONS + _CALL
_LOADER_PLAIN = _LOADER_CORE + _CALL

# What unpickling the stowaway runs: the loader, compiled by the parent when the child's
# interpreter reads the same bytecode (compiling it costs a child about 1 ms), else its source.
# A fork server that preloaded mptrace (see _preload) holds the loader's functions already, defined from this
# very source: its children call them (unmarshalling and running the loader cost a child some 40 pages). The
# server's are known by ``loader_id``, a digest of their source; the source itself travels only to a child that
# may have to compile it (another interpreter), so that it can be left out of what the others unpickle.
# This code itself comes compiled by the parent when it knows the child runs its interpreter (see
# child_reads_this_bytecode): ``magic`` is None then, and the check it makes otherwise is not needed.
_BOOTSTRAP = """
try:
    import sys
    prepared = getattr(sys.modules.get("mptrace._stowaway"), "prepared_loader", None)
except Exception:
    prepared = None
if prepared is not None and prepared[0] == loader_id:
    try:
        prepared[1](place[0], place[1], carrier, bundle)
    except Exception:
        pass
else:
    try:
        import marshal
        if magic is not None:  # else the parent knows this interpreter reads its bytecode
            import importlib.util
            if importlib.util.MAGIC_NUMBER != magic:
                raise ValueError(magic)
        loader = marshal.loads(code)
    except Exception:
        loader = source  # None when the parent knows this interpreter reads its code: exec raises, untraced
    try:
        exec(loader)
    except Exception:
        pass
"""


class Stowaway:
    """Rides in the spawn preparation data; unpickling it loads and activates mptrace.

    ``same_interpreter``: the child runs this process's interpreter (see
    child_reads_this_bytecode), so it gets code compiled here, not source.
    ``server_has_loader``: a forkserver child whose server preloaded this mptrace (see _envdiff): it is sent
    no code at all, only a call of the loader its server prepared (see _call_the_servers_loader).
    """

    def __init__(self, carrier, same_interpreter=False, server_has_loader=False):
        self.carrier = carrier
        self.same_interpreter = same_interpreter
        self.server_has_loader = server_has_loader

    def __reduce__(self):
        try:
            if self.server_has_loader:
                return _call_the_servers_loader(self.carrier)
            bundle = self._bundle()
            code, magic = _compiled_loader(with_bundle=bundle is not None)
            source = _LOADER if bundle is not None else _LOADER_PLAIN
            same = self.same_interpreter
            bootstrap = _MarshalledCode(_compiled_bootstrap()) if same else _BOOTSTRAP
            return exec, (bootstrap, {"code": code, "magic": None if same else magic,
                                      "source": None if same else source, "loader_id": loader_id(),
                                      "place": _place_of_mptrace(), "carrier": self.carrier, "bundle": bundle})
        except Exception:  # the start goes on, as without mptrace: the child unpickles None and is not traced
            from mptrace import _log

            _log.internal_error("sending mptrace to a %s child" % self.carrier.get("method"))
            return type(None), ()

    def _bundle(self):
        """The bundle of mptrace's modules (see _bundle) for a spawn child that runs this interpreter, or None.
        A forkserver child finds them loaded in its server."""
        if not self.same_interpreter or self.carrier.get("method") != "spawn":
            return None
        from mptrace import _bundle, _log

        return _log.safely("bundling mptrace for a spawn child", _bundle.for_children, self.carrier["tree"]["dir"])


def _call_the_servers_loader(carrier):
    """The stowaway of a forkserver child whose server preloaded this mptrace, made of builtins only (so that
    unpickling it finds everything it names in any interpreter): ``next(map(getattr(sys.modules.get(
    "mptrace._stowaway"), "enter_from_server", exec), [loader source], [namespace]))``.

    In the child that is a call of ``enter_from_server`` below, which calls the loader the server prepared.
    Unmarshalling the bootstrap's code object cost a forkserver child about 100 us (every object it makes
    writes to pages it shares with its server). Should the server hold no mptrace after all (its preload
    failed), the call is ``exec`` of the loader's source: slower, and the same loader.
    """
    modules = _Call(getattr, _Call(__import__, "sys"), "modules")
    entry = _Call(getattr, _Call(dict.get, modules, "mptrace._stowaway"), "enter_from_server", exec)
    namespace = {"loader_id": loader_id(), "place": _place_of_mptrace(), "carrier": carrier, "bundle": None}
    return next, (_Call(map, entry, [_LOADER_PLAIN], [namespace]),)


class _Call:
    """Unpickles as ``function(*args)``; ``args`` may hold other calls, made first."""

    def __init__(self, function, *args):
        self.function = function
        self.args = args

    def __reduce__(self):
        return self.function, self.args


def enter_from_server(source, namespace):
    """In a forkserver child, as it unpickles its stowaway (see _call_the_servers_loader): the loader its
    server prepared, when it is the very one the parent would send; else ``source``, run as the stowaway
    runs it. Never raises: the child then runs untraced."""
    try:
        prepared = prepared_loader
        if prepared is not None and prepared[0] == namespace["loader_id"]:
            place = namespace["place"]
            prepared[1](place[0], place[1], namespace["carrier"], None)
            return None
    except Exception:
        return None
    try:
        exec(source, namespace)
    except Exception:
        pass
    return None


class _MarshalledCode:
    """Unpickles as the code object its bytes hold, by ``marshal.loads``: a function of a builtin module,
    which every interpreter has loaded before it unpickles anything."""

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        return marshal.loads, (self.data,)


_compiled = {}  # with_bundle -> (the loader's code, marshalled; the bytecode's magic number)


def _compiled_loader(with_bundle):
    """(the loader's code object, marshalled; the bytecode's magic number), once per process and variant:
    ``with_bundle``, the loader that can serve a bundle of mptrace's modules (see _bundle)."""
    compiled = _compiled.get(with_bundle)
    if compiled is None:
        import importlib.util

        source = _LOADER if with_bundle else _LOADER_PLAIN
        compiled = _compiled[with_bundle] = (marshal.dumps(compile(source, "<mptrace stowaway>", "exec")),
                                             importlib.util.MAGIC_NUMBER)
    return compiled


_loader_id = None


def loader_id():
    """A digest of the loader's functions as a fork server prepares them (see prepare_loader): a child calls
    its server's only when they are the very ones this process would send."""
    global _loader_id
    if _loader_id is None:
        from mptrace._blake import blake2b

        _loader_id = blake2b(_LOADER_CORE.encode(), digest_size=16).hexdigest()
    return _loader_id


_compiled_boot = None


def _compiled_bootstrap():
    """``_BOOTSTRAP``'s code object, marshalled, once per process."""
    global _compiled_boot
    if _compiled_boot is None:
        _compiled_boot = marshal.dumps(compile(_BOOTSTRAP, "<mptrace stowaway>", "exec"))
    return _compiled_boot


def child_reads_this_bytecode(method):
    """Whether a spawn or forkserver child started now runs this very interpreter, so that it can load code
    compiled here: spawn runs multiprocessing's executable; a forkserver child is a fork of its server,
    which ran the executable of when it started (known for the servers started while mptrace watched)."""
    if not runs_this_interpreter():
        return False
    if method != "forkserver":
        return True
    from mptrace._envdiff import _server_pid
    from mptrace._state import state

    server = _server_pid()
    if server is None:  # none yet: the one this start() starts runs the executable above
        return True
    return server in state.forkservers_of_this_interpreter


def server_prepared_the_loader():
    """Whether the running fork server preloaded this mptrace, and with it the loader (see _preload)."""
    from mptrace._envdiff import _server_pid
    from mptrace._state import state

    return _server_pid() in state.forkservers_preloading_mptrace


def runs_this_interpreter():
    """Whether multiprocessing's executable (``set_executable``) is this process's."""
    import multiprocessing.spawn as mp_spawn

    executable = mp_spawn.get_executable()
    return bool(executable) and bool(sys.executable) and os.fsdecode(executable) == os.fsdecode(sys.executable)


# In a fork server (see prepare_loader): (loader_id(), its load function).
prepared_loader = None


def prepare_loader():
    """In a fork server, once for all its children: the loader's functions, defined as a child would."""
    global prepared_loader
    namespace = {}
    exec(compile(_LOADER_CORE, "<mptrace stowaway>", "exec"), namespace)  # a forkserver child is sent no bundle
    prepared_loader = (loader_id(), namespace["load"])


_place = None


def _place_of_mptrace():
    """(the directory the package is in, its ``__init__``'s path): where this process loaded mptrace from."""
    global _place
    if _place is None:
        package = sys.modules["mptrace"]
        spec = getattr(package, "__spec__", None)
        origin = getattr(spec, "origin", None) or package.__file__
        locations = list(getattr(spec, "submodule_search_locations", None) or [os.path.dirname(origin)])
        _place = (os.path.dirname(locations[0]), origin)
    return _place


def origin_of_mptrace():
    """The path of the ``__init__`` this process loaded mptrace from."""
    return _place_of_mptrace()[1]


def take_note(directory, run_span_id):
    """Why the child with this run span could not load mptrace, if it left a note (which goes)."""
    path = os.path.join(directory, "%016x%s" % (run_span_id, NOTE_SUFFIX))
    try:
        with open(path, encoding="utf-8", errors="replace") as note:
            reason = note.read(1000)
        os.unlink(path)
    except OSError:
        return None
    return reason
