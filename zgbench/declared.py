"""What a suite declares for the boards of its results, kept beside the records.

The boards computed from a results folder need two things that only the suite knows:

- the **baseline** of normalised scores: the optimizer (by name) whose median final value is
  score 1 on each task. The core names no optimizer; the quick suite declares
  ``baseline = "random-search"``. Without one, the boards rank but show no normalised score.
- **caveats**: for an optimizer whose budget in this suite is far below the setting of its
  paper's claim, the sentence to read next to its number (and the claim to read instead).

``zgbench run`` writes them to ``OUT/suite.json`` (atomically, on each run of a suite); the
leaderboard, report and compare read them back, and ``--baseline NAME`` overrides the
baseline. A folder filled by several suites keeps the declarations of the last one run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zgbench.errors import UsageError
from zgbench.store import atomic_write_text

#: The declarations' file name inside a results folder.
FILE = "suite.json"


@dataclass(frozen=True)
class Declarations:
    """A suite's declarations for its boards (see the module docstring)."""

    suite: str | None = None
    baseline: str | None = None
    caveats: Mapping[str, str] = field(default_factory=dict)

    def with_baseline(self, baseline: str | None) -> Declarations:
        """A copy with ``baseline`` replaced, unless it is ``None`` (then unchanged)."""
        return self if baseline is None else replace(self, baseline=baseline)

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "baseline": self.baseline, "caveats": dict(self.caveats)}


def save(results: str | Path, declarations: Declarations) -> None:
    """Write ``declarations`` to ``results/suite.json`` (never half-written)."""
    atomic_write_text(Path(results) / FILE, json.dumps(declarations.as_dict(), indent=1) + "\n")


def read(results: str | Path) -> Declarations:
    """The declarations stored in ``results``, or none (no baseline, no caveats)."""
    path = Path(results) / FILE
    if not path.is_file():
        return Declarations()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        caveats = {str(k): str(v) for k, v in (data.get("caveats") or {}).items()}
        return Declarations(data.get("suite"), data.get("baseline"), caveats)
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a suite declarations file ({exc}): delete it and "
                         "run the suite again, or give --baseline.") from None
