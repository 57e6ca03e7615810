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
        self._best = torch.tensor(math.inf, device=self.device)  # CUDA: stays on the device
        self._best_cpu = math.inf  # CPU: a float (a tensor read per batch would cost µs)
        self._best_theta: torch.Tensor | None = None
        self._reported: torch.Tensor | np.ndarray | None = None
        self._np_dtype = _numpy_dtype(self.dtype)
        self.trajectory: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- optimizer side
    def initial(self) -> torch.Tensor:
        """A fresh copy of the task's starting point θ₀ (shape ``[dim]``)."""
        return self._task.initial().detach().clone()

    def new_key(self) -> int:
        """A fresh key for :meth:`loss`; reuse one key for common random numbers."""
        return self._keys.getrandbits(63)

    def loss(self, thetas: torch.Tensor | np.ndarray, key: int | None = None) -> torch.Tensor:
        """Loss of each row of ``thetas`` ``[B, dim]`` -> ``[B]``; counts ``B`` evaluations.

        ``thetas`` may be a numpy array (what numpy-based libraries such as pycma ask): it is
        converted once, with no torch call before the conversion."""
        thetas, owned = self._batch(thetas)
        n = self._allowed(thetas.shape[0], self.budget.evals, self.evals)
        cut = n < thetas.shape[0]
        if cut:
            thetas = thetas[:n]
        key = self.new_key() if key is None else key
        if torch.is_grad_enabled():  # a black box: no autograd graph, whatever the task does
            with torch.no_grad():
                values = self._timed(self._task.loss, thetas, key)
        else:  # the optimizer already runs without autograd: skip the context's cost
            values = self._timed(self._task.loss, thetas, key)
        if not isinstance(values, torch.Tensor) or values.shape != (n,):
            raise ContractError(
                f"task {self._task.name!r}.loss returned shape "
                f"{getattr(values, 'shape', type(values))} for {n} vectors; expected ({n},)")
        self.evals += n
        self._observe(thetas, values, owned)
        self._after_call(cut=cut)
        return values

    def grad(self, thetas: torch.Tensor, key: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss[B], grad[B, dim])`` from the task's autodiff; counts ``B`` gradients."""
        self._require("grad")
        thetas, _ = self._batch(thetas)
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

    def report(self, theta: torch.Tensor | np.ndarray) -> None:
        """Tell the harness the current recommendation; counts one optimizer step.

        θ is copied (the optimizer may change it in place later). A numpy θ stays numpy until
        a checkpoint needs it: reporting every generation of a numpy library costs no torch
        call."""
        if isinstance(theta, np.ndarray):
            if theta.size != self.dim:
                raise self._report_error(theta)
            # a copy, in the task's dtype where numpy has it (else converted by recommendation)
            self._reported = np.array(theta, dtype=self._np_dtype).reshape(self.dim)
        elif not isinstance(theta, torch.Tensor) or theta.numel() != self.dim:
            raise self._report_error(theta)
        else:
            if theta.requires_grad:
                theta = theta.detach()
            if theta.dim() != 1:
                theta = theta.reshape(self.dim)
            self._reported = theta.to(device=self.device, dtype=self.dtype, copy=True)
        self.steps += 1
        self._after_call(cut=False)
        if self.budget.steps is not None and self.steps >= self.budget.steps:
            raise BudgetExhausted("step budget spent")

    def _report_error(self, theta: Any) -> ContractError:
        return ContractError(
            f"report expects one parameter vector of {self.dim} values, got "
            f"{tuple(getattr(theta, 'shape', ())) or type(theta).__name__}")

    @property
    def seconds(self) -> float:
        """Charged wall time so far (excludes uncharged evaluation)."""
        if self._t0 is None:
            return 0.0
        return time.perf_counter() - self._t0 - self._paused

    @property
    def best_loss(self) -> float:
        return float(self._best) if self._cuda else self._best_cpu

    def recommendation(self) -> torch.Tensor:
        """The last reported θ, else the best evaluated θ, else θ₀."""
        if isinstance(self._reported, np.ndarray):  # reported by a numpy library
            self._reported = torch.from_numpy(self._reported).to(self.device, self.dtype)
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

    def _batch(self, thetas: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
        """``thetas`` checked and on the task's device and dtype, and whether the result is
        the problem's own copy (then a row of it may be kept without cloning)."""
        if isinstance(thetas, np.ndarray):
            self._check_shape(thetas)
            batch = torch.from_numpy(np.array(thetas, dtype=self._np_dtype))  # always a copy
            if self.device.type == "cpu" and batch.dtype == self.dtype:
                return batch, True
            return batch.to(self.device, self.dtype), True
        if not isinstance(thetas, torch.Tensor):
            raise self._shape_error(thetas)
        self._check_shape(thetas)
        if thetas.requires_grad:
            thetas = thetas.detach()
        # `.to` is a dispatch even when it has nothing to do: skip it on the common path
        if thetas.dtype != self.dtype or thetas.device != self.device:
            return thetas.to(device=self.device, dtype=self.dtype), True
        return thetas, False

    def _check_shape(self, thetas: torch.Tensor | np.ndarray) -> None:
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise self._shape_error(thetas)
        if thetas.shape[0] == 0:
            raise ContractError("expected at least one parameter vector, got an empty batch")

    def _shape_error(self, thetas: Any) -> ContractError:
        return ContractError(
            f"expected parameter vectors of shape [B, {self.dim}], got "
            f"{tuple(getattr(thetas, 'shape', ())) or type(thetas).__name__}")

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

    def _observe(self, thetas: torch.Tensor, values: torch.Tensor, owned: bool = False) -> None:
        """Track the best loss and its θ. ``owned``: ``thetas`` is the problem's own copy, so
        a row of it may be kept without cloning."""
        if values.requires_grad:
            values = values.detach()
        if not self._cuda:  # on the CPU reading values is free: skip work when nothing improved
            # One torch call, then Python floats: between a numpy library's ask and tell every
            # torch call costs µs, more than min() over a batch's few floats here.
            floats = values.tolist()
            low = min(floats)  # skips NaN (comparisons with NaN are false) unless it is first
            if low != low:
                low = min((v for v in floats if v == v), default=math.inf)
            if low < self._best_cpu:
                row = thetas[floats.index(low)]
                self._best_cpu = low
                self._best_theta = row if owned else row.clone()
            return
        # on CUDA, tensor ops only (no .item()): no host sync in the hot path
        value, index = values.nan_to_num(nan=math.inf).min(0)
        value = value.to(self._best.dtype)
        if self._best_theta is None:
            self._best_theta = thetas[index].clone()
        self._best_theta = torch.where(value < self._best, thetas[index], self._best_theta)
        self._best = torch.minimum(self._best, value)

    def _after_call(self, cut: bool) -> None:
        seconds = self.seconds if self.budget.seconds is not None else 0.0
        fraction = self.budget.fraction(self.evals, self.grads, self.steps, seconds)
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
            "best_loss": _finite_or_none(self.best_loss),
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


def _numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    """numpy's twin of a torch dtype, or None where numpy has none (bfloat16): numpy batches
    of such a task keep their own dtype until torch converts them."""
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        return None


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/NaN: store them as null."""
    return value if math.isfinite(value) else None
