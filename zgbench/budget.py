"""The budget a run may spend, and the signal that it is spent.

Budgets are counted by the harness, never by the optimizer: loss evaluations (one per parameter
vector), gradient evaluations (one per vector), optimizer steps (one per ``report``) and
wall-clock seconds spent outside ``evaluate``. ``None`` means "no limit on this counter".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, replace
from typing import Any

from zgbench.errors import UsageError


class BudgetExhausted(Exception):
    """Raised by the metered problem when a budget is spent; the harness ends the run normally."""


@dataclass(frozen=True)
class Budget:
    """Limits for one run. At least one of ``evals``, ``grads`` or ``steps`` must bound it."""

    evals: int | None = None
    grads: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None:
                _check_limit(name, value)

    def override(self, **limits: Any) -> Budget:
        """A copy with the given limits replaced; ``None`` values leave a limit as it is."""
        return replace(self, **{k: v for k, v in limits.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "budget") -> Budget:
        known = {"evals", "grads", "steps", "seconds"}
        extra = set(data) - known
        if extra:
            raise UsageError(
                f"unknown key(s) {sorted(extra)} in {where}; known: {sorted(known)}."
            )
        try:
            return cls(**data)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None

    def fraction(self, evals: int, grads: int, steps: int, seconds: float) -> float:
        """How much of the budget is spent: the largest used share over the bounded counters.
        (Called after every metered call: written out rather than looped over a list.)"""
        used = 0.0
        if self.evals:
            used = evals / self.evals
        if self.grads:
            used = max(used, grads / self.grads)
        if self.steps:
            used = max(used, steps / self.steps)
        if self.seconds:
            used = max(used, seconds / self.seconds)
        return used

    def is_bounded(self) -> bool:
        return any(v is not None for v in (self.evals, self.grads, self.steps, self.seconds))


def _check_limit(name: str, value: Any) -> None:
    """Raise a UsageError unless ``value`` is a valid limit (from a suite file or the command
    line it may be anything): a positive whole number of evals, grads or steps, positive
    finite seconds. Not converted, so a run's identity (which hashes the budget) is kept."""
    number = value if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        fix = "leave it out for no time limit" if name == "seconds" else f"e.g. {name} = 2000"
        raise UsageError(f"budget {name} must be positive (a number), got {value!r} ({fix}).")
    if name != "seconds" and number != int(number):
        raise UsageError(f"budget {name} must be a whole number, got {value!r}.")
