"""The settings of ``zgbench gradcheck`` (:class:`Settings`), apart from
:mod:`zgbench.gradcheck`, which imports torch: the command's parser reads their defaults, and
every ``zgbench`` command builds every parser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zgbench.errors import UsageError


@dataclass
class Settings:
    """What ``zgbench gradcheck`` measures; the defaults are its command-line defaults."""

    evals: Sequence[int] = (100,)
    samples: int = 20
    points: int = 3
    radius: float = 0.5
    sigma: float = 0.25
    reference_samples: int = 20_000
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        if not self.evals or any(e < 1 for e in self.evals):
            raise UsageError(f"--evals must be positive integers, got {list(self.evals)}.")
        if self.samples < 2:
            raise UsageError(f"--samples must be at least 2 (a variance needs two), got {self.samples}.")
        if self.points < 1:
            raise UsageError(f"--points must be at least 1, got {self.points}.")
        if self.radius < 0 or self.sigma <= 0 or self.reference_samples < 1:
            raise UsageError("--radius must be >= 0, --sigma > 0 and --reference-samples >= 1.")
