"""The result store: one JSON file per run under ``RESULTS/runs/``, written atomically.

The file name is the run id (a hash of the run's identity), so a second identical
``zgbench run`` finds finished runs and skips them. Files are written to a temporary name in
the same folder and renamed into place, so a reader never sees half a file, even after a
crash or Ctrl-C.

Records of schema 1 are read as schema 2 (:func:`zgbench.record.migrate`): every reader sees
the current schema, and their run ids are unchanged, so old results folders resume.

A record that cannot be read (a truncated or hand-edited file, a disk that filled up under
another tool) is never fatal: every reader goes through :meth:`ResultStore.get` or iteration,
which warn with the file's path, move it to ``RESULTS/quarantine/`` (kept for inspection,
out of every reader's way) and go on as if the run had not happened, so the next
``zgbench run`` redoes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from zgbench.errors import UsageError
from zgbench.record import READABLE, Record, migrate

#: What a run id (and so a record's file name) may be: it names folders, e.g. artifacts/ID/.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Keys a record of a readable schema must have to be used at all (see zgbench.record).
REQUIRED = {"run_id": str, "status": str, "identity": dict, "task": dict, "optimizer": dict}


class RecordWarning(UserWarning):
    """A record (or a file it names) was unusable and was set aside; the message says which."""


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
        self.quarantine = self.root / "quarantine"

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The record of ``run_id`` (its JSON object, current schema), or ``None`` if there
        is none or it was broken."""
        path = self.path(run_id)
        if not path.exists():
            return None
        return self._read(path)

    def finished(self, run_id: str) -> bool:
        """True if a run with this id completed (ok or n/a); failed runs are retried."""
        record = self.get(run_id)
        return record is not None and record.get("status") in ("ok", "n/a")

    def check_writable(self, need: int = 16 * 2**20) -> None:
        """Raise a UsageError unless records can be written here (and ``need`` bytes are
        free): checked before a run starts, not found out after its first record."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", dir=self.runs)
            os.close(fd)
            os.unlink(probe)
            free = shutil.disk_usage(self.runs).free
        except OSError as exc:
            raise UsageError(f"cannot write records to {self.runs}: {exc.strerror or exc}. "
                             "Choose another --out, or make that folder writable.") from None
        if free < need:
            raise UsageError(f"the results folder {self.root} is on a full disk "
                             f"({free / 2**20:.1f} MiB free): free some space or choose "
                             "another --out.")

    def put(self, record: Record | dict[str, Any]) -> Path:
        """Write ``record`` (a :class:`Record` or its JSON object) atomically, replacing the
        run's previous record if any."""
        data = record.as_dict() if isinstance(record, Record) else record
        path = self.path(data["run_id"])
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False))
        return path

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every usable record's JSON object, in the current schema."""
        for path in sorted(self.runs.glob("*.json")):
            record = self._read(path)
            if record is not None:
                yield record

    def records(self) -> Iterator[Record]:
        """Every usable record, typed."""
        return (Record.from_dict(data) for data in self)

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The record in ``path`` in the current schema; a broken one is quarantined and
        reads as ``None``, one of an unknown schema reads as ``None`` and stays."""
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._set_aside(path, f"not valid JSON ({exc})")
        problem = _problem(record, path)
        if problem:
            return self._set_aside(path, problem)
        return migrate(record) if record.get("schema") in READABLE else None

    def _set_aside(self, path: Path, problem: str) -> None:
        """Move a broken record to the quarantine folder and warn with both paths."""
        target = self.quarantine / path.name
        try:
            if self.quarantine.is_symlink():  # moving there would move the file out of RESULTS
                raise OSError(f"{self.quarantine} is a symbolic link, and records are moved "
                              "only inside their results folder: remove the link")
            self.quarantine.mkdir(parents=True, exist_ok=True)
            if target.exists():  # broken twice: keep both
                target = self.quarantine / f"{path.stem}.{os.getpid()}.{time.time_ns()}.json"
            os.replace(path, target)
        except OSError as exc:
            where = f"left in place (cannot move it: {exc}); ignored"
        else:
            where = f"moved to {target}"
        warnings.warn(f"broken record {path}: {problem}; {where}. The run counts as not done: "
                      "the next zgbench run redoes it.", RecordWarning, stacklevel=3)
        return None


def _problem(record: Any, path: Path) -> str | None:
    """Why a parsed record cannot be used, or ``None``. Records of a schema this version cannot
    read are left alone (readers skip them); a readable one needs its keys and its own file
    name."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if record.get("schema") not in READABLE:
        return None
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            return f"no {key!r} ({kind.__name__}) entry"
    if record["run_id"] != path.stem or not _RUN_ID.fullmatch(path.stem):
        return f"its run_id {record['run_id']!r} is not its file name"
    return None
