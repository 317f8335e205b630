"""The environment and working directory a spawn or forkserver child runs with, against its parent's.

What each start method gives a child (CPython's multiprocessing):

* spawn: a new interpreter, executed with the parent's C-level environment at
  ``start()``. Changes made through ``os.environ`` reach it; so do
  ``os.putenv``/``os.unsetenv`` and a C library's ``setenv``, which the
  parent's own ``os.environ`` never shows, so those differ. ``spawn.prepare``
  chdir()s the child to the parent's working directory.
* forkserver: forked from the fork server, so its environment is the server's:
  the parent's as it was when the server started, not at ``start()``. Its
  module state is the server's too (what it preloaded, imported then).
  ``spawn.prepare`` chdir()s it to the parent's working directory at
  ``start()``, but the server preloaded its modules in its own working
  directory: the parent's when the server started.
* fork: a copy of the parent at ``start()``. Nothing can differ, and nothing is
  recorded: the fork path does no extra work.

The parent sends in the carrier a keyed digest of each variable (name and
value) and of its working directory, with the process tree's key (see
_fingerprint), or the values themselves under ``capture_values``; the child
compares its own when ``run()`` begins and records names (values only when
captured).

This module is the parent's side (what it sends, and the fork server it
starts); the child's comparison, and the digests both sides take, are
_envcompare's: a child imports that alone.
"""

import os
import sys
import time

from mptrace import _log
from mptrace._envcompare import _ENVIRONB, _cwd, _cwd_token, _environment, _whole_environment, pack_digests
from mptrace._state import current_launch, state


# -- the parent, at start() ------------------------------------------------------


def parent_side(key, capture_values, forkserver_now=None):
    """What the child needs to compare: ``{"env": {name: token}, "cwd": token, "cap": bool}``.

    ``forkserver_now``: for a forkserver child, the fork server as this
    start() finds it (``forkserver_before_launch``).
    """
    sent = {"cwd": _cwd_token(_cwd(), key, capture_values), "cap": bool(capture_values)}
    if capture_values:
        sent["env"] = _environment(key, True)
    else:
        sent["env"], sent["all"] = _digests_at_start(key)
    if forkserver_now is not None:
        sent["fs"] = forkserver_now
    return sent


def forkserver_before_launch():
    """[the fork server's pid (None: not running yet), when it started (ns, None: unknown), now (ns)]."""
    pid = _server_pid()
    return [pid, state.forkservers.get(pid), time.time_ns()]


def ensure_running_wrapper(wrapped, instance, args, kwargs):
    """``ForkServer.ensure_running`` and the module's ``ensure_running`` (bound at import): note when a new
    server starts. During a start(), that start()'s time: the child takes it for the server's (see
    ``_envcompare._server_started``), so every child of one server shows one start time."""
    before = _server_pid()
    now = time.time_ns()
    server = instance if instance is not None else getattr(wrapped, "__self__", None)
    preload = _log.safely("adding mptrace to the fork server's preload list", _add_preload, server)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        if preload is not None:
            _log.safely("restoring the fork server's preload list", _restore_preload, server, preload)
    _log.safely("noting when the fork server started", _note_server_start, before, now, preload is not None)
    return result


# The module a fork server started under mptrace preloads, after the program's own (see _preload).
PRELOAD_MODULE = "mptrace._preload"


def _add_preload(server):
    """For this call only, the server's preload list with mptrace's child side last: a server that starts
    now loads it once, and its children need not. Returns (the program's list, ours) to restore; None:
    nothing added. The program's list stays what mp.forkserver.preload reports."""
    if not state.active() or not isinstance(getattr(server, "_preload_modules", None), list):
        return None
    if getattr(server, "_forkserver_pid", None) is not None:  # started already: every start() comes here
        return None
    if PRELOAD_MODULE in server._preload_modules or not _server_finds_only_this_mptrace():
        return None
    own = server._preload_modules
    server._preload_modules = own + [PRELOAD_MODULE]
    return own, server._preload_modules


def _restore_preload(server, preload):
    own, ours = preload
    if server._preload_modules is ours:  # else the program set another list meanwhile
        server._preload_modules = own


def _server_finds_only_this_mptrace():
    """Whether the fork server, which imports ``mptrace`` by name, can find no other mptrace than this one
    (another one loaded there would leave its children untraced, see _stowaway).

    The server's import system is not the parent's, but made the same way, in
    the same working directory: this asks every finder of the parent's
    (an editable install's, say) and looks in the working directory and in
    every entry of the parent's sys.path, and says no if any finds another mptrace.
    """
    from mptrace._stowaway import origin_of_mptrace

    origin = origin_of_mptrace()
    try:
        return all(spec is None or spec.origin == origin for spec in _specs_of_mptrace())
    except Exception:  # a finder that cannot answer: then do not preload, quietly (it only saves time)
        return False


def _specs_of_mptrace():
    import importlib.machinery

    path_finder = importlib.machinery.PathFinder
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if finder is not path_finder and find_spec is not None:
            yield find_spec("mptrace", None)
    for entry in [os.getcwd()] + sys.path:
        cached = entry in sys.path_importer_cache
        try:
            yield path_finder.find_spec("mptrace", [entry])
        finally:
            if not cached:  # leave the program's import state as it was
                sys.path_importer_cache.pop(entry, None)


def _note_server_start(before, now, preloading):
    """``preloading``: whether the server was started with mptrace's child side on its preload list."""
    pid = _server_pid()
    if pid is not None and pid != before:
        launch = current_launch()
        known = launch.carrier.get("env", {}).get("fs") if launch is not None else None
        state.forkservers[pid] = known[2] if known else now
        from mptrace._stowaway import runs_this_interpreter

        if runs_this_interpreter():  # the executable it was started with, just now
            state.forkservers_of_this_interpreter.add(pid)
            if preloading:
                state.forkservers_preloading_mptrace.add(pid)


def _server_pid():
    module = sys.modules.get("multiprocessing.forkserver")
    return getattr(getattr(module, "_forkserver", None), "_forkserver_pid", None)


def _digests_at_start(key):
    """(the digest of each variable, packed (see pack_digests); the digest of them all) of os.environ for a
    start(): reused while it is unchanged since the last start, which one C comparison of its dict tells."""
    global _last_digests
    data = getattr(_ENVIRONB, "_data", None)  # POSIX: the dict behind os.environ(b)
    last_key, last_data, last_found = _last_digests
    if isinstance(data, dict) and last_key == key and last_data == data:
        return last_found
    found = (pack_digests(_environment(key, False)), _whole_environment(key))
    if isinstance(data, dict):
        _last_digests = (key, dict(data), found)
    return found


# (key, copy of os.environb's dict, (its digests, their whole digest)) as of the last start() that digested it.
_last_digests = (None, None, None)
