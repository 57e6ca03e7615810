"""The code fingerprint of a run: which zgbench, which checkout, which plugin source.

A run's identity names ``zgbench <version>`` only, so editing a task or an optimizer would
silently reuse results computed by the old code. Putting the source into the identity would
redo every run after any edit instead; so the fingerprint goes into the record's ``code``
field, outside the identity, and ``zgbench run`` compares it when it resumes (warning about
stale runs, redoing them with ``--rerun-stale``).

Each part is cheap and computed once per process: ``git describe`` runs once, and each
plugin module's source file is hashed once.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import types
from pathlib import Path

import zgbench
from zgbench.record import Code

class StaleWarning(UserWarning):
    """Finished runs were computed by task or optimizer code that has changed since (or by
    code of unknown version: records written before the fingerprint existed)."""


#: Hex digits kept of a source file's sha256: enough to tell two edits apart.
DIGITS = 12


@functools.cache
def git_describe() -> str | None:
    """``git describe --always --dirty`` of the checkout zgbench runs from, or ``None`` when
    zgbench is not a tracked file of a git checkout (an installed wheel) or git is absent."""
    here = Path(zgbench.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # a wheel installed inside some other project's checkout is not a zgbench checkout
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    return git("describe", "--always", "--dirty") or None


@functools.cache
def _file_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:DIGITS]
    except OSError:
        return None


def source_hash(cls: type) -> str | None:
    """A short sha256 of the source file of the module that defines ``cls`` (``None`` if it
    has no readable file, e.g. a class built in an interactive session)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return _file_hash(str(Path(path).resolve())) if path else None


def source_hash_with_helpers(cls: type) -> str | None:
    """A short sha256 over the module defining ``cls`` and the modules of its own package it
    imported by name (``from zgbench.tasks import _raster, _softras``): what a task's
    reference is computed with, so a change to a helper recomputes it. Only modules bound in
    the module's namespace count; a function-level import is not seen."""
    module = sys.modules.get(cls.__module__)
    if module is None or source_hash(cls) is None:
        return source_hash(cls)
    package = cls.__module__.rpartition(".")[0]
    helpers = sorted(
        {v.__name__ for v in vars(module).values() if isinstance(v, types.ModuleType)
         and package and v.__name__.startswith(package + ".") and getattr(v, "__file__", None)})
    parts = [source_hash(cls) or ""] + [
        _file_hash(str(Path(sys.modules[name].__file__).resolve())) or "" for name in helpers]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:DIGITS]


def code(task_cls: type, optimizer_cls: type) -> Code:
    """The ``code`` field of a record for a run of ``task_cls`` × ``optimizer_cls``."""
    fingerprint: Code = {"zgbench": zgbench.__version__}
    for key, value in (("git", git_describe()), ("task", source_hash(task_cls)),
                       ("optimizer", source_hash(optimizer_cls))):
        if value is not None:
            fingerprint[key] = value  # type: ignore[literal-required]
    return fingerprint
