"""mptrace's own diagnostics, on the ``mptrace`` logger.

``logging`` is imported only when there is something to say: spawn children
load this module on their start-up path, and most of them never log.
"""

import os


def _logger():
    import logging

    return logging.getLogger("mptrace")


def internal_error(what):
    """Log an exception raised inside mptrace; the caller then carries on."""
    _logger().warning("mptrace: %s failed (pid %d); continuing without it", what, os.getpid(), exc_info=True)


def warning(message, *args):
    _logger().warning("mptrace: " + message, *args)


def warning_with(message, exc_info, *args):
    """A warning, with the exception being handled when ``exc_info`` is true."""
    _logger().warning("mptrace: " + message, *args, exc_info=exc_info)


def info(message, *args):
    _logger().info("mptrace: " + message, *args)


def debug(message, *args):
    _logger().debug("mptrace: " + message, *args)


def safely(what, function, *args):
    """Run mptrace's own ``function``; log and swallow anything it raises.

    Never wrap user code in this: user exceptions must propagate unchanged.
    """
    try:
        return function(*args)
    except Exception:
        internal_error(what)
        return None
