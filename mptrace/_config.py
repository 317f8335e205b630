"""install() options and the environment variables mptrace reads.

This is the only module that names mptrace's environment variables.
"""

import os
from collections import namedtuple

ENV_SPOOL_DIR = "MPTRACE_SPOOL_DIR"
ENV_WATCH_MODULES = "MPTRACE_WATCH_MODULES"  # comma-separated module prefixes to watch as well
ENV_IGNORE_MODULES = "MPTRACE_IGNORE_MODULES"  # comma-separated module prefixes never to watch
ENV_PICKLE_SPAN_BYTES = "MPTRACE_PICKLE_SPAN_BYTES"  # a queue/connection pickle this big gets its own span
ENV_PICKLE_SPAN_SECONDS = "MPTRACE_PICKLE_SPAN_SECONDS"  # ... and one that takes this long

ENV_TASK_SPANS_PER_SECOND = "MPTRACE_TASK_SPANS_PER_SECOND"  # at most this many task spans a second ("none": no limit)
ENV_TASK_SPANS = "MPTRACE_TASK_SPANS"  # "chunk" (default) or "item"
ENV_TRACE_FILE = "MPTRACE_TRACE_FILE"  # where OTEL_TRACES_EXPORTER=mptrace writes the Jaeger JSON trace
ENV_TREE = "MPTRACE_TREE"  # "off": OTEL_TRACES_EXPORTER=mptrace prints no process tree

TASK_SPAN_MODES = ("chunk", "item")

Options = namedtuple(
    "Options", "spool_dir watch_modules ignore_modules capture_values pickle_span_bytes pickle_span_seconds "
    "task_spans_per_second task_spans program_span random_state inherited_fds check_task_state")


# Memory-backed directories shared by all users (see default_spool_parent).
SHARED_MEMORY_DIRS = ("/dev/shm",)


def default_spool_parent():
    """Where the private spool directory goes when nobody said.

    A memory-backed directory when there is one: a child creates its spool
    file on its start-up path, and on a disk filesystem that alone can cost
    more than a fork. XDG_RUNTIME_DIR is private to the user; /dev/shm is
    shared, but the spool directory itself is created with mode 0700.
    """
    usable = spool_parents(None)
    return usable[0]


def spool_parents(chosen):
    """Where to try to create the spool directory, in order: ``chosen`` (the
    option) or the memory-backed ones, then tempfile's default (None)."""
    candidates = (chosen,) if chosen else (os.environ.get("XDG_RUNTIME_DIR"),) + SHARED_MEMORY_DIRS
    usable = [c for c in candidates if c and os.path.isdir(c) and os.access(c, os.W_OK | os.X_OK)]
    return usable + [None]

_DEFAULTS = {
    "spool_dir": None,
    "watch_modules": (),
    "ignore_modules": (),
    "capture_values": False,
    "pickle_span_bytes": 1 << 20,
    "pickle_span_seconds": 0.001,
    "task_spans_per_second": 100,
    "task_spans": "chunk",
    "program_span": False,
    "random_state": True,  # hash each child's random generators (see _randomstate)
    "inherited_fds": True,  # list the descriptors a fork child inherits (mp.fork.fds)
    "check_task_state": True,
}


def parse(options):
    """Validate ``install()`` keyword options; errors name the option and value."""
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise TypeError(
            "install() got unknown option %r (choose from: %s)" % (unknown[0], ", ".join(sorted(_DEFAULTS))))
    values = dict(_DEFAULTS)
    values["spool_dir"] = os.environ.get(ENV_SPOOL_DIR) or None
    values["watch_modules"] = _prefixes_from_environment(ENV_WATCH_MODULES)
    values["ignore_modules"] = _prefixes_from_environment(ENV_IGNORE_MODULES)
    values.update(_thresholds_from_environment())
    values.update(_task_settings_from_environment())
    values.update(options)
    values["pickle_span_bytes"] = _non_negative("pickle_span_bytes", values["pickle_span_bytes"], int)
    values["pickle_span_seconds"] = _non_negative("pickle_span_seconds", values["pickle_span_seconds"], (int, float))
    values["task_spans_per_second"] = _rate("task_spans_per_second", values["task_spans_per_second"])
    if values["task_spans"] not in TASK_SPAN_MODES:
        raise ValueError("install() option 'task_spans' must be one of %s, got %r"
                         % (", ".join(map(repr, TASK_SPAN_MODES)), values["task_spans"]))
    for option in ("watch_modules", "ignore_modules"):
        values[option] = _prefixes(option, values[option])
    for option in ("capture_values", "program_span", "random_state", "inherited_fds", "check_task_state"):
        if not isinstance(values[option], bool):
            raise TypeError("install() option %r must be True or False, got %r" % (option, values[option]))
    spool_dir = values["spool_dir"]
    if spool_dir is not None:
        if not isinstance(spool_dir, (str, os.PathLike)):
            raise TypeError("install() option 'spool_dir' must be a path, got %r" % (spool_dir,))
        if not os.path.isdir(spool_dir):
            raise ValueError("install() option 'spool_dir' is not a directory: %r" % (os.fspath(spool_dir),))
        values["spool_dir"] = os.fspath(spool_dir)
    return Options(**values)


def _thresholds_from_environment():
    found = {}
    for variable, option, convert in ((ENV_PICKLE_SPAN_BYTES, "pickle_span_bytes", int),
                                      (ENV_PICKLE_SPAN_SECONDS, "pickle_span_seconds", float)):
        text = os.environ.get(variable, "").strip()
        if text:
            try:
                found[option] = convert(text)
            except ValueError:
                raise ValueError("environment variable %s must be a non-negative number, got %r"
                                 % (variable, text)) from None
    return found


def _task_settings_from_environment():
    found = {}
    rate = os.environ.get(ENV_TASK_SPANS_PER_SECOND, "").strip()
    if rate:
        if rate.lower() == "none":
            found["task_spans_per_second"] = None
        else:
            try:
                value = float(rate)
            except ValueError:
                value = 0.0
            if not value > 0:  # also NaN
                raise ValueError("environment variable %s must be a positive number or 'none', got %r"
                                 % (ENV_TASK_SPANS_PER_SECOND, rate))
            found["task_spans_per_second"] = value
    mode = os.environ.get(ENV_TASK_SPANS, "").strip()
    if mode:
        if mode not in TASK_SPAN_MODES:
            raise ValueError("environment variable %s must be one of %s, got %r"
                             % (ENV_TASK_SPANS, ", ".join(TASK_SPAN_MODES), mode))
        found["task_spans"] = mode
    return found


def _rate(option, value):
    """A positive number of spans a second, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError("install() option %r must be a positive number or None, got %r" % (option, value))
    return value


def _non_negative(option, value, types):
    if isinstance(value, bool) or not isinstance(value, types):
        raise TypeError("install() option %r must be a non-negative number, got %r" % (option, value))
    if value < 0:
        raise ValueError("install() option %r must be a non-negative number, got %r" % (option, value))
    return value


def _prefixes_from_environment(variable):
    text = os.environ.get(variable, "")
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _prefixes(option, value):
    """A tuple of module-name prefixes; a bad one is named in the error."""
    if isinstance(value, str):
        value = (value,)
    try:
        prefixes = tuple(value)
    except TypeError:
        raise TypeError("install() option %r must be a list of module names, got %r" % (option, value)) from None
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix or not all(part.isidentifier() for part in prefix.split(".")):
            raise ValueError("install() option %r has an invalid module name %r" % (option, prefix))
    return prefixes
