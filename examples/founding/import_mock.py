"""A helper module whose global the main program changes after import."""

to_mock = None
