"""mptrace's own exception types (standard library only: children import this)."""


class ConfigurationError(ValueError):
    """An ``OTEL_*`` or ``MPTRACE_*`` setting mptrace cannot use; the message names it and its value."""


class UsageError(Exception):
    """An ``mptrace`` command line that cannot be acted on; the message says why."""


ConfigurationError.__module__ = "mptrace"  # how tracebacks name it: users import it from there
