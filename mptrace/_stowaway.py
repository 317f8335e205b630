"""The stowaway: how a spawn or forkserver child of a traced parent loads mptrace.

The parent adds a ``Stowaway`` to the preparation data. The child unpickles
that data before multiprocessing applies the parent's ``sys.path`` and working
directory (``spawn.prepare``), so at that moment the child's own import system
cannot be trusted to find the parent's mptrace: it finds nothing when the
program put mptrace on ``sys.path`` at run time (a vendored copy, a checkout, a
zipapp), when the child runs another interpreter (``set_executable``) or with
``-I``/``-S``, and it finds the wrong thing when the current directory holds a
folder named ``mptrace`` (a clone of this repository, say).

So the stowaway pickles as a call of a builtin, ``exec``, of the loader below:
standard library only, nothing that unpickling can fail to find. The loader
loads the package from the very file the parent loaded (``origin``), looked up
in the parent's directory only, never through the child's ``sys.path``, and
activates the child (``mptrace._child._activate``). It changes neither
``sys.path`` nor any module but mptrace's own. If that package cannot be loaded,
or another ``mptrace`` is loaded already, the child runs untraced: the loader
takes back what it added to ``sys.modules``, leaves a note in the spool
directory saying why, and returns. The parent reads the note when it observes
the child's exit (``take_note``).

In a traced child, ``mptrace`` in ``sys.modules`` is the parent's package, so
the program's own ``import mptrace`` there gives what it gave in the parent.
"""

import os
import sys

NOTE_SUFFIX = ".untraced"

# Runs in the child, in a namespace of its own: ``exec(_LOADER, {"place": ..., "carrier": ...})``.
# Python 3.9 syntax; nothing but builtins and modules every spawn child has loaded.
_LOADER = '''
def load(place, carrier):
    import sys
    before = [name for name in sys.modules if name == "mptrace" or name.startswith("mptrace.")]
    try:
        package = sys.modules.get("mptrace")
        if package is None:
            load_package(*place)
        elif getattr(getattr(package, "__spec__", None), "origin", None) != place[1]:
            raise ImportError("another mptrace is loaded here: %s" % getattr(package, "__file__", None))
        from mptrace._child import _activate
    except Exception as error:
        for name in [n for n in sys.modules if (n == "mptrace" or n.startswith("mptrace.")) and n not in before]:
            del sys.modules[name]
        leave_note(carrier, error)
        return
    _activate(carrier)


def load_package(location, origin):
    """Import the package whose __init__ is ``origin``, found in ``location`` (or by an import hook)."""
    import sys
    import importlib.machinery
    import importlib.util

    cached = location in sys.path_importer_cache
    spec = importlib.machinery.PathFinder.find_spec("mptrace", [location])
    if not cached:
        sys.path_importer_cache.pop(location, None)
    if spec is None or spec.origin != origin:  # not a directory or zip: a frozen application, say
        spec = importlib.util.find_spec("mptrace")
    if spec is None or spec.origin != origin or spec.loader is None:
        raise ImportError("the parent's mptrace cannot be loaded: no %s" % origin)
    package = importlib.util.module_from_spec(spec)
    sys.modules["mptrace"] = package
    spec.loader.exec_module(package)


def leave_note(carrier, error):
    import os
    try:
        name = "%016x" % carrier["rsid"] + NOTE_SUFFIX
        with open(os.path.join(carrier["tree"]["dir"], name), "x", encoding="utf-8", errors="replace") as note:
            note.write("%s: %s" % (type(error).__name__, error))
    except Exception:
        pass


try:
    load(place, carrier)
except Exception:
    pass
'''.replace("NOTE_SUFFIX", repr(NOTE_SUFFIX))


class Stowaway:
    """Rides in the spawn preparation data; unpickling it loads and activates mptrace."""

    def __init__(self, carrier):
        self.carrier = carrier

    def __reduce__(self):
        return exec, (_LOADER, {"place": _place_of_mptrace(), "carrier": self.carrier})


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
