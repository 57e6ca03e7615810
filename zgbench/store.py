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
``zgbench run`` redoes it. Unusable includes a record whose entries have the wrong types
(a gap ``"abc"``, a trajectory ``"x"``, metrics as a list): readers index them unchecked.

A record of a newer schema than this version writes is refused by every reader
(:class:`NewerRecord`, a UsageError: "written by a newer zgbench ... upgrade zgbench") and
never overwritten by :meth:`ResultStore.put`: its fields would be lost.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import zgbench
from zgbench.errors import UsageError
from zgbench.record import READABLE, SCHEMA, Record, migrate

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
        self.claims = self.root / "claims"  # one lock per run being run (see claim)

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

    def claim(self, run_id: str) -> Any | None:
        """Claim ``run_id`` for this process before running it: the held lock (release it
        once the record is stored), or ``None`` if another process holds the claim.

        Two ``zgbench run`` on one folder, or on a shared filesystem from several machines,
        split the work this way instead of both running everything. The lock is the
        operating system's (``flock``, through the ``filelock`` library), so the claim of a
        process that died is released with it and taken over by the next driver; where the
        filesystem has no such locks, ``filelock`` falls back to a marker file."""
        from filelock import FileLock, Timeout

        self.claims.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.claims / f"{run_id}.lock", timeout=0, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return lock

    def put(self, record: Record | dict[str, Any]) -> Path:
        """Write ``record`` (a :class:`Record` or its JSON object) atomically, replacing the
        run's previous record if any."""
        data = record.as_dict() if isinstance(record, Record) else record
        path = self.path(data["run_id"])
        _refuse_to_overwrite_newer(path)
        try:
            text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False)
        except ValueError:  # inf/NaN somewhere: JSON has none; stored as null (zgbench.record)
            text = json.dumps(_finite(data), indent=1, sort_keys=True, allow_nan=False)
        atomic_write_text(path, text)
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
        reads as ``None``, one of an older unknown schema reads as ``None`` and stays, and one of
        a newer schema raises :class:`NewerRecord` (a UsageError: upgrade zgbench)."""
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._set_aside(path, f"not valid JSON ({exc})")
        _refuse_newer(record, path)
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


def _finite(value: Any) -> Any:
    """``value`` (JSON-like) with every non-finite float replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class NewerRecord(UsageError):
    """A record of a schema newer than this zgbench writes: it is never read (its fields
    would be misread or dropped) nor overwritten (they would be lost)."""


def _refuse_newer(record: Any, path: Path) -> None:
    schema = record.get("schema") if isinstance(record, dict) else None
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
        raise NewerRecord(f"{path} was written by a newer zgbench (schema {schema}; this is "
                          f"zgbench {zgbench.__version__}, schema {SCHEMA}): upgrade zgbench "
                          "to read or add to this results folder.")


def _refuse_to_overwrite_newer(path: Path) -> None:
    """Raise :class:`NewerRecord` if ``path`` holds a record of a newer schema."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or unreadable: replacing it loses nothing readable
        return
    _refuse_newer(record, path)


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
    return _wrong_types(record)


#: Types of a record's optional top-level entries (None allowed where listed).
_OPTIONAL = {"seeds": dict, "error": (str, type(None)), "environment": dict, "code": dict,
             "started": str, "finished": str, "trajectory": list, "final": (dict, type(None)),
             "artifacts": list, "audit": dict}
#: Numbers of a trajectory entry (null where not finite).
_ENTRY_NUMBERS = ("evals", "grads", "steps", "seconds", "task_seconds", "optimizer_seconds",
                  "best_loss", "current_loss")


def _wrong_types(record: dict[str, Any]) -> str | None:
    """What has the wrong type in a record with the required keys (readers index these
    without checking), or ``None``. Entries absent from older records are not required."""
    for key, kind in _OPTIONAL.items():
        if key in record and not isinstance(record[key], kind):
            return f"its {key!r} is {_kind(record[key])}"
    if record.get("duration") is not None and not _number(record["duration"]):
        return f"its 'duration' is {_kind(record['duration'])}, not a number"
    identity = record["identity"]
    for key in ("repetition", "seed"):  # the repetition index (schema 2, schema 1)
        if key in identity and (not isinstance(identity[key], int) or
                                isinstance(identity[key], bool)):
            return f"its identity {key} is {_kind(identity[key])}, not a whole number"
    for part in ("task", "optimizer"):
        for key in ("name", "label", "canonical", "primary_metric"):
            if key in record[part] and not isinstance(record[part][key], str):
                return f"its {part} {key} is {_kind(record[part][key])}, not a string"
        for key in ("params", "metrics"):
            if key in record[part] and not isinstance(record[part][key], dict):
                return f"its {part} {key} is {_kind(record[part][key])}, not an object"
    directions = record["task"].get("metrics", {})
    if any(d not in ("min", "max") for d in directions.values()):
        return f"its task metrics {directions!r} are not 'min' or 'max'"
    if any(not isinstance(a, str) for a in record.get("artifacts", [])):
        return "an artifact path is not a string"
    entries = list(record.get("trajectory", []))
    entries += [record["final"]] if record.get("final") is not None else []
    return next((p for p in map(_entry_problem, entries) if p), None)


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with a trajectory entry (or ``final``), or ``None``."""
    if not isinstance(entry, dict):
        return f"a trajectory entry is {_kind(entry)}, not an object"
    for key in _ENTRY_NUMBERS:
        if entry.get(key) is not None and not _number(entry[key]):
            return f"a trajectory entry's {key} is {_kind(entry[key])}, not a number"
    metrics = entry.get("metrics", {})
    if not isinstance(metrics, dict):
        return f"a trajectory entry's metrics are {_kind(metrics)}, not an object"
    for name, value in metrics.items():
        if value is not None and not _number(value):
            return f"a trajectory entry's metric {name!r} is {_kind(value)}, not a number"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    """``value`` for a message: its JSON type and, if short, itself."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             type(None): "null", int: "a number", float: "a number"}
    text = repr(value)
    return names.get(type(value), type(value).__name__) + (f" ({text})" if len(text) <= 20 else "")
