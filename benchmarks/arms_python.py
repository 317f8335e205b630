"""The interpreter benchmark arms run: this one, unless it loads an editable mptrace at every start-up.

``pip install -e .`` (the README's install) puts a ``.pth`` file in
site-packages that imports its finder at every interpreter's start-up, and
with it ``pathlib``, ``re``, ``urllib.parse``, ``ipaddress``...: some 6 ms on
3.11 and 12 ms on 3.12 in each spawn child, in every arm, mptrace's or not.
An installed mptrace has no such file. Measured with it, a spawn start looks
that much longer in the baseline and mptrace's share that much smaller
(1.15x where it is 1.20x on 3.11): a benchmark that flatters mptrace.

So where such a file is found, the arms run a virtual environment made for
the benchmark, whose site-packages holds this environment's packages (hard
links, copies across file systems) but mptrace's editable install. They lie
in a site-packages directory of the interpreter that runs them, as an
installed package does: mptrace tells libraries from the application's
modules by that (a directory merely put on ``sys.path`` holds application
modules, which mptrace watches). mptrace itself comes from the arms'
``PYTHONPATH`` (the checkout), as before. Fork and forkserver children run
no start-up of their own and are unaffected; so is the fork server's own
start, made before any measured start.
"""

import glob
import os
import shutil
import site
import subprocess
import sys

# What setuptools makes for an editable install of mptrace: the .pth file and its finder, the metadata.
EDITABLE_FILES = "__editable__*mptrace*"
EDITABLE_MPTRACE = (EDITABLE_FILES, "mptrace-*.dist-info")


def site_directories():
    """This interpreter's site-packages directories (the user's too, when it is on sys.path)."""
    directories = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and user in sys.path:
        directories.append(user)
    return [directory for directory in directories if os.path.isdir(directory)]


def editable_mptrace_files(directories):
    """The editable-install .pth files of mptrace in ``directories``."""
    found = []
    for directory in directories:
        found.extend(glob.glob(os.path.join(directory, EDITABLE_FILES + ".pth")))
    return found


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, destination)


def arms_python(directory):
    """The interpreter for the arms: ``sys.executable``, or, when this environment loads an editable mptrace
    at start-up, a virtual environment made under ``directory`` without it (see the module's docstring)."""
    directories = site_directories()
    if not editable_mptrace_files(directories):
        return sys.executable
    venv = os.path.join(directory, "arms-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python")
    libraries = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    for source in directories:
        shutil.copytree(source, libraries, copy_function=_link_or_copy, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*EDITABLE_MPTRACE))
    return python
