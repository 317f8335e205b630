"""``blake2b``, as ``hashlib`` provides it, without importing ``hashlib``.

``hashlib`` loads OpenSSL, about 3 ms on a spawn or forkserver child's
start-up path; the builtin ``_blake2`` module is what ``hashlib.blake2b`` is.
"""

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

__all__ = ["blake2b"]
