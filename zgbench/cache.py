"""Where tasks cache expensive, deterministic data (reference renders, reference simulations).

``$ZGBENCH_CACHE`` if set, else ``~/.cache/zgbench``. A task stores an artifact under a key
that hashes every setting it depends on (:func:`key`), so a changed setting never reads a
stale file; writes are atomic (:func:`zgbench.store.atomic_write`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def root() -> Path:
    """The cache folder, not created (a reader that finds nothing there computes anew)."""
    return Path(os.environ.get("ZGBENCH_CACHE") or Path.home() / ".cache" / "zgbench")


def cache_dir(*parts: str) -> Path:
    """The cache folder (created), optionally a named sub-folder such as ``"radiosity"``."""
    path = root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-serialisable settings, for cache file names."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
