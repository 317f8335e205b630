"""An application module that opens its resources at import, as many do: a connection to its
database (here an echo server the test runs on 127.0.0.1), a log file, and a pipe it reads
results from. A fork child inherits all three."""

import os
import socket

DB = socket.create_connection(("127.0.0.1", int(os.environ["FDS_ECHO_PORT"])))
LOG = open(os.environ["FDS_LOG_PATH"], "a")
_read_end, _write_end = os.pipe()
RESULTS = os.fdopen(_read_end, "rb", buffering=0)


def query(ready):
    """A worker: waits until every worker has started, then asks the database."""
    ready.wait(30)
    DB.sendall(b"ping")
