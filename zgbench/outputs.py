"""Writing outputs safely: inside their folder, whole or not at all.

A results folder may come from anyone (see :mod:`zgbench.paths`), and so may the folders
zgbench writes into below it: a ``report/``, ``leaderboard/``, ``pictures/``,
``quarantine/`` or ``artifacts/`` that is a symbolic link would send every file written
there anywhere on the disk. :func:`checked` applies the rule of :func:`zgbench.paths.inside`
to outputs: no part of a destination below its results folder may be a symbolic link (the
results folder itself may be one: that is the user's own choice, as is an explicit ``-o``).

Every file is written whole or not at all (a full disk, a Ctrl-C): records and CSVs through
:func:`zgbench.store.atomic_write`, figures through :func:`save_figure` (rendered in memory,
then written atomically), and the pictures tasks write themselves through
:func:`task_pictures` (into a temporary folder beside their place, moved into place once
complete).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zgbench.errors import UsageError
from zgbench.store import atomic_write


def checked(root: str | Path, path: str | Path) -> Path:
    """``path``, refused (UsageError) if a part of it below ``root`` is a symbolic link.

    ``path`` not under ``root`` (lexically) is the user's own choice (``-o``) and is only
    returned."""
    root, path = Path(root), Path(path)
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return path
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise UsageError(
                f"{current} is a symbolic link (to {os.readlink(current)}): zgbench writes only "
                f"inside {root}, never through a link. Remove the link (or give -o/--out a "
                "folder of your choice).")
    return path


def literal(text: Any) -> str:
    """``text`` as matplotlib should draw it, verbatim: a ``$`` in a label (a spec such as
    ``classify[data=/tmp/$x$]``) is escaped, so it is not parsed as mathtext, which draws it
    wrongly or raises while saving the figure."""
    return str(text).replace("$", r"\$")


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Render ``fig`` as PNG in memory, close it, and write it to ``path`` atomically: a full
    disk leaves the previous picture (or none), never half of one."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", **savefig)
    finally:
        plt.close(fig)
    path = Path(path)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)
    return path


def task_pictures(draw: Callable[[str], Iterable[Any]], folder: str | Path,
                  extra: Callable[[Path, list[Path]], list[Path]] | None = None) -> list[Path]:
    """Let a task write its pictures (``draw(directory)``, e.g. ``task.artifacts(θ, dir)``)
    into a temporary folder beside ``folder``, then move that folder into place: a task that
    fails or a disk that fills up half way leaves no half-written picture, only what was
    there before. ``extra(tmp, paths)`` may add files of the harness (the stored θ) before
    the move. Returns the paths under ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        paths = [Path(p) for p in draw(str(tmp))]
        if extra is not None:
            paths = extra(tmp, paths)
        moved = [_under(p, tmp, folder) for p in paths]
        if not any(_under(p, tmp, None) for p in paths):  # nothing drawn there: keep nothing
            shutil.rmtree(tmp)
            return moved
        _sync(tmp)
        _replace_folder(tmp, folder)
        return moved
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _under(path: Path, tmp: Path, folder: Path | None) -> Path | None:
    """``path`` moved from ``tmp`` to ``folder`` (``None``: whether it lies in ``tmp``)."""
    try:
        rel = path.resolve().relative_to(tmp.resolve())
    except ValueError:
        return None if folder is None else path  # written elsewhere: the caller checks it
    return rel if folder is None else folder / rel


def _sync(tmp: Path) -> None:
    """fsync every file under ``tmp``, so the rename below publishes complete files."""
    for dirpath, _, names in os.walk(tmp):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an existing ``folder`` (a rerun's) is swapped out first
    and removed after, so a reader sees the old pictures or the new ones."""
    if folder.is_symlink() or folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
