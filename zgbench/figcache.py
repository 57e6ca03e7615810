"""Figures kept by a hash of what they show, so a leaderboard or report rebuilt from unchanged
records copies its PNGs instead of drawing them again: matplotlib takes about a second a
figure, and the quick suite's 28 figures were three quarters of ``zgbench report``'s time
(cProfile, 2026-12-05). ``zgbench run`` writes ``RESULTS/leaderboard`` and ``zgbench
report`` then draws the same figures into its own folder: the second draws none.

:func:`draw` keys a figure by the drawing function's name, the source of its module (a
change in how figures are drawn draws them anew), matplotlib's version and every argument
but the output path (numbers by their bytes, tables column by column); an argument it cannot
hash faithfully makes it draw without the cache, never guess. Files live in
``zgbench.cache.cache_dir("figures")`` (``$ZGBENCH_CACHE/figures``); past :data:`MAX_FILES`
the least recently used go. A cache that cannot be written (read-only home) only costs the
time it would have saved.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zgbench.store import atomic_write

#: Figures kept; beyond this many the least recently used are removed (a quick-suite
#: leaderboard draws 28, at 30-80 kB each).
MAX_FILES = 2000


class Unhashable(TypeError):
    """An argument whose content the key cannot capture: draw without the cache."""


def draw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call ``fn(*args, **kwargs)``, a function that draws a figure into its ``path``
    argument, unless a figure drawn from equal arguments is cached: then copy that one to
    ``path``. Either way ``path`` holds the figure afterwards, written atomically."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    path = Path(bound.arguments["path"])
    try:
        stored = _folder() / f"{_key(fn, bound.arguments)}.png"
    except (Unhashable, OSError):
        fn(*args, **kwargs)
        return
    if stored.is_file():
        data = stored.read_bytes()
        atomic_write(path, lambda f: f.write(data), binary=True)
        _touch(stored)
        return
    fn(*args, **kwargs)
    try:
        data = path.read_bytes()
        atomic_write(stored, lambda f: f.write(data), binary=True)
        _prune(stored.parent)
    except OSError:
        pass  # the figure is in place; only the next rebuild draws it again


def _folder() -> Path:
    from zgbench.cache import cache_dir

    return cache_dir("figures")


def _key(fn: Callable[..., Any], arguments: dict[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{fn.__module__}.{fn.__qualname__}".encode())
    digest.update(_module_source(fn.__module__) + _module_source("zgbench.outputs"))
    import matplotlib

    digest.update(matplotlib.__version__.encode())
    for name, value in sorted(arguments.items()):
        if name != "path":
            digest.update(name.encode())
            _feed(digest, value)
    return digest.hexdigest()


@functools.cache
def _module_source(module: str) -> bytes:
    """The bytes of the drawing function's module (its source decides the picture)."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if not file:
        raise Unhashable(f"no source for {module}")
    return hashlib.blake2b(Path(file).read_bytes(), digest_size=16).digest()


def _feed(digest: Any, value: Any) -> None:
    """Hash ``value`` by content, with its type, so 1 and 1.0 and "1" differ."""
    digest.update(type(value).__name__.encode() + b"\0")
    if value is None or isinstance(value, (bool, int, float, str, Path, np.generic)):
        digest.update(repr(value).encode() + b"\0")
    elif isinstance(value, dict):
        digest.update(str(len(value)).encode())
        for k in sorted(value, key=repr):
            _feed(digest, k)
            _feed(digest, value[k])
    elif isinstance(value, (list, tuple)):
        digest.update(str(len(value)).encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        _array(digest, value)
    elif isinstance(value, pd.DataFrame):
        _feed(digest, [str(c) for c in value.columns])
        _feed(digest, list(value.index) if not isinstance(value.index, pd.RangeIndex)
              else ("range", value.index.start, value.index.stop, value.index.step))
        for column in value.columns:
            _array(digest, value[column].to_numpy())
    elif isinstance(value, pd.Series):
        _feed(digest, value.to_frame())
    else:
        raise Unhashable(f"cannot hash a {type(value).__name__} by content")


def _array(digest: Any, array: np.ndarray) -> None:
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype == object:
        _feed(digest, array.tolist())
    else:
        digest.update(np.ascontiguousarray(array).tobytes())


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(folder: Path) -> None:
    """Remove the least recently used figures beyond :data:`MAX_FILES`."""
    files = list(folder.glob("*.png"))
    if len(files) <= MAX_FILES:
        return
    files.sort(key=lambda p: p.stat().st_mtime)
    for old in files[:len(files) - MAX_FILES]:
        old.unlink(missing_ok=True)
