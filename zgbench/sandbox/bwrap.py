"""Bubblewrap (``bwrap``, Debian's ``bubblewrap``) around the optimizer's process.

Under it the optimizer sees the machine's filesystem read-only, a private empty ``/tmp``,
empty folders in place of the results folder and zgbench's cache, no network (a network
namespace of its own), its own PID namespace (all its processes die with it: ``--die-with-
parent``) and a new session (no terminal to inject input into). Where user namespaces are not
available, bwrap cannot start: the run falls back to process separation, said once.

``ZGBENCH_SANDBOX_HIDE`` lists more paths to hide (``os.pathsep``-separated, folders or files,
e.g. the organizer's instance key file). ``ZGBENCH_SANDBOX`` picks the mode: ``auto`` (default: bwrap where it works), ``bwrap``
(required: an error where it does not work) or ``process`` (process separation only).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from zgbench.errors import UsageError

ENV = "ZGBENCH_SANDBOX"
HIDE_ENV = "ZGBENCH_SANDBOX_HIDE"
MODES = ("auto", "bwrap", "process")


@functools.cache
def unavailable() -> str | None:
    """Why bwrap cannot sandbox a process here (not installed, no user namespaces), or None.
    Probed once per process by starting ``true`` under the same options a run uses."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        probe = subprocess.run(wrap(["true"], [], gpu=False, exe=exe), capture_output=True,
                               timeout=30, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not start: {exc}"
    if probe.returncode != 0:
        return (f"bwrap cannot create its namespaces here ({probe.stderr.strip() or 'exit '}"
                f"{'' if probe.stderr.strip() else probe.returncode}): unprivileged user "
                "namespaces are off (sysctl kernel.unprivileged_userns_clone or a container "
                "without them)")
    return None


def resolve(mode: str | None = None) -> tuple[str, str | None]:
    """``("bwrap" | "process", why bwrap is not used or None)`` for ``mode`` (default: the
    ``ZGBENCH_SANDBOX`` environment variable, else ``auto``)."""
    mode = (mode or os.environ.get(ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise UsageError(f"{ENV}={mode!r}: use one of {', '.join(MODES)}.")
    if mode == "process":
        return "process", f"{ENV}=process"
    reason = unavailable()
    if reason is None:
        return "bwrap", None
    if mode == "bwrap":
        raise UsageError(f"{ENV}=bwrap, but {reason}. Install bubblewrap and allow user "
                         f"namespaces, or set {ENV}=process for process separation only.")
    return "process", reason


TMP = Path("/tmp")


def needed_under_tmp() -> list[Path]:
    """What the optimizer's Python needs that lies below /tmp (a checkout or a virtual
    environment there, as a CI job's clone may be: the private /tmp would hide zgbench
    itself): this interpreter's prefixes and import path entries below /tmp, outermost only,
    to be bound back read-only. /tmp itself is never among them."""
    found = set()
    for entry in (sys.prefix, sys.exec_prefix, sys.base_prefix, *sys.path):
        path = Path(entry or ".").resolve()
        if TMP in path.parents and path.exists():
            found.add(path)
    return sorted(p for p in found if not any(q in p.parents for q in found))


def wrap(argv: Sequence[str], hide: Sequence[str | Path], gpu: bool,
         exe: str | None = None) -> list[str]:
    """``argv`` under bwrap: read-only root, private /tmp, ``hide`` replaced by empty
    folders, no network, own PID namespace, dies with its parent, new session. ``gpu``:
    the real /dev (CUDA needs its device files) instead of a minimal one."""
    command = [exe or shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/",
               *(("--dev-bind", "/dev", "/dev") if gpu else ("--dev", "/dev")),
               "--proc", "/proc", "--tmpfs", "/tmp"]
    bound = needed_under_tmp()
    for path in bound:  # read-only, over the private /tmp
        command += ["--ro-bind", str(path), str(path)]
    for path in hide:
        path = Path(path).resolve()
        if TMP in (path, *path.parents) and not any(b in (path, *path.parents) for b in bound):
            continue  # the private /tmp hides it already
        if path.is_dir():
            command += ["--tmpfs", str(path)]
        elif path.exists():  # a file (an instance key): an empty one in its place
            command += ["--ro-bind", "/dev/null", str(path)]
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--chdir", "/tmp",
                "--setenv", "HOME", "/tmp", "--", *argv]
    return command
