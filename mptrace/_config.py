"""install() options and the environment variables mptrace reads.

This is the only module that names mptrace's environment variables.
"""

import os
from collections import namedtuple

ENV_SPOOL_DIR = "MPTRACE_SPOOL_DIR"

Options = namedtuple("Options", "spool_dir")


def default_spool_parent():
    """Where the private spool directory goes when nobody said.

    A memory-backed directory when there is one: a child creates its spool
    file on its start-up path, and on a disk filesystem that alone can cost
    more than a fork. XDG_RUNTIME_DIR is private to the user; /dev/shm is
    shared, but the spool directory itself is created with mode 0700.
    """
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return None  # tempfile's default

_DEFAULTS = {"spool_dir": None}


def parse(options):
    """Validate ``install()`` keyword options; errors name the option and value."""
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise TypeError(
            "install() got unknown option %r (choose from: %s)" % (unknown[0], ", ".join(sorted(_DEFAULTS))))
    values = dict(_DEFAULTS)
    values["spool_dir"] = os.environ.get(ENV_SPOOL_DIR) or None
    values.update(options)
    spool_dir = values["spool_dir"]
    if spool_dir is not None:
        if not isinstance(spool_dir, (str, os.PathLike)):
            raise TypeError("install() option 'spool_dir' must be a path, got %r" % (spool_dir,))
        if not os.path.isdir(spool_dir):
            raise ValueError("install() option 'spool_dir' is not a directory: %r" % (os.fspath(spool_dir),))
        values["spool_dir"] = os.fspath(spool_dir)
    else:
        values["spool_dir"] = default_spool_parent()
    return Options(**values)
