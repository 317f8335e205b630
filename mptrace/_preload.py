"""What a fork server started under mptrace loads once, so that its children need not.

A forkserver child is forked from the server, so whatever the server imported
is already there: when the parent's mptrace starts the server (see
``_envdiff.ensure_running_wrapper``), it adds this module to the server's
preload list, and the server imports mptrace's child side once instead of every
child importing it afresh. Only the fork server imports this module: never the
parent, never a child.

What it loads is the standard-library-only child side (no OpenTelemetry, no
wrapt). Beyond imports and caches it makes the patches every child would make
at activation (``_child.prepare_server``), inert until a child is activated;
nothing that would make the children differ from each other or from what they
were (random generators, descriptors, threads). The server's ``main()`` passes over an
ImportError of a preloaded module but dies of any other exception, so this
module raises nothing else.
"""

import sys

_before = set(sys.modules)  # mptrace and this module are in already: they are counted by name below

# mptrace's child side: what a traced spawn or forkserver child runs before and during run().
CHILD_SIDE = ("_stowaway", "_channels", "_child", "_childimports", "_descriptions", "_envcompare", "_fingerprint",
              "_importhook", "_bounded", "_carryover", "_modstate", "_randomstate", "_worker")

try:
    import importlib
    # What the server held before _bounded stopped importing it (round 10; a spawn child had paid 0.85 ms for
    # it). Measured without it, each forkserver child of a -c program made some 15 page faults more on 3.11
    # (none on 3.12; start_versions.py --faults), for a reason of memory layout not established: kept here.
    importlib.import_module("queue")

    for _name in CHILD_SIDE:
        importlib.import_module("mptrace." + _name)
    _modstate = sys.modules["mptrace._modstate"]
    _modstate.load_fingerprint()  # which _modstate imports at first use: here, not in every child
    _modstate.library_paths()  # what every child's module watch needs (it imports sysconfig)
    _modstate.resolve_module_paths()  # which modules the children start with are libraries'
    _modstate.prepare_server_watch()  # the module watch a child makes, for the server's modules
    sys.modules["mptrace._channels"].prebuild_picklers()  # the classes every child installs
    sys.modules["mptrace._stowaway"].prepare_loader()  # what unpickling a child's stowaway runs
    sys.modules["mptrace._child"].prepare_server()  # the patches every child would make
except Exception as error:  # the server must live, whatever happens here
    raise ImportError("mptrace could not preload its child side in the fork server: %r" % (error,)) from None

# Every module this preload brought into the server: mptrace's own, and the
# standard library modules they needed that the server had not loaded. A child
# does not count them among the modules it began with (mp.import.inherited).
LOADED = frozenset(name for name in sys.modules
                   if name not in _before or name == "mptrace" or name.startswith("mptrace."))
del _before
