"""A child that ends after its run span's START and before it reports what it compared.

A child hashes its random generators right after it compares what arrived
(module state, arguments, environment) and before it writes anything more:
``DiesWhenHashed.getstate`` kills the child there, in every start method, so
its run span reaches the trace without those attributes, deterministically.
(A test module: watched, as an application's would be.)

Only a child dies, and only when the test asked for it: a fork child once its
parent called ``arm()`` (the parent keeps its pid), a spawn or forkserver child
when it unpickles an ``Arm()`` argument, before its run span begins. Tests
import this module for themselves and forget it after (see tests/test_unreported.py):
a fork child of a later test must not find the generator.
"""

import os
import random
import signal

SETTING = "import-time"  # changed by the parent before start(): a spawn or forkserver child sees it diverged
_imported_in = os.getpid()
armed = False  # by arm(): this process's fork children die
armed_here = False  # by unpickling an Arm: this process dies


def arm():
    global armed
    armed = True


class Arm:
    """An argument whose rebuilding, in a child, arms it."""

    def __reduce__(self):
        return _arm, ()


def _arm():
    global armed_here
    armed_here = True
    return Arm()


class DiesWhenHashed(random.Random):
    """A generator whose state, read in a child, kills that child (the way a pool's terminate() can)."""

    def getstate(self):
        if armed_here or (armed and os.getpid() != _imported_in):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().getstate()


generator = DiesWhenHashed(1)


def target(arm):
    return arm


class FailsToArrive:
    """An argument that cannot be rebuilt: a spawn or forkserver child fails before run() begins."""

    def __reduce__(self):
        return _fail, ()


def _fail():
    raise RuntimeError("this argument cannot be rebuilt")
