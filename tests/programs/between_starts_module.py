"""Module-level state that a program changes between two starts (see between_starts.py)."""

NAME = "alfa"
PAIR = ("ab", 1)
settings = {"mode": "default"}
queue = []
RECORD = ("jobs", [])  # a tuple, not immutable: it holds a list


class Config:
    def __init__(self):
        self.retries = 1


config = Config()


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y


point = Point(1, 2)  # its state is in slots, not in a __dict__


class Counter:
    seen = []  # a class attribute, appended to in place
    limit = 1000


def report():
    """A target: lives here, so a spawn child imports this module to unpickle it."""
