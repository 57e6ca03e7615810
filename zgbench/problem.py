"""The metered problem: the only view of a task an optimizer gets.

It counts every loss evaluation (one per parameter vector), gradient evaluation and step,
enforces the :class:`~zgbench.budget.Budget` (a batch that would cross it is cut to what is
left, evaluated, and then :class:`~zgbench.budget.BudgetExhausted` is raised), tracks the best
loss seen (ignoring NaN), keeps the optimizer's reported recommendation, splits wall time into
time inside the task and time inside the optimizer, and takes checkpoints at log-spaced
fractions of the budget where the task's held-out ``evaluate`` runs uncharged.

The counting that makes the record lives in :mod:`zgbench.meter` (the ledger at the task
boundary); this module is the fast, optimizer-facing front.
"""

from __future__ import annotations

import functools
import operator
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zgbench.budget import Budget, BudgetExhausted
from zgbench.plain import plain_array, plain_key, plain_tensor, plain_value
from zgbench.task import Cost, Task
from zgbench.errors import ContractError
from zgbench.meter import NO_GRADIENTS, Ledger, gradient_limit
from zgbench.params import Step

#: Fractions of the budget at which checkpoints are taken (plus one at 0 and one at the end).
CHECKPOINTS = tuple(float(f) for f in np.geomspace(1e-3, 1.0, 31))


class Problem:
    """Metered access to one task instance for one run.

    Optimizers use :attr:`dim`, :attr:`device`, :meth:`initial`, :meth:`new_key`,
    :meth:`loss`, :meth:`grad` (if the task provides it), :meth:`call` (other capabilities),
    :meth:`report` and :meth:`remaining`. The harness uses :meth:`start` and :meth:`finish`.

    Every attribute an optimizer reads is read-only, and the task itself is not one of them:
    counters, clock, best loss and trajectory are kept by a :class:`~zgbench.meter.Ledger`
    that the harness holds and that meters the task instance itself (see
    :mod:`zgbench.meter`), so a write to a private attribute here changes no record.
    """

    def __init__(
        self,
        task: Task,
        budget: Budget,
        seed: int = 0,
        eval_key: int = 0,
        checkpoints: tuple[float, ...] = CHECKPOINTS,
        on_progress: Callable[[float], None] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        if not budget.is_bounded():
            raise ValueError("a run needs a bounded budget (evals, grads, steps or seconds)")
        ledger = ledger or Ledger(task, budget, eval_key)
        # bound methods only: no attribute of the problem is the ledger or the task
        self._ledger_loss, self._ledger_grad = ledger.loss, ledger.grad
        self._ledger_call, self._ledger_report = ledger.call, ledger.report
        self._ledger_bill = ledger.bill
        self._costs = dict(ledger.costs)
        # the packages whose objects (a trace) may be passed back to a capability
        self._owners = frozenset({type(task).__module__.split(".")[0], "zgbench"})
        self._ledger_checkpoint, self._ledger_best = ledger.checkpoint, ledger.best_loss
        self._ledger_recommendation = ledger.recommendation
        self._ledger_report_late = ledger.report_late
        self._ledger_initial, self._ledger_start = ledger.initial, ledger.start
        self._ledger_final = ledger.final
        self._ledger_trajectory = ledger._entries
        self._ledger_task_seconds = functools.partial(getattr, ledger, "task_seconds")
        self._budget = budget
        self._grad_limit = gradient_limit(budget)  # 0 on an evaluations-only budget
        self._dim = int(task.dim)
        self._device = task.device
        self._dtype = task.dtype
        self._provides = frozenset(task.provides)
        self._name = task.name
        self._keys = random.Random(seed)
        self._marks = list(checkpoints)
        self._on_progress = on_progress
        self._last_progress = 0.0
        self._cuda = self._device.type == "cuda"
        self._evals = self._grads = self._steps = 0
        self._paused = 0.0  # time spent in uncharged evaluation
        self._t0: float | None = None
        self._np_dtype = _numpy_dtype(self._dtype)
        self._scale, self._uniform_scale = _task_scale(task)
        ledger.install(self)

    # ------------------------------------------------------------ read-only views
    @property
    def budget(self) -> Budget:
        """The run's limits (a frozen dataclass)."""
        return self._budget

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def provides(self) -> frozenset[str]:
        return self._provides

    @property
    def costs(self) -> dict[str, Cost]:
        """What each capability costs (:attr:`zgbench.task.Task.costs` with its defaults),
        as a copy: what :meth:`call` charges, for an optimizer's planning."""
        return dict(self._costs)

    @property
    def scale(self) -> torch.Tensor:
        """The task's per-coordinate scale ``[dim]`` (``Task.scale``), as a copy: the length
        of a useful exploratory step in each coordinate (1 on COCO's [-5, 5] box)."""
        return self._scale.clone()

    def step(self, value: Step | float) -> torch.Tensor:
        """The absolute per-coordinate step ``[dim]`` of a step size: a relative
        :class:`~zgbench.params.Step` times :attr:`scale`, an absolute one (or a plain float,
        which optimizers that predate scales pass) as it is on every coordinate."""
        factor, shape = self.step_parts(value)
        if shape is None:
            return torch.full((self._dim,), factor, device=self._device, dtype=self._dtype)
        return factor * shape

    def step_parts(self, value: Step | float) -> tuple[float, torch.Tensor | None]:
        """:meth:`step` as ``(factor, shape)`` with ``step == factor * shape``, and ``shape``
        ``None`` where the step is the same on every coordinate. ``factor`` is a Python
        float computed exactly (``0.3 x 1.0`` is ``0.3``), so an optimizer that takes a
        scalar (a torch learning rate, pycma's σ₀) keeps its old numbers on a uniform scale
        and uses the shape only where the scale varies (pycma's ``CMA_stds``)."""
        if isinstance(value, bool) or not isinstance(value, (Step, int, float)):
            raise ContractError(f"step({value!r}): give a Step (a relative Param's value) or "
                                "a float (an absolute step)")
        if not isinstance(value, Step) or value.absolute:
            return float(getattr(value, "value", value)), None
        if self._uniform_scale is not None:
            return value.value * self._uniform_scale, None
        return value.value, self._scale.clone()

    @property
    def evals(self) -> int:
        """Loss evaluations charged so far (one per parameter vector)."""
        return self._evals

    @property
    def grads(self) -> int:
        """Gradient evaluations charged so far."""
        return self._grads

    @property
    def steps(self) -> int:
        """Optimizer steps (reports) so far."""
        return self._steps

    @property
    def task_seconds(self) -> float:
        """Wall time spent inside task calls so far."""
        return self._ledger_task_seconds()

    @property
    def trajectory(self) -> tuple[dict[str, Any], ...]:
        """The checkpoints so far, as a copy: changing it changes no record."""
        return tuple(self._ledger_trajectory())

    def remaining(self, counter: str | None = None) -> dict[str, float | int | None] | float | int | None:
        """What is left of each counter (``None`` where the budget does not bound it), so
        optimizers need not redo the budget arithmetic: a dict of ``evals``, ``grads``,
        ``steps`` and ``seconds``, or with ``counter`` that one value."""
        b = self._budget
        evals = None if b.evals is None else max(b.evals - self._evals, 0)
        if counter == "evals":  # the common question, asked once per generation: no dict
            return evals
        left = {
            "evals": evals,
            "grads": (None if self._grad_limit is None else
                      max(self._grad_limit - self._grads, 0)),
            "steps": None if b.steps is None else max(b.steps - self._steps, 0),
            "seconds": None if b.seconds is None else max(b.seconds - self.seconds, 0.0),
        }
        if counter is None:
            return left
        if counter not in left:
            raise ContractError(f"remaining({counter!r}): the counters are {sorted(left)}")
        return left[counter]

    def affordable_steps(self, evals_per_step: int = 0, grads_per_step: int = 0) -> int | None:
        """How many more steps (reports) what is left pays for, when each step costs
        ``evals_per_step`` loss and ``grads_per_step`` gradient evaluations: the horizon a
        schedule plans by. ``None`` where no counter bounds it (a time-only budget)."""
        left = self.remaining()
        limits = [left["steps"]] if left["steps"] is not None else []
        if evals_per_step > 0 and left["evals"] is not None:
            limits.append(left["evals"] // evals_per_step)
        if grads_per_step > 0 and left["grads"] is not None:
            limits.append(left["grads"] // grads_per_step)
        return min(limits) if limits else None

    # ----------------------------------------------------------------- optimizer side
    def initial(self) -> torch.Tensor:
        """A fresh copy of the task's starting point θ₀ (shape ``[dim]``)."""
        return self._ledger_initial()

    def new_key(self) -> int:
        """A fresh key for :meth:`loss`; reuse one key for common random numbers."""
        return self._keys.getrandbits(63)

    def loss(self, thetas: torch.Tensor | np.ndarray, key: int | None = None, *,
             whole: bool = False) -> torch.Tensor:
        """Loss of each row of ``thetas`` ``[B, dim]`` -> ``[B]``; counts ``B`` evaluations.

        ``thetas`` may be a numpy array (what numpy-based libraries such as pycma ask): it is
        converted once, with no torch call before the conversion. Either way the task gets
        the problem's own plain copy (:mod:`zgbench.plain`). A batch larger than the
        evaluations left is cut, evaluated, and BudgetExhausted raised; with ``whole=True``
        (all or nothing) it raises BudgetExhausted before anything is evaluated or charged,
        for an optimizer that cannot use part of a generation (vectorised differential
        evolution)."""
        thetas = self._batch(thetas)
        n = self._allowed(thetas.shape[0], self._budget.evals, self._evals, "evaluation")
        if whole and n < thetas.shape[0]:
            raise self._not_whole(thetas.shape[0], n, "evaluation")
        cut = n < thetas.shape[0]
        if cut:
            thetas = thetas[:n]
        key = self.new_key() if key is None else plain_key(key)
        if torch.is_grad_enabled():  # a black box: no autograd graph, whatever the task does
            with torch.no_grad():
                values = self._ledger_loss(thetas, key)
        else:  # the optimizer already runs without autograd: skip the context's cost
            values = self._ledger_loss(thetas, key)
        self._evals += n
        self._after_call(cut=cut)
        return values

    def grad(self, thetas: torch.Tensor, key: int | None = None, *,
             whole: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss[B], grad[B, dim])`` from the task's autodiff; counts ``B`` gradients
        (``whole``: all or nothing, as for :meth:`loss`)."""
        self._require("grad")
        thetas = self._batch(thetas)
        n = self._allowed(thetas.shape[0], self._grad_limit, self._grads, "gradient")
        if whole and n < thetas.shape[0]:
            raise self._not_whole(thetas.shape[0], n, "gradient")
        key = self.new_key() if key is None else plain_key(key)
        values, grads = self._ledger_grad(thetas[:n], key)
        self._grads += n
        self._after_call(cut=n < thetas.shape[0])
        return values, grads

    def call(self, capability: str, *args: Any, evals: int = 0, grads: int = 0, **kwargs: Any) -> Any:
        """Call the task's capability method ``capability`` (e.g. ``"residual"``), timed as task
        time and charged what the task declares it costs (:attr:`costs`, per parameter
        vector passed or per call). ``evals`` and ``grads`` can only raise the charge (it is
        the larger of the task's bill and them, per counter): an optimizer that names the
        honest charge keeps its numbers, one that names less is charged the bill. The
        charge is checked before the call: a call the budget cannot pay for raises
        BudgetExhausted. The arguments reach the task as plain copies
        (:func:`zgbench.plain.plain_value`; a tensor that requires grad stays on the
        caller's autograd graph)."""
        self._require(capability)
        evals, grads = _charge(capability, "evals", evals), _charge(capability, "grads", grads)
        args = plain_value(args, self._owners)
        kwargs = plain_value(kwargs, self._owners)
        bill_evals, bill_grads = self._ledger_bill(capability, args, kwargs)
        evals, grads = max(evals, bill_evals), max(grads, bill_grads)
        b = self._budget
        if (b.evals is not None and self._evals + evals > b.evals) or (
                grads and self._grad_limit is not None and
                self._grads + grads > self._grad_limit):
            if grads and self._grad_limit == 0 and b.grads is None:
                raise BudgetExhausted(f"{capability} call needs {grads} gradient(s): "
                                      f"{NO_GRADIENTS}")
            raise BudgetExhausted(
                f"{capability} call needs {evals} evaluation(s) and {grads} gradient(s), more "
                f"than the budget left ({self.remaining('evals')} and {self.remaining('grads')})")
        self._check_time()
        out = self._ledger_call(capability, args, kwargs, evals, grads)
        self._evals += evals
        self._grads += grads
        self._after_call(cut=False)
        return out

    def report(self, theta: torch.Tensor | np.ndarray) -> None:
        """Tell the harness the current recommendation; counts one optimizer step.

        θ is copied (the optimizer may change it in place later). A numpy θ stays numpy until
        a checkpoint needs it: reporting every generation of a numpy library costs no torch
        call. After the step or time budget ran out (once BudgetExhausted was raised) a
        report is still taken as the result, counting no step: a library that owns its loop
        learns of the budget only from the exception, and reports its best point then.
        BudgetExhausted is raised again after taking it (let it propagate: the harness
        catches it), so that a loop that only reports still ends. (After the evaluation
        budget ran out a report counts its step as before.)"""
        theta = self._reported(theta)
        if self._late():  # taken, then raised again: a loop of reports still ends
            self._ledger_report_late(theta)
            raise BudgetExhausted("budget spent: this late report is the run's result")
        self._ledger_report(theta)
        self._steps += 1
        self._after_call(cut=False)
        if self._budget.steps is not None and self._steps >= self._budget.steps:
            raise BudgetExhausted(f"step budget spent ({self._budget.steps} steps)")

    def _reported(self, theta: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """The problem's own plain copy of a reported θ (:mod:`zgbench.plain`), checked."""
        if isinstance(theta, np.ndarray):
            # a copy, in the task's dtype where numpy has it (else converted by recommendation)
            theta = plain_array(theta, self._np_dtype)
            if theta.size != self._dim:
                raise self._report_error(theta)
            return theta.reshape(self._dim)
        if type(theta) is not torch.Tensor and isinstance(theta, torch.Tensor):
            return self._reported(plain_tensor(theta))  # a subclass: a plain copy first
        if not isinstance(theta, torch.Tensor) or theta.numel() != self._dim:
            raise self._report_error(theta)
        if theta.requires_grad:
            theta = theta.detach()
        if theta.dim() != 1:
            theta = theta.reshape(self._dim)
        return theta.to(device=self._device, dtype=self._dtype, copy=True)

    def _late(self) -> bool:
        """Whether the step or time budget has run out: a report now is a late one."""
        b = self._budget
        return ((b.steps is not None and self._steps >= b.steps)
                or (b.seconds is not None and self.seconds >= b.seconds))

    def _not_whole(self, asked: int, fits: int, what: str) -> BudgetExhausted:
        return BudgetExhausted(f"a whole batch of {asked} {what}s was asked and {fits} are "
                               "left: nothing evaluated, nothing charged")

    def _report_error(self, theta: Any) -> ContractError:
        return ContractError(
            f"report expects one parameter vector of {self._dim} values, got "
            f"{tuple(getattr(theta, 'shape', ())) or type(theta).__name__}")

    @property
    def seconds(self) -> float:
        """Charged wall time so far (excludes uncharged evaluation)."""
        if self._t0 is None:
            return 0.0
        return time.perf_counter() - self._t0 - self._paused

    @property
    def best_loss(self) -> float:
        """The lowest loss evaluated so far (NaN ignored)."""
        return self._ledger_best()

    def recommendation(self) -> torch.Tensor:
        """The last reported θ, else the best evaluated θ, else θ₀."""
        return self._ledger_recommendation()

    # ------------------------------------------------------------------- harness side
    def start(self) -> None:
        """Start the clock (once) and take the checkpoint at zero spend."""
        self._t0 = self._ledger_start()
        self._checkpoint()

    def finish(self) -> None:
        """Take the final checkpoint: the harness's own evaluation of the recommendation."""
        self._paused += _timed_pause(self._ledger_final)
        self._progress(1.0, force=True)

    # ------------------------------------------------------------------------ helpers
    def _require(self, capability: str) -> None:
        if capability not in self._provides:
            raise ContractError(
                f"task {self._name!r} does not provide {capability!r} "
                f"(it provides {sorted(self._provides) or 'nothing beyond loss'})")

    def _batch(self, thetas: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``thetas`` checked, as the problem's own plain tensor (a copy: exact type
        ``torch.Tensor``, no storage shared with the caller) on the task's device and dtype
        (so the ledger may keep a row of it without cloning)."""
        if type(thetas) is torch.Tensor:  # the common path: checks, then one copy
            self._check_shape(thetas)
            if thetas.requires_grad:
                thetas = thetas.detach()
            # `.to` is a dispatch even when it has nothing to do: skip it on the common path
            if thetas.dtype != self._dtype or thetas.device != self._device:
                return thetas.to(device=self._device, dtype=self._dtype, copy=True)
            return thetas.clone()
        if isinstance(thetas, np.ndarray):
            batch = plain_array(thetas, self._np_dtype)  # always a copy, base class
            self._check_shape(batch)
            tensor = torch.from_numpy(batch)
            if self._device.type == "cpu" and tensor.dtype == self._dtype:
                return tensor
            return tensor.to(self._device, self._dtype)
        if isinstance(thetas, torch.Tensor):  # a subclass: copied without its code first
            return self._batch(plain_tensor(thetas))
        raise self._shape_error(thetas)

    def _check_shape(self, thetas: torch.Tensor | np.ndarray) -> None:
        if thetas.ndim != 2 or thetas.shape[1] != self._dim:
            raise self._shape_error(thetas)
        if thetas.shape[0] == 0:
            raise ContractError("expected at least one parameter vector, got an empty batch")

    def _shape_error(self, thetas: Any) -> ContractError:
        return ContractError(
            f"expected parameter vectors of shape [B, {self._dim}], got "
            f"{tuple(getattr(thetas, 'shape', ())) or type(thetas).__name__}")

    def _allowed(self, asked: int, limit: int | None, used: int, what: str) -> int:
        """How many of ``asked`` vectors the ``what`` budget (evaluation or gradient) pays
        for; raise, naming that budget, if none."""
        self._check_time()
        if limit is None:
            return asked
        left = limit - used
        if left <= 0:
            if what == "gradient" and self._budget.grads is None:
                raise BudgetExhausted(NO_GRADIENTS)
            raise BudgetExhausted(f"{what} budget spent ({limit} {what}s)")
        return min(asked, left)

    def _check_time(self) -> None:
        if self._budget.seconds is not None and self.seconds >= self._budget.seconds:
            raise BudgetExhausted("time budget spent")

    def _after_call(self, cut: bool) -> None:
        seconds = self.seconds if self._budget.seconds is not None else 0.0
        fraction = self._budget.fraction(self._evals, self._grads, self._steps, seconds)
        if self._marks and fraction >= self._marks[0]:
            while self._marks and fraction >= self._marks[0]:
                self._marks.pop(0)
            self._checkpoint()
        self._progress(fraction)
        if cut:
            raise BudgetExhausted("budget spent in the middle of a batch (batch was cut)")

    def _checkpoint(self) -> None:
        self._paused += self._ledger_checkpoint()

    def _progress(self, fraction: float, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.perf_counter()
        if force or now - self._last_progress > 0.1:
            self._last_progress = now
            self._on_progress(min(fraction, 1.0))


def _charge(capability: str, name: str, value: Any) -> int:
    """An optimizer's ``evals=``/``grads=`` of a call as an int >= 0."""
    try:
        number = int.__index__(value if isinstance(value, int) else operator.index(value))
    except TypeError:
        raise ContractError(f"{capability} call: {name}= is a whole number, got "
                            f"{type(value).__name__}") from None
    if number < 0:
        raise ContractError(f"{capability} call: charges cannot be negative ({name}={number})")
    return number


def _task_scale(task: Task) -> tuple[torch.Tensor, float | None]:
    """``task.scale`` as a ``[dim]`` tensor (task dtype and device) and, where every
    coordinate has the same scale, that value as a Python float. A scale that is not
    positive and finite everywhere, or of the wrong shape, breaks the task contract."""
    raw = getattr(task, "scale", 1.0)
    dim = int(task.dim)
    if isinstance(raw, torch.Tensor):
        scale = raw.detach().to(device=task.device, dtype=task.dtype).reshape(-1)
        if scale.numel() == 1:
            scale = scale.expand(dim)
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        scale = torch.full((dim,), float(raw), device=task.device, dtype=task.dtype)
    else:
        raise ContractError(f"task {task.name!r}: scale must be a float or a [dim] tensor, "
                            f"got {type(raw).__name__}")
    if scale.numel() != dim or not bool(torch.isfinite(scale).all() and (scale > 0).all()):
        raise ContractError(f"task {task.name!r}: scale must be positive and finite, a float "
                            f"or a tensor of {dim} values (got shape {tuple(scale.shape)})")
    scale = scale.contiguous()
    if isinstance(raw, (int, float)):
        return scale, float(raw)
    first = scale[:1]
    return scale, (float(first) if bool((scale == first).all()) else None)


def _timed_pause(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    """numpy's twin of a torch dtype, or None where numpy has none (bfloat16): numpy batches
    of such a task keep their own dtype until torch converts them."""
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        return None
