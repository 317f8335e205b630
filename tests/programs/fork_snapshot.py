"""Preloaded by a fork server (the program's own preload list): notes, in each child it forks, the modules
the child began with, so the child can tell which it imported itself. See forkserver_preload.py."""

import os
import sys

began_with = None  # in a forked child: the names in sys.modules when it was forked


def _note():
    global began_with
    began_with = sorted(sys.modules)


os.register_at_fork(after_in_child=_note)
