"""The metered problem: the only view of a task an optimizer gets.

It counts every loss evaluation (one per parameter vector), gradient evaluation and step,
enforces the :class:`~zgbench.budget.Budget` (a batch that would cross it is cut to what is
left, evaluated, and then :class:`~zgbench.budget.BudgetExhausted` is raised), tracks the best
loss seen (ignoring NaN), keeps the optimizer's reported recommendation, splits wall time into
time inside the task and time inside the optimizer, and takes checkpoints at log-spaced
fractions of the budget where the task's held-out ``evaluate`` runs uncharged.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zgbench.budget import Budget, BudgetExhausted
from zgbench.contracts import Task
from zgbench.errors import ContractError

#: Fractions of the budget at which checkpoints are taken (plus one at 0 and one at the end).
CHECKPOINTS = tuple(float(f) for f in np.geomspace(1e-3, 1.0, 31))


class Problem:
    """Metered access to one task instance for one run.

    Optimizers use :attr:`dim`, :attr:`device`, :meth:`initial`, :meth:`new_key`,
    :meth:`loss`, :meth:`grad` (if the task provides it), :meth:`call` (other capabilities)
    and :meth:`report`. The harness uses :meth:`start` and :meth:`finish`.
    """

    def __init__(
        self,
        task: Task,
        budget: Budget,
        seed: int = 0,
        eval_key: int = 0,
        checkpoints: tuple[float, ...] = CHECKPOINTS,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        if not budget.is_bounded():
            raise ValueError("a run needs a bounded budget (evals, grads, steps or seconds)")
        self._task = task
        self.budget = budget
        self.dim = int(task.dim)
        self.device = task.device
        self.dtype = task.dtype
        self.provides = frozenset(task.provides)
        self._keys = random.Random(seed)
        self._eval_key = eval_key
        self._marks = list(checkpoints)
        self._on_progress = on_progress
        self._last_progress = 0.0
        self._cuda = self.device.type == "cuda"
        self.evals = self.grads = self.steps = 0
        self.task_seconds = 0.0
        self._paused = 0.0  # time spent in uncharged evaluation
        self._t0: float | None = None
        self._best = torch.tensor(math.inf, device=self.device)
        self._best_theta: torch.Tensor | None = None
        self._reported: torch.Tensor | None = None
        self.trajectory: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- optimizer side
    def initial(self) -> torch.Tensor:
        """A fresh copy of the task's starting point θ₀ (shape ``[dim]``)."""
        return self._task.initial().detach().clone()

    def new_key(self) -> int:
        """A fresh key for :meth:`loss`; reuse one key for common random numbers."""
        return self._keys.getrandbits(63)

    def loss(self, thetas: torch.Tensor, key: int | None = None) -> torch.Tensor:
        """Loss of each row of ``thetas`` ``[B, dim]`` -> ``[B]``; counts ``B`` evaluations."""
        thetas = self._check(thetas)
        n = self._allowed(thetas.shape[0], self.budget.evals, self.evals)
        cut = n < thetas.shape[0]
        if cut:
            thetas = thetas[:n]
        key = self.new_key() if key is None else key
        with torch.no_grad():  # a black box: no autograd graph, whatever the task does
            values = self._timed(self._task.loss, thetas, key)
        if not isinstance(values, torch.Tensor) or values.shape != (n,):
            raise ContractError(
                f"task {self._task.name!r}.loss returned shape "
                f"{getattr(values, 'shape', type(values))} for {n} vectors; expected ({n},)")
        self.evals += n
        self._observe(thetas, values)
        self._after_call(cut=cut)
        return values

    def grad(self, thetas: torch.Tensor, key: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss[B], grad[B, dim])`` from the task's autodiff; counts ``B`` gradients."""
        self._require("grad")
        thetas = self._check(thetas)
        n = self._allowed(thetas.shape[0], self.budget.grads, self.grads)
        key = self.new_key() if key is None else key
        values, grads = self._timed(self._task.grad, thetas[:n], key)
        if grads.shape != (n, self.dim) or values.shape != (n,):
            raise ContractError(
                f"task {self._task.name!r}.grad returned shapes {tuple(values.shape)}, "
                f"{tuple(grads.shape)} for {n} vectors; expected ({n},), ({n}, {self.dim})")
        self.grads += n
        self._observe(thetas[:n], values)
        self._after_call(cut=n < thetas.shape[0])
        return values, grads

    def call(self, capability: str, *args: Any, evals: int = 0, grads: int = 0, **kwargs: Any) -> Any:
        """Call the task's capability method ``capability`` (e.g. ``"residual"``), timed as task
        time and charged ``evals`` loss and ``grads`` gradient evaluations. The charge is
        checked before the call: a call the budget cannot pay for raises BudgetExhausted."""
        self._require(capability)
        if (self.budget.evals is not None and self.evals + evals > self.budget.evals) or (
            self.budget.grads is not None and self.grads + grads > self.budget.grads):
            raise BudgetExhausted(f"{capability} call needs more than the budget left")
        self._check_time()
        out = self._timed(getattr(self._task, capability), *args, **kwargs)
        self.evals += evals
        self.grads += grads
        self._after_call(cut=False)
        return out

    def report(self, theta: torch.Tensor) -> None:
        """Tell the harness the current recommendation; counts one optimizer step."""
        theta = self._check(theta.reshape(1, -1))[0]
        self._reported = theta.detach().clone()
        self.steps += 1
        self._after_call(cut=False)
        if self.budget.steps is not None and self.steps >= self.budget.steps:
            raise BudgetExhausted("step budget spent")

    @property
    def seconds(self) -> float:
        """Charged wall time so far (excludes uncharged evaluation)."""
        if self._t0 is None:
            return 0.0
        return time.perf_counter() - self._t0 - self._paused

    @property
    def best_loss(self) -> float:
        return float(self._best)

    def recommendation(self) -> torch.Tensor:
        """The last reported θ, else the best evaluated θ, else θ₀."""
        if self._reported is not None:
            return self._reported
        if self._best_theta is not None:
            return self._best_theta
        return self.initial()

    # ------------------------------------------------------------------- harness side
    def start(self) -> None:
        """Start the clock and take the checkpoint at zero spend."""
        self._t0 = time.perf_counter()
        self._checkpoint()

    def finish(self) -> None:
        """Take the final checkpoint (if the last one is not already at the current spend)."""
        last = self.trajectory[-1] if self.trajectory else None
        if last is None or (last["evals"], last["grads"], last["steps"]) != (
                self.evals, self.grads, self.steps):
            self._checkpoint()
        self._progress(1.0, force=True)

    # ------------------------------------------------------------------------ helpers
    def _require(self, capability: str) -> None:
        if capability not in self.provides:
            raise ContractError(
                f"task {self._task.name!r} does not provide {capability!r} "
                f"(it provides {sorted(self.provides) or 'nothing beyond loss'})")

    def _check(self, thetas: torch.Tensor) -> torch.Tensor:
        if not isinstance(thetas, torch.Tensor) or thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise ContractError(
                f"expected parameter vectors of shape [B, {self.dim}], got "
                f"{tuple(getattr(thetas, 'shape', ())) or type(thetas).__name__}")
        if thetas.shape[0] == 0:
            raise ContractError("expected at least one parameter vector, got an empty batch")
        return thetas.detach().to(device=self.device, dtype=self.dtype)

    def _allowed(self, asked: int, limit: int | None, used: int) -> int:
        """How many of ``asked`` vectors the budget pays for; raise if none."""
        self._check_time()
        if limit is None:
            return asked
        left = limit - used
        if left <= 0:
            raise BudgetExhausted("evaluation budget spent")
        return min(asked, left)

    def _check_time(self) -> None:
        if self.budget.seconds is not None and self.seconds >= self.budget.seconds:
            raise BudgetExhausted("time budget spent")

    def _timed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._cuda:  # charge queued optimizer work to the optimizer, task work to the task
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self.task_seconds += time.perf_counter() - start
        return out

    def _observe(self, thetas: torch.Tensor, values: torch.Tensor) -> None:
        values = values.detach()
        if not self._cuda:  # on the CPU a scalar read is free: skip work when nothing improved
            low = float(values.min())
            if low != low:  # NaN propagates through min: ignore NaN candidates
                values = values.nan_to_num(nan=math.inf)
                low = float(values.min())
            if low < float(self._best):
                index = int(values.argmin())
                self._best = values[index].to(self._best.dtype)
                self._best_theta = thetas[index].clone()
            return
        # on CUDA, tensor ops only (no .item()): no host sync in the hot path
        value, index = values.nan_to_num(nan=math.inf).min(0)
        value = value.to(self._best.dtype)
        if self._best_theta is None:
            self._best_theta = thetas[index].clone()
        self._best_theta = torch.where(value < self._best, thetas[index], self._best_theta)
        self._best = torch.minimum(self._best, value)

    def _after_call(self, cut: bool) -> None:
        fraction = self.budget.fraction(self.evals, self.grads, self.steps, self.seconds)
        if self._marks and fraction >= self._marks[0]:
            while self._marks and fraction >= self._marks[0]:
                self._marks.pop(0)
            self._checkpoint()
        self._progress(fraction)
        if cut:
            raise BudgetExhausted("budget spent in the middle of a batch (batch was cut)")

    def _checkpoint(self) -> None:
        pause = time.perf_counter()
        theta = self.recommendation()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self._task.evaluate(theta).items()}
            current = float(self._task.loss(theta.reshape(1, -1), self._eval_key)[0])
        seconds = self.seconds
        self.trajectory.append({
            "evals": self.evals,
            "grads": self.grads,
            "steps": self.steps,
            "seconds": seconds,
            "task_seconds": self.task_seconds,
            "optimizer_seconds": max(seconds - self.task_seconds, 0.0),
            "best_loss": _finite_or_none(float(self._best)),
            "current_loss": _finite_or_none(current),
            "metrics": {k: _finite_or_none(v) for k, v in metrics.items()},
        })
        self._paused += time.perf_counter() - pause

    def _progress(self, fraction: float, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.perf_counter()
        if force or now - self._last_progress > 0.1:
            self._last_progress = now
            self._on_progress(min(fraction, 1.0))


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/NaN: store them as null."""
    return value if math.isfinite(value) else None
