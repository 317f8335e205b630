"""Module state of every kind a fingerprint shows only by size or type (see digest_program.py)."""

MODE = "prod"
PAYLOAD = b"prod"
BUFFER = bytearray(b"prod")
HOSTS = {"a", "b", "c"}
FROZEN = frozenset({1, 2, 3})
TABLE = {"key%02d" % index: index for index in range(20)}  # items past the 16 a fingerprint shows
ROWS = list(range(20))
NESTED = {"outer": {"inner": {"deep": "prod"}}}  # below the depth limit of module state
# Thousands of plain values, as a program's tables are: their content is digested in one pass.
LONG = [index / 8 for index in range(5000)]
SCORES = {"item%04d" % index: index for index in range(3000)}


class Settings:
    def __init__(self):
        self.db = Database()


class Database:
    def __init__(self):
        self.connection = Connection()


class Connection:
    def __init__(self):
        self.port = 5432


SETTINGS = Settings()  # SETTINGS.db.connection.port: an attribute below the depth limit


def report():
    """A target: lives here, so a spawn child imports this module before run()."""
