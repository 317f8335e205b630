"""``python -m mptrace``: the same program as the ``mptrace`` command."""

from mptrace._cli import main

if __name__ == "__main__":
    main()
