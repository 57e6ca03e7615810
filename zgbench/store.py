"""The result store: one JSON file per run under ``RESULTS/runs/``, written atomically.

The file name is the run id (a hash of the run's identity), so a second identical
``zgbench run`` finds finished runs and skips them. Files are written to a temporary name in
the same folder and renamed into place, so a reader never sees half a file, even after a
crash or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from zgbench.record import SCHEMA


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


class ResultStore:
    """Records of a results folder, by run id."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def get(self, run_id: str) -> dict[str, Any] | None:
        path = self.path(run_id)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def finished(self, run_id: str) -> bool:
        """True if a run with this id completed (ok or n/a); failed runs are retried."""
        record = self.get(run_id)
        return record is not None and record.get("status") in ("ok", "n/a")

    def put(self, record: dict[str, Any]) -> Path:
        path = self.path(record["run_id"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, allow_nan=False))
        return path

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.runs.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("schema") == SCHEMA:
                yield record
