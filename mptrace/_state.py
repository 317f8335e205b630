"""All of mptrace's mutable global state, in one place.

A process has one role at a time:

* ``root``: ``install()`` ran here. mptrace's spans go to the user's provider,
  and children's spans are collected from the spool directory into it.
* ``child``: a traced child. Spans go to this process's spool file.
* ``None``: not traced.

The role belongs to one pid. A process forked from a traced one (by
multiprocessing or by a plain ``os.fork``) inherits this module's memory, so
every entry point checks ``owner_pid`` before acting on inherited state.
"""

import os
import threading

from mptrace._patching import PatchRegistry


class State:
    def __init__(self):
        # Every patch this process made or inherited, with its original.
        self.patches = PatchRegistry()
        self.role = None
        self.owner_pid = None
        # Settings shared by the whole process tree (spool directory, root
        # resource): a JSON-able dict that rides in every carrier.
        self.tree = None
        # Parent-side: how spans are made here, and the children whose exit
        # this process has not observed yet, keyed by id(Popen).
        self.tracer = None
        self.children = {}
        self.finalizer_pid = None
        # {pid: start time in ns} of the fork servers this process saw start (see _envdiff).
        self.forkservers = {}
        # The pids of those that run this very interpreter (see _stowaway.child_reads_this_bytecode).
        self.forkservers_of_this_interpreter = set()
        # The pids of those that preloaded this mptrace's child side (see _envdiff._add_preload): their children
        # call the loader the server prepared, with nothing to unmarshal (see _stowaway.Stowaway).
        self.forkservers_preloading_mptrace = set()
        # Root only.
        self.root = None
        # Child only.
        self.child = None

    def active(self):
        return self.role is not None and self.owner_pid == os.getpid()

    def is_root(self):
        return self.role == "root" and self.owner_pid == os.getpid()


state = State()

# The launch in progress in this thread, between Process.start() and its
# return. A fork child starts life inside that call, in a copy of the thread
# that made it, so it finds its own launch here.
launching = threading.local()


def current_launch():
    return getattr(launching, "launch", None)


def reset():
    """Forget everything (the caller has already undone the patches)."""
    state.__init__()
    launching.launch = None
