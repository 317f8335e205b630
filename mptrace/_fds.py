"""Open file descriptors a fork child inherits: sockets, regular files, pipes.

A fork child gets a copy of every descriptor its parent has open, sharing the
same open file (the socket's byte stream, the file's offset, the pipe's ends).
Two processes reading one database or HTTP connection corrupt it; a child that
holds a pipe's write end keeps the reader from ever seeing end-of-file. So at
a fork ``start()`` the parent lists what the child gets, in ``mp.fork.fds``,
each described in one phrase and named by the watched module global that holds
it when there is one::

    socket tcp 127.0.0.1:40312->127.0.0.1:9000 (db.CONN)
    file /var/log/app.log (logsetup.LOG_FILE)
    pipe 123456 write end

and which of them a sibling it started earlier, still running, holds too
(``mp.fork.fds.shared``, ``mp.fork.fds.shared_with``). It is all done in the
parent before the fork: the child does nothing.

Left out, because they are shared by design:

* the standard streams 0-2 (unless they are sockets: inetd, socket activation);
* multiprocessing's own plumbing: every ``Connection`` (so ``Pipe()``, queues,
  pools and executors), the pipes of the children it started, the
  resource tracker and the fork server's descriptors;
* mptrace's own (its spool files, the pipe ``mptrace run`` holds);
* what was open when ``install()`` ran, unless a watched global holds it: it is
  the environment's (a test runner's capture files and worker pipes);
* other kinds (terminals, devices, directories, event and epoll descriptors);
* listening sockets are listed but never reported as shared: a pre-forking
  server shares its accept queue on purpose.

Linux reads ``/proc/self/fd``; elsewhere ``/dev/fd``, else the first
``MAX_SCANNED`` descriptor numbers, and a regular file's path only where the
platform tells it. Nothing here changes a descriptor: a socket is read through
a duplicate that is closed at once; a file is only ``fstat``-ed.
"""

import os
import stat
import sys
import types
import weakref

from mptrace import _log, _modstate

MAX_FDS = 64  # descriptors described per start(); the rest are counted
MAX_SCANNED = 256  # descriptor numbers tried where the process cannot list its own
MAX_HOLDERS = 2  # global names given per descriptor
MAX_ATTRIBUTES = 32  # attributes of one global's object looked at for a descriptor it holds
MAX_GLOBALS = 64  # per module, as for module state
STANDARD_STREAMS = (0, 1, 2)

# Multiprocessing's own open files, as (fd, st_dev, st_ino): each Connection's (see connection_init_wrapper)
# and the pipes of each Popen made while mptrace is installed (see remember_popen), recorded once per object
# and matched on what sits on the descriptor now, so a number reused by the program's own file is listed.
# Bounded: see _record_plumbing.
# Not read from the objects at every start: a program keeps its Process objects (a list it joins at the
# end), each keeping its Popen and pipes, and reading every one at every start wrote to its pages (a
# copy-on-write fault each while children share them), work that grew with the children started.
_plumbing = set()
# When _plumbing holds this many, those closed since are dropped (see _record_plumbing).
MIN_PRUNE_AT = 256
_prune_at = MIN_PRUNE_AT
# (pid, a weak reference to the last Popen made): its pipes are opened after __init__, so they are recorded
# when the next Popen is made (before that one's start lists what its child inherits), in the process that
# made it (a fork child inherits the reference to the Popen that started it, whose pipe ends it has closed).
_pending_popen = None

# Code, modules and plain values: a global holding one holds no descriptor of its own.
_HOLD_NONE = (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, types.MethodType,
              type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)

# (pid, {(fd, st_dev, st_ino): description}): what cannot change while the same object sits on that fd.
_described = (None, {})

# {(fd, st_dev, st_ino)} open when install() ran: the environment's (see note_environment).
_environment = frozenset()


def connection_init_wrapper(wrapped, connection, args, kwargs):
    """``_ConnectionBase.__init__``: its descriptor is multiprocessing's plumbing while it stays open."""
    result = wrapped(*args, **kwargs)
    handle = getattr(connection, "_handle", None)
    if isinstance(handle, int):
        _log.safely("noting a connection's descriptor", _record_plumbing, (handle,))
    return result


def note_environment():
    """At install(): what is open already belongs to whoever started the program (a test runner's
    capture files and worker pipes, a supervisor's), not to the program. It is listed later only when a
    watched global holds it. A fork child keeps this: it has the same descriptors."""
    global _environment
    numbers, _ = _open_numbers()
    _environment = frozenset(filter(None, map(_file_key, numbers)))


def remember_popen(popen):
    """A Popen about to start a child: its pipes are multiprocessing's. They are opened after __init__, so
    it is the previous Popen's that are recorded here, launched by now (or never to be)."""
    global _pending_popen
    pending = _pending_popen
    previous = pending[1]() if pending is not None and pending[0] == os.getpid() else None
    # The pipes it holds: its sentinel and what its finalizer closes (the finalizer's arguments are gone
    # once it has run, and the pipes are closed then).
    arguments = getattr(getattr(previous, "finalizer", None), "_args", None)
    if arguments:
        descriptors = tuple(arguments)
        sentinel = getattr(previous, "sentinel", None)  # among them in CPython's Popens: not looked at twice
        _record_plumbing(descriptors if sentinel in descriptors else descriptors + (sentinel,))
    try:
        _pending_popen = (os.getpid(), weakref.ref(popen))
    except TypeError:
        _pending_popen = None


def _record_plumbing(descriptors):
    """Add the open files on ``descriptors`` (ints; others are passed over) to the plumbing.

    A key stays until the plumbing has doubled, then those no longer open are dropped: a closed pipe's
    or socket's key matches nothing the program opens later (their inode numbers are not reused)."""
    global _prune_at
    for fd in descriptors:
        key = _file_key(fd) if isinstance(fd, int) and not isinstance(fd, bool) else None
        if key is not None:  # else closed already
            _plumbing.add(key)
    if len(_plumbing) >= _prune_at:
        for key in list(_plumbing):
            if _file_key(key[0]) != key:  # closed, or another file sits on its number now
                _plumbing.discard(key)
        _prune_at = max(MIN_PRUNE_AT, 2 * len(_plumbing))


def _file_key(fd):
    """``(fd, st_dev, st_ino)``: the open file on ``fd`` (the same on that number while it is not closed), or
    None when nothing is open there. ``inherited`` makes it inline, with the mode it reads too."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return fd, info.st_dev, info.st_ino


class Inherited:
    """What one fork child inherits: ``{(fd, st_dev, st_ino): description}`` in descriptor order, and
    how many descriptors were left undescribed. A sibling that holds the same key holds the same open
    file: it inherited it too, at the same number."""

    __slots__ = ("found", "unlisted", "shared", "shared_with")

    def __init__(self, found, unlisted):
        self.found = found
        self.unlisted = unlisted
        self.shared = []  # descriptions a running sibling holds too
        self.shared_with = []  # those siblings' process names

    def shared_by(self, sibling):
        """The keys ``sibling`` (another Inherited) holds too; never a listening socket: a pre-forking
        server shares its accept queue on purpose."""
        return [key for key, text in self.found.items() if key in sibling.found and not _is_listening(text)]

    def share(self, keys, sibling_name):
        """``keys`` are held by ``sibling_name`` too: add them (once)."""
        for key in keys:
            if self.found[key] not in self.shared:
                self.shared.append(self.found[key])
        if sibling_name not in self.shared_with:
            self.shared_with.append(sibling_name)


def _is_listening(description):
    return description.startswith("socket ") and " listening " in description


def inherited(watch, spool_directory):
    """What a child forked now inherits (an ``Inherited``).

    Per descriptor, on the common path: one ``fstat`` and a cache look-up.
    """
    numbers, listed = _open_numbers()
    excluded = _other_plumbing()
    cache = _cache()
    own = _own_prefix(spool_directory) if spool_directory else None
    candidates, keys, unlisted = [], [], 0
    for fd in numbers:
        try:
            info = os.fstat(fd)
        except OSError:  # closed meanwhile, or listdir's own
            continue
        key = (fd, info.st_dev, info.st_ino)
        if key in _plumbing or fd in excluded:
            continue
        if len(candidates) >= MAX_FDS:
            unlisted += 1
            continue
        mode = info.st_mode
        kind = stat.S_IFMT(mode)  # as _listable says, without a call of it per descriptor
        if kind == stat.S_IFSOCK or ((kind == stat.S_IFREG or kind == stat.S_IFIFO) and fd not in STANDARD_STREAMS):
            candidates.append((fd, key, mode))
            keys.append(key)
    holders = _holders_of(watch, keys)
    found = {}
    for fd, key, mode in candidates:
        if key in _environment and fd not in holders:
            continue
        text = cache.get(key)
        if text is None:
            text = _describe(fd, mode, key, cache)
        if not text or (own and text.startswith(own)):  # not listed, or mptrace's own spool file
            continue
        found[key] = text + (" (%s)" % ", ".join(holders[fd][:MAX_HOLDERS]) if fd in holders else "")
    return Inherited(found, unlisted if listed else 0)


def _listable(fd, mode):
    """Sockets, and regular files and pipes other than the standard streams: what is worth listing."""
    return stat.S_ISSOCK(mode) or ((stat.S_ISREG(mode) or stat.S_ISFIFO(mode)) and fd not in STANDARD_STREAMS)


# (pid, the candidates' keys, {fd: holder names}) of the last search of the globals.
_last_holders = (None, None, {})


def _holders_of(watch, keys):
    """The globals holding the candidates' descriptors (``keys``: theirs, in descriptor order), searched again
    only when the set of open descriptors changed: searching every watched global costs more than the rest
    of the listing, and a global comes to hold an already open descriptor seldom."""
    global _last_holders
    if watch is None or not keys:
        return {}
    pid, last_keys, holders = _last_holders
    if last_keys != keys or pid != os.getpid():  # the same keys come in the same (descriptor) order
        holders = _holders(watch)
        _last_holders = (os.getpid(), keys, holders)
    return holders


def _open_numbers():
    """(sorted descriptor numbers, whether they are all of them)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(directory)  # its own descriptor is closed again, and fails fstat
            return sorted(map(int, names)), True
        except (OSError, ValueError):
            continue
    return range(MAX_SCANNED), False


def _cache():
    global _described
    pid, cache = _described
    if pid != os.getpid():  # a fork child starting its own: the parent's descriptors are not its own
        _described = (os.getpid(), {})
    return _described[1]


_own_prefixes = {}


def _own_prefix(path):
    """``file <the spool directory>/``: how a spool file's description starts, the directory as /proc names
    it (symbolic links resolved); worked out once."""
    prefix = _own_prefixes.get(path)
    if prefix is None:
        prefix = _own_prefixes[path] = "file %s%s" % (os.path.realpath(path), os.sep)
    return prefix


def _describe(fd, mode, key, cache):
    """``socket tcp a->b``, ``file /x``, ``pipe 123 read end``; "" for what is not listed. Cached while
    it cannot change: the kind of what sits on ``fd``, and all but a socket that may still connect."""
    if not _listable(fd, mode):
        cache[key] = ""
        return ""
    text, final = _kind_and_details(fd, mode)
    if final:
        cache[key] = text
    return text


def _kind_and_details(fd, mode):
    """(description without holders, whether it stays true while the same object is on ``fd``)."""
    if stat.S_ISSOCK(mode):
        return _socket_details(fd)
    if stat.S_ISFIFO(mode):
        return "pipe %s%s" % (_pipe_name(fd), _pipe_end(fd)), True
    return "file " + (_path(fd) or "(path unknown)"), True


def _socket_details(fd):
    """``socket tcp 127.0.0.1:5123->127.0.0.1:9000``, read through a duplicate (closing it leaves ``fd`` as it was).

    A socket that is neither connected nor listening may still become either:
    its description is not cached.
    """
    import socket

    if socket.getdefaulttimeout() is not None:
        # socket(fileno=...) would make the shared open file non-blocking: do not touch it
        return "socket", False
    duplicate = os.dup(fd)
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return "socket", False
    with sock:
        kind = _socket_kind(sock)
        local = _address(sock, sock.getsockname)
        peer = _address(sock, sock.getpeername)
        listening = _listening(sock)
    if listening:
        return "socket %s listening %s" % (kind, local), True
    if peer is not None:
        return "socket %s %s->%s" % (kind, local, peer), True
    return "socket %s %s (not connected)" % (kind, local), False


def _socket_kind(sock):
    import socket

    family, kind = sock.family, sock.type
    if family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
        name = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(kind) or _name(kind, "SOCK_").lower()
        return name + ("6" if family != socket.AF_INET else "")
    if family == getattr(socket, "AF_UNIX", None):
        return "unix " + _name(kind, "SOCK_").lower()
    return "%s %s" % (_name(family, "AF_"), _name(kind, "SOCK_").lower())


def _name(constant, prefix):
    name = getattr(constant, "name", None) or str(constant)
    return name[len(prefix):] if name.startswith(prefix) else name


def _address(sock, read):
    """``127.0.0.1:5123``, ``[::1]:5123``, a unix path; None when there is none (not connected)."""
    import socket

    try:
        address = read()
    except OSError:
        return None
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return ("[%s]:%s" if sock.family == getattr(socket, "AF_INET6", None) else "%s:%s") % (host, port)
    if isinstance(address, bytes):  # an abstract unix address
        address = address.decode("utf-8", "replace")
    return address or "(unnamed)"


def _listening(sock):
    import socket

    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False


def _pipe_name(fd):
    """The pipe's inode as /proc shows it (``pipe:[123]`` -> ``123``), or a named FIFO's path."""
    target = _path(fd)
    if target and target.startswith("pipe:[") and target.endswith("]"):
        return target[len("pipe:["):-1]
    return target or str(os.fstat(fd).st_ino)


def _pipe_end(fd):
    try:
        import fcntl

        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except (ImportError, OSError):
        return ""
    access = flags & os.O_ACCMODE
    return {os.O_RDONLY: " read end", os.O_WRONLY: " write end"}.get(access, "")


def _path(fd):
    """Where ``fd`` points (Linux: /proc; macOS: F_GETPATH), or None."""
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        pass
    try:
        import fcntl

        getpath = getattr(fcntl, "F_GETPATH", None)
        if getpath is not None:
            return fcntl.fcntl(fd, getpath, b"\0" * 1024).rstrip(b"\0").decode("utf-8", "replace")
    except (ImportError, OSError):
        pass
    return None


# -- what is not the program's: multiprocessing's plumbing ------------------------------------


def _other_plumbing():
    """The numbers of the descriptors multiprocessing opened for its own use, or that are made to be
    shared, other than its Connections' and its Popens' (see _plumbing): a few, read at each listing."""
    excluded = set()
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    excluded.add(getattr(getattr(tracker, "_resource_tracker", None), "_fd", None))
    forkserver = sys.modules.get("multiprocessing.forkserver")
    excluded.add(getattr(getattr(forkserver, "_forkserver", None), "_forkserver_alive_fd", None))
    reaper = sys.modules.get("mptrace._reaper")  # mptrace run's: its fork children hold it on purpose
    excluded.update(getattr(reaper, "_held", ()))
    excluded.discard(None)
    return excluded


# -- who holds it: watched module globals ---------------------------------------------------


def _holders(watch):
    """``{fd: ["module.NAME", "module.NAME.attribute"]}`` for the files, sockets and connections that
    watched module globals hold (directly, or as one attribute of the object a global holds)."""
    found = {}
    for module_name, module in watch.watched_modules():
        namespace = _modstate.own_namespace(module)
        if namespace is None:
            continue
        for name, value in list(dict.items(namespace))[:MAX_GLOBALS]:
            if isinstance(name, str) and not name.startswith("__") and not isinstance(value, _HOLD_NONE):
                _note_holder(found, "%s.%s" % (module_name, name), value)
    return found


def _note_holder(found, name, value):
    fd = _fileno(value)
    if fd is not None:
        found.setdefault(fd, []).append(name)
        return
    attributes = _modstate.own_namespace(value)
    if not isinstance(attributes, dict):
        return
    for attribute, inner in list(dict.items(attributes))[:MAX_ATTRIBUTES]:
        fd = None if isinstance(inner, _HOLD_NONE) else _fileno(inner)
        if fd is not None and isinstance(attribute, str):
            found.setdefault(fd, []).append("%s.%s" % (name, attribute))


def _fileno(value):
    """The descriptor an object that has one wraps (a socket, a file, a connection), or None.

    Only a ``fileno`` its class defines is called: never a ``__getattr__``.
    """
    if getattr(type(value), "fileno", None) is None:
        return None
    try:
        fd = value.fileno()
    except Exception:  # closed, or not backed by a descriptor (io.BytesIO)
        return None
    return fd if isinstance(fd, int) and not isinstance(fd, bool) and fd >= 0 else None
