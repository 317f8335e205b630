"""The ``mptrace`` command (and ``python -m mptrace``): ``run`` and ``compare``.

    mptrace run [OPTIONS] script.py [ARGS...]
    mptrace run [OPTIONS] -m module [ARGS...]
    mptrace compare [OPTIONS] script.py [ARGS...]

Everything after the script (or ``-m module``) belongs to the program, so
``mptrace run app.py --verbose`` passes ``--verbose`` to ``app.py``.
"""

import argparse
import multiprocessing
import os
import sys

from mptrace import __version__, _environment
from mptrace._config import ENV_SPOOL_DIR, ENV_TRACE_FILE, ENV_TREE
from mptrace._errors import ConfigurationError, UsageError
from mptrace._runner import ProgramNotFound

DEFAULT_TRACE_FILE = "mptrace-trace.json"
EXPORTER_ALIASES = {"tree": "mptrace"}
# Options that take a value: the value is the next word unless given as --option=value.
VALUED_OPTIONS = {"--exporter", "--trace-file", "--start-method", "--start-methods", "--timeout"}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, rest = (argv[0], argv[1:]) if argv else (None, [])
        if command in (None, "-h", "--help"):
            print(USAGE, file=sys.stdout if command else sys.stderr)
            sys.exit(0 if command else 2)
        if command == "--version":
            print("mptrace %s" % __version__)
            sys.exit(0)
        if command == "run":
            run_command(rest)
        elif command == "compare":
            compare_command(rest)
        else:
            raise UsageError("unknown command %r (choose from: run, compare)" % command)
    except (UsageError, ConfigurationError, ProgramNotFound) as error:
        print("mptrace: error: %s" % error, file=sys.stderr)
        sys.exit(2)


USAGE = """usage: mptrace run [OPTIONS] (script.py | -m module) [ARGS...]
       mptrace compare [OPTIONS] (script.py | -m module) [ARGS...]

  run      run the program with mptrace installed; with no exporter configured,
           print its process tree to stderr at exit and write the trace to
           mptrace-trace.json (Jaeger JSON: Jaeger UI opens it with Upload)
  compare  run the program once per start method (fork, spawn, forkserver) and
           report what differs between the runs

mptrace run --help and mptrace compare --help list the options."""


def _wants_help(argv):
    return bool(argv) and argv[0] in ("-h", "--help")


# -- the command line -----------------------------------------------------------


def split_program(argv):
    """(mptrace's options, the script or module, whether it is a module, the program's arguments)."""
    options, index = [], 0
    while index < len(argv):
        word = argv[index]
        if word == "-m":
            if index + 1 >= len(argv):
                raise UsageError("-m needs a module name")
            return options, argv[index + 1], True, argv[index + 2:]
        if word == "--":
            if index + 1 >= len(argv):
                raise UsageError("no program to run after --")
            return options, argv[index + 1], False, argv[index + 2:]
        if not word.startswith("-") or word == "-":
            return options, word, False, argv[index + 1:]
        options.append(word)
        if word in VALUED_OPTIONS:
            if index + 1 >= len(argv):
                raise UsageError("%s needs a value" % word)
            options.append(argv[index + 1])
            index += 1
        index += 1
    raise UsageError("no program to run: give a script or -m module")


def _run_parser():
    parser = argparse.ArgumentParser(prog="mptrace run", description="Run a Python program with mptrace installed "
                                     "before its first line.", usage="%(prog)s [OPTIONS] (script.py | -m module) "
                                     "[ARGS...]")
    parser.add_argument("--exporter", help="where spans go, as OTEL_TRACES_EXPORTER: otlp, console, none, tree "
                        "(default: OTEL_TRACES_EXPORTER; if nothing is configured, tree)")
    parser.add_argument("--trace-file", help="with the tree exporter: write the trace here, as Jaeger JSON (default "
                        "%s)" % DEFAULT_TRACE_FILE)
    parser.add_argument("--no-trace-file", action="store_true", help="with the tree exporter: write no trace file")
    parser.add_argument("--no-tree", action="store_true", help="with the tree exporter: print no tree")
    parser.add_argument("--start-method", help="the program's default start method (fork, spawn, forkserver); a "
                        "program that chooses one itself keeps its choice")
    return parser


def _parse(parser, options):
    parser.error = _one_line_error  # argparse would print its usage line too
    return parser.parse_args(options)


def _one_line_error(message):
    raise UsageError(message)


def check_environment():
    """Stop on an MPTRACE_* or OTEL_* value that install() would reject, before any program starts.

    (install() checks the exporter names itself, before the program starts.)
    """
    from mptrace import _config

    spool_parent = os.environ.get(ENV_SPOOL_DIR)
    if spool_parent and not os.path.isdir(spool_parent):
        raise UsageError("%s is not a directory: %r" % (ENV_SPOOL_DIR, spool_parent))
    try:
        _config.parse({})
        _environment.sdk_disabled()
        _environment.custom_sampler()
        _environment.check_resource_attributes()
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def compare_command(argv):
    from mptrace import _compare

    if _wants_help(argv):
        _compare.parser().print_help()
        sys.exit(0)
    options, target, is_module, program_args = split_program(argv)
    settings = _parse(_compare.parser(), options)
    check_environment()
    sys.exit(_compare.compare(target, is_module, program_args, settings))


# -- mptrace run ------------------------------------------------------------------


def run_command(argv):
    from mptrace import _runner

    if _wants_help(argv):
        _run_parser().print_help()
        sys.exit(0)
    options, target, is_module, program_args = split_program(argv)
    settings = _parse(_run_parser(), options)
    _runner.check(target, is_module)
    check_environment()
    started_with = {name: os.environ.get(name) for name in RUN_VARIABLES}
    _configure_export(settings)
    _name_the_service(target)
    method = settings.start_method
    if method is not None:
        set_default_start_method(method)
    _runner.prepare()
    _spool_in_a_directory_removed_at_the_end()
    import mptrace

    mptrace.install()
    # install() has read them; the program (and any program it runs) sees the environment it was given.
    _restore_environment(started_with)
    from mptrace import _program

    _program.begin("-m " + target if is_module else target)  # the whole run is one trace
    status, failure = _runner.run(target, program_args, is_module)
    _program.set_outcome(status, failure)
    _runner.exit_with(status)


# What `run` may set for install(), and puts back before the program starts.
RUN_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", ENV_TRACE_FILE, ENV_TREE, ENV_SPOOL_DIR)


def _spool_in_a_directory_removed_at_the_end():
    """install()'s spool directory goes in one that is removed however the program ends (see _reaper).

    Removed at a normal exit by the atexit handler registered here, which runs
    after install()'s (atexit runs the last registered first); after a signal
    or ``os._exit``, by the watcher.
    """
    import atexit

    from mptrace import _config, _reaper

    parent = os.environ.get(ENV_SPOOL_DIR) or _config.default_spool_parent()
    try:
        directory = _reaper.private_directory(parent)
    except OSError as error:
        raise UsageError("cannot create the spool directory in %s: %s" % (parent or "the temporary directory",
                                                                          error.strerror or error)) from None
    atexit.register(_reaper.remove, directory)
    os.environ[ENV_SPOOL_DIR] = directory


def _restore_environment(values):
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _configure_export(settings):
    """Set the OTEL_* / MPTRACE_* variables install() reads; with nothing configured, the tree."""
    exporter = settings.exporter
    if exporter is not None:
        names = [EXPORTER_ALIASES.get(n.strip(), n.strip()) for n in exporter.split(",") if n.strip()]
        if not names:
            raise UsageError("--exporter needs a name (otlp, console, none, tree)")
        os.environ["OTEL_TRACES_EXPORTER"] = ",".join(names)
    elif not _environment.export_configured():
        os.environ["OTEL_TRACES_EXPORTER"] = "mptrace"
    if settings.trace_file and settings.no_trace_file:
        raise UsageError("--trace-file and --no-trace-file contradict each other")
    if not settings.no_trace_file:
        os.environ[ENV_TRACE_FILE] = os.path.abspath(settings.trace_file or os.environ.get(ENV_TRACE_FILE)
                                                     or DEFAULT_TRACE_FILE)
    else:
        os.environ.pop(ENV_TRACE_FILE, None)
    if settings.no_tree:
        os.environ[ENV_TREE] = "off"
    if ENV_TRACE_FILE in os.environ and _environment.TREE_EXPORTER in _environment.exporter_names():
        check_trace_file(os.environ[ENV_TRACE_FILE])


def check_trace_file(path):
    """Raise UsageError unless a trace file can be written at ``path`` (as it will be: a temporary file
    in its directory, renamed)."""
    import tempfile

    directory = os.path.dirname(path)
    problem = None
    if os.path.isdir(path):
        problem = "it is a directory"
    elif not os.path.isdir(directory):
        problem = "no directory %s" % directory
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=".mptrace-probe-", dir=directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            problem = "cannot create a file in %s (%s)" % (directory, error.strerror or error)
    if problem:
        raise UsageError("cannot write the trace file %s: %s" % (path, problem))


def _name_the_service(target):
    """``service.name`` is the program's name unless the OTEL_* variables give one (not unknown_service)."""
    if os.environ.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""):
        return
    name = os.path.splitext(os.path.basename(target))[0] if target.endswith(".py") else target
    os.environ["OTEL_SERVICE_NAME"] = name or "python"


def set_default_start_method(method):
    """Make ``method`` the default start method without choosing it for the program.

    ``set_start_method`` would make a program's own later call fail ("context
    has already been set"); replacing the default context's default keeps the
    program free to choose, as on a platform whose default is ``method``.
    """
    if method not in multiprocessing.get_all_start_methods():
        raise UsageError("--start-method must be one of %s on this platform, got %r" % (
            ", ".join(multiprocessing.get_all_start_methods()), method))
    from multiprocessing import context

    default = context._default_context
    if getattr(default, "_actual_context", None) is None:
        default._default_context = context._concrete_contexts[method]
