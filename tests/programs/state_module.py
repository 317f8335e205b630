"""Module-level state that a program changes after importing it."""

counter = 0
settings = {"mode": "default"}
untouched = 5


class Config:
    def __init__(self):
        self.retries = 1


config = Config()


def report():
    """A target: lives here, so a spawn child imports this module to unpickle it."""
