"""Changes module state after import without changing any size, then starts a child.

    python -m tests.programs.run_traced OUT.json tests/programs/digest_program.py METHOD
"""

import multiprocessing
import sys

import digest_settings

if __name__ == "__main__":
    digest_settings.MODE = "test"
    digest_settings.PAYLOAD = b"test"
    digest_settings.BUFFER[:] = b"test"
    digest_settings.HOSTS.discard("c")
    digest_settings.HOSTS.add("d")
    digest_settings.FROZEN = frozenset({1, 2, 4})
    digest_settings.TABLE["key19"] = -19
    digest_settings.ROWS[19] = -19
    digest_settings.NESTED["outer"]["inner"]["deep"] = "test"
    digest_settings.LONG[4000] = -1.0
    digest_settings.SCORES["item2999"] = -2999
    digest_settings.SETTINGS.db.connection.port = 5433
    process = multiprocessing.get_context(sys.argv[1]).Process(target=digest_settings.report)
    process.start()
    process.join()
