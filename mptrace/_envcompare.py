"""A spawn or forkserver child's environment and working directory against its parent's: the child's side.

The parent (see _envdiff, which says what each start method gives a child)
sends a keyed digest of each variable and of its working directory, or the
values under ``capture_values``; the child compares its own with them when
``run()`` begins (``child_attributes``). Both sides take their digests with the
functions here, so they are the same bytes. Standard library only, and no
OpenSSL: a child imports this at start-up, and not _envdiff.
"""

import os
import time

from mptrace import semconv
from mptrace._blake import blake2b

MAX_NAMES = 16  # names per list on a span; past that, the last entry is "+N more"
MAX_VALUE = 40  # characters of a captured value shown
DIGEST_BYTES = 8

_ENVIRONB = getattr(os, "environb", None)  # POSIX: the bytes the C environment holds, nothing to encode


# -- the child ------------------------------------------------------------------

# The working directory this forkserver child began in, before multiprocessing
# chdir()ed it: the server's (see note_server_cwd).
_server_cwd = None
# In a fork server and its children: (a copy of os.environb's dict, what _whole_environment digests of
# it), as the server noted them for its children (see note_server_environment).
_server_environment = None


def note_server_cwd():
    """In a forkserver child, at activation (or in the server, for all its children): the working
    directory inherited from the server."""
    global _server_cwd
    _server_cwd = _cwd()


def note_server_environment():
    """In a fork server, once for all its children: its environment, joined as _whole_environment digests
    it. A child whose environment is still the server's (one C comparison of two dicts tells) digests
    that, without sorting and joining its variables again."""
    global _server_environment
    data = getattr(_ENVIRONB, "_data", None)
    if isinstance(data, dict):
        _server_environment = (dict(data), _joined_environment())


def child_attributes(sent, key, method):
    """The mp.env.*, mp.cwd.* and (forkserver) mp.forkserver.* attributes of this child's run span."""
    capture = sent.get("cap", False)
    if not capture and sent.get("all") is not None and sent["all"] == _whole_environment(key):
        # The same environment: one digest, not one per variable.
        attributes = {semconv.ENV_ADDED: [], semconv.ENV_REMOVED: [], semconv.ENV_CHANGED: []}
    else:
        attributes = _differences(sent, key, capture)
    cwd = _cwd()
    attributes.update(_cwd_attributes(sent["cwd"], cwd, key, capture, semconv.CWD_DIFFERS, semconv.CWD_CHILD))
    if method == "forkserver":
        attributes.update(_forkserver_attributes(sent, key, capture))
    return attributes


def _differences(sent, key, capture):
    """mp.env.added, removed, changed (and the values, under capture_values), variable by variable."""
    parent_env, child_env = sent["env"], _environment(key, capture)
    if isinstance(parent_env, bytes):
        parent_env = unpack_digests(parent_env)
    added = sorted(name for name in child_env if name not in parent_env)
    removed = sorted(name for name in parent_env if name not in child_env)
    changed = sorted(name for name in child_env if name in parent_env and child_env[name] != parent_env[name])
    attributes = {semconv.ENV_ADDED: _bounded([_text(n) for n in added]),
                  semconv.ENV_REMOVED: _bounded([_text(n) for n in removed]),
                  semconv.ENV_CHANGED: _bounded([_text(n) for n in changed])}
    if capture and (added or removed or changed):
        attributes[semconv.ENV_VALUES] = _bounded(
            [_value_difference(n, parent_env.get(n), child_env.get(n)) for n in sorted(added + removed + changed)])
    return attributes


def _forkserver_attributes(sent, key, capture):
    attributes = {semconv.FORKSERVER_SNAPSHOT: True}
    started = _server_started(sent.get("fs"))
    if started is not None:
        started_ns, start_ns = started
        attributes[semconv.FORKSERVER_STARTED] = _iso(started_ns)
        attributes[semconv.FORKSERVER_SNAPSHOT_AGE] = round(max(0, start_ns - started_ns) / 1e9, 3)
    attributes.update(_cwd_attributes(sent["cwd"], _server_cwd, key, capture, semconv.FORKSERVER_CWD_DIFFERS,
                                      semconv.FORKSERVER_CWD))
    return attributes


def _server_started(known):
    """(when this child's fork server started, when the parent called start()), in ns; None: unknown.

    The server is this child's parent process. When it is not the one the
    parent knew before this start(), it started during this start().
    """
    if not known:
        return None
    pid_before, started_before, start_ns = known
    if os.getppid() != pid_before:
        return start_ns, start_ns
    return (started_before, start_ns) if started_before is not None else None


def _cwd_attributes(parent_token, cwd, key, capture, differs_key, value_key):
    """``differs_key``: whether ``cwd`` is the parent's at start(); absent when either could not be read."""
    if parent_token is None or cwd is None:
        return {}
    differs = _cwd_token(cwd, key, capture) != parent_token
    attributes = {differs_key: differs}
    if differs and capture:
        attributes[value_key] = cwd
        attributes[semconv.CWD_PARENT] = parent_token
    return attributes


# -- both sides -------------------------------------------------------------------


def _environment_items():
    """(name, value) bytes pairs of this process's os.environ."""
    if _ENVIRONB is not None:
        data = getattr(_ENVIRONB, "_data", None)  # the bytes dict behind it: its items() is one C call
        return data.items() if isinstance(data, dict) else _ENVIRONB.items()
    return ((n.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))  # Windows: str
            for n, v in os.environ.items())


def _environment(key, capture_values):
    """{name: value if captured, else a keyed digest of name and value} of this process's os.environ."""
    items = _environment_items()
    if capture_values:
        return {name: value for name, value in items}
    keyed = blake2b(key=key or b"", digest_size=DIGEST_BYTES)  # copied per variable: cheaper than keying each
    digests = {}
    for name, value in items:
        digest = keyed.copy()
        digest.update(name + b"\0" + value)
        digests[name] = digest.digest()
    return digests


def pack_digests(digests):
    """``{name: digest}`` (bytes; digests of DIGEST_BYTES) as one bytes object: what a child is sent. It
    reads them only when the environment differs, and one object costs it one allocation as it unpickles
    its carrier, not two per variable. Each: the digest, then the name and a NUL (no name holds one)."""
    return b"".join(digest + name + b"\0" for name, digest in digests.items())


def unpack_digests(packed):
    """What ``pack_digests`` packed, as a dict."""
    digests, at = {}, 0
    while at < len(packed):
        end = packed.index(b"\0", at + DIGEST_BYTES)
        digests[packed[at + DIGEST_BYTES:end]] = packed[at:at + DIGEST_BYTES]
        at = end + 1
    return digests


def _whole_environment(key):
    """One keyed digest of the whole environment (``NAME=value\\0``, sorted: neither can hold the separators)."""
    noted = _server_environment
    if noted is not None and noted[0] == getattr(_ENVIRONB, "_data", None):  # a forkserver child's, unchanged
        joined = noted[1]
    else:
        joined = _joined_environment()
    return blake2b(joined, key=key or b"", digest_size=DIGEST_BYTES).digest()


def _joined_environment():
    return b"".join(sorted(name + b"=" + value + b"\0" for name, value in _environment_items()))


def _cwd():
    try:
        return os.getcwd()
    except OSError:  # the directory was removed: cannot tell
        return None


def _cwd_token(cwd, key, capture_values):
    if cwd is None or capture_values:
        return cwd
    data = cwd.encode("utf-8", "surrogateescape")
    return blake2b(data, key=key or b"", digest_size=DIGEST_BYTES).digest()


def _text(name):
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def _value_difference(name, parent, child):
    """``NAME: parent 'a', child 'b'``, ``unset`` for a side that lacks it (capture_values only)."""
    return "%s: parent %s, child %s" % (_text(name), _shown(parent), _shown(child))


def _shown(value):
    if value is None:
        return "unset"
    text = repr(_text(value))
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _bounded(names):
    if len(names) <= MAX_NAMES:
        return names
    return names[:MAX_NAMES - 1] + ["+%d more" % (len(names) - MAX_NAMES + 1)]


def _iso(nanoseconds):
    seconds, fraction = divmod(nanoseconds, 10 ** 9)
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)), fraction // 10 ** 6)
