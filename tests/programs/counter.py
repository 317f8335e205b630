"""A module whose globals the tasks of tests/programs/carryover.py change, as a user's module would."""

from functools import lru_cache

SEEN = []
CALLS = 0


def count(item):
    """Remembers every item it saw: the result depends on which worker ran it, and on what ran there before."""
    global CALLS
    CALLS += 1
    SEEN.append(item)
    return CALLS


@lru_cache(maxsize=None)
def square(item):
    return item * item


def cached(item):
    return square(item % 3)


def pure(item):
    return item * 2


class Tally:
    """Class-level state: a task that bumps it leaves it bumped for the worker's next tasks."""

    total = 0


def tally(item):
    Tally.total += 1
    return Tally.total


def block(path):
    """Says it is running (creates ``path``), then stays busy until its pool terminates it."""
    import time

    open(path, "w").close()
    time.sleep(120)
