"""Losses an optimizer can rank: NaN and +inf (a failed simulation or render) made finite.

A task's loss may be NaN or +inf where its pipeline fails. Rank-based searchers need a
finite number there, and the libraries disagree on which (pycma sets NaN to the batch median,
ranking a failure as average; Nevergrad clips it to 5e20, far off the loss's scale for its
model-based optimizers). :class:`WorstForNaN` ranks every failure last, just beyond the worst
finite loss seen so far. Exported at the top level (``from zgbench import WorstForNaN``) for
plugin authors wrapping such a library.
"""

from __future__ import annotations

import math
from typing import overload

import torch


class WorstForNaN:
    """Replace NaN and +inf losses by a finite value worse than every finite loss seen so far.

    Rank-based searchers then rank a failed candidate last, which is the usual reading of a
    failed simulation or render. Keeps state across calls (the worst finite loss so far), so
    make one per run. Works on a list of floats, what pycma and Nevergrad take, so that the
    batch crosses from torch in one ``tolist()``; a tensor gives a tensor (same dtype and
    device). -inf is left as it is (a loss that low is a task bug, not a failure to hide).

        fix = WorstForNaN()
        values = fix(problem.loss(candidates).tolist())
    """

    def __init__(self) -> None:
        self.worst = -math.inf

    @overload
    def __call__(self, values: list[float]) -> list[float]: ...

    @overload
    def __call__(self, values: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, values):
        if isinstance(values, torch.Tensor):
            fixed = self(values.detach().tolist())
            return torch.tensor(fixed, dtype=values.dtype, device=values.device)
        if all(map(math.isfinite, values)):  # the common path: a few µs for a batch
            self.worst = max(self.worst, max(values, default=-math.inf))
            return values
        bad = [v != v or v == math.inf for v in values]
        good = [v for v, b in zip(values, bad) if not b]
        if good:
            self.worst = max(self.worst, max(good))
        base = self.worst if math.isfinite(self.worst) else 0.0
        return [base + 1.0 + abs(base) if b else v for v, b in zip(values, bad)]
