"""Safe paths for files a record names: a record is data, and data may be hostile.

A record lists the pictures its task wrote as paths relative to the results folder
(``artifacts``), and commands copy or read them (``zgbench report``, ``zgbench show``). A
results folder may come from anyone (a colleague's tarball, a CI artifact), so such a path
is joined to its folder only if it is a plain relative path (no ``..``, not absolute) and no
part of it below the folder is a symbolic link: otherwise ``L/../../x`` with ``L`` a link
deep inside the folder, or a link itself, would reach, or write to, any file on the disk.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePath(ValueError):
    """A path from a record that would leave its folder or pass through a symbolic link."""


def inside(root: str | Path, rel: object) -> Path:
    """``root / rel``, checked: ``rel`` is a relative path without ``..`` whose parts below
    ``root`` (those that exist) are not symbolic links; the folder ``root`` itself may be one.

    Raises :class:`UnsafePath` naming the problem otherwise.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UnsafePath(f"{rel!r} is not a path")
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise UnsafePath(f"{rel!r} is an absolute path")
    parts = windows.parts  # splits at both / and \
    if ".." in parts:
        raise UnsafePath(f"{rel!r} contains '..'")
    base = Path(root).resolve()
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise UnsafePath(f"{rel!r} passes through the symbolic link {path}")
    if base not in path.resolve().parents:  # belt and braces: nothing above is a link now
        raise UnsafePath(f"{rel!r} leaves {base}")
    return path
