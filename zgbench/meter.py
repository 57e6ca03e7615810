"""The meter at the task boundary: what a run really spent, whatever route its calls took.

:class:`~zgbench.problem.Problem` is the optimizer's fast front: it converts and checks
batches, cuts them at the budget and decides when to take checkpoints. Its counters are
read-only properties, but in-process Python can write any private attribute, so they are
not the record. The record comes from a :class:`Ledger`, which the harness holds and the
``Problem`` reaches only through bound methods (no attribute of ``Problem`` is the ledger):

- For the duration of a run the ledger's taps shadow the task instance's ``loss``, ``grad``,
  capability methods and ``evaluate`` (instance attributes win over class methods). A call
  that reaches the task by any route (a private attribute, ``gc``) goes through the same
  metered path as ``problem.loss``: it is counted, cut at the budget and observed for the
  best loss. A capability or ``evaluate`` called directly (uncharged, or held out) marks the
  run violated. Calls the task makes to itself from inside one of its methods
  (``evaluate`` calling ``self.loss``) pass straight through: the outer call pays for them.
- The ledger counts what the task actually performed, with its own clock, and enforces the
  budget a second time (with a small slack on time, so an honest run never trips it): if
  the front's counters or clock were tampered with, the ledger still cuts the run, and the
  audit at the end names the violation.
- Checkpoints, the best loss, the recommendation and the trajectory are the ledger's; the
  optimizer gets copies.
- An audit hook (PEP 578, installed once per process) flags interpreter introspection that
  finds hidden objects (``gc.get_objects``/``get_referrers``/``get_referents``) while an
  optimizer's code runs; none of pycma, Nevergrad, torch or numba raises those events on
  their own.

What remains possible in-process (a ledger reached through ``__self__``/``__closure__``,
ctypes) is out of scope: ``--isolate`` runs each run in a fresh process, and a benchmark of
untrusted plugins should review their code. The point is that honest accounting is the
only easy path and that the cheats a plugin author finds first are counted or visible.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zgbench.budget import Budget, BudgetExhausted
from zgbench.plain import bare, disturbed
from zgbench.task import Cost, Task, capability_costs, rows_of, theta_argument
from zgbench.errors import ContractError

#: Audit events that find objects the optimizer was not given; flagged during a run.
class TaskError(ContractError):
    """The task broke its contract during a run (its method raised, or returned the wrong
    type, device, dtype or shape): the run fails as the task's fault, not the optimizer's."""


FLAGGED_EVENTS = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents"})

#: Time the ledger's own clock may run ahead of the front's before it cuts the run: the two
#: clocks are read microseconds apart, but a loaded machine can deschedule the process
#: between the reads. Seconds, plus a share of the time budget.
CLOCK_SLACK = (0.25, 0.01)

_MARK = "__zgbench_tap__"


def gradient_limit(budget: Budget) -> int | None:
    """The gradients a run may spend: ``budget.grads``; where that is unset but evaluations
    are bounded, none (a zeroth-order budget). Why: an unset limit that meant unlimited
    made gradients free beside a bounded evaluation count, so a run that took 200 honestly
    charged gradients outranked every zeroth-order method on an evaluation budget. A
    budget of steps or seconds alone still bounds gradients by those."""
    if budget.grads is None and budget.evals is not None:
        return 0
    return budget.grads


#: Why a gradient was refused where :func:`gradient_limit` is 0 by default.
NO_GRADIENTS = ("this budget allots no gradients (it bounds evaluations only): give it "
                "grads= (--grads) to allot them")
_active: Ledger | None = None  # the ledger of the optimizer code running now, if any


def _audit_hook(event: str, args: tuple) -> None:
    ledger = _active
    if ledger is not None and event in FLAGGED_EVENTS and not ledger.depth:
        ledger.flag(f"{event}() during the run (interpreter introspection)")


_hooked = False


def _install_audit_hook() -> None:
    """``sys.addaudithook`` once per process (hooks cannot be removed; this one is a no-op
    outside runs)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit_hook)
        _hooked = True


class Ledger:
    """What one run spent and found, kept apart from the optimizer-facing Problem.

    The ledger is built on a task instance before the run (:meth:`install` puts its taps on
    the instance) and holds the only references to the task's original methods.
    """

    def __init__(self, task: Task, budget: Budget, eval_key: int = 0) -> None:
        self.budget = budget
        self.provides = frozenset(task.provides)
        #: each capability's declared cost: the bill :meth:`call` charges at least
        self.costs: dict[str, Cost] = capability_costs(task)
        self.dim = int(task.dim)
        self.device = task.device
        self.name = task.name
        self._task = task
        self._original: dict[str, Callable[..., Any]] = {
            name: _original(task, name) for name in self._metered_names(task)}
        # what the task performed, counted where the originals are called: a closure, not an
        # attribute of the ledger, so that changing the ledger's counters shows in the audit
        self._loss, self._grad, self._performed = _counted(self._original["loss"],
                                                           self._original.get("grad"))
        self._eval_key = eval_key
        self._cuda = self.device.type == "cuda"
        self._cpu = self.device.type == "cpu"
        self.evals = self.grads = self.steps = 0  # charged through the metered path
        self.declared_evals = self.declared_grads = 0  # of these, charged by problem.call
        self.calls: dict[str, int] = {}
        self.direct = 0  # loss/grad calls that arrived at the task's own attribute
        self.depth = 0  # > 0 while task code runs: its calls to itself pass through
        self.violations: list[str] = []
        self.refused = 0  # calls the ledger's own budget check refused
        #: the first fault of the task itself (message and traceback), if it broke
        self.task_error: str | None = None
        self.failed_evals = self.failed_grads = 0  # counted, but in calls the task broke
        self.t0: float | None = None
        self.stopped: float | None = None
        self.paused = 0.0
        self.task_seconds = 0.0
        self.best = torch.tensor(math.inf, device=self.device)  # CUDA: stays on the device
        self.best_cpu = math.inf
        self.best_theta: torch.Tensor | None = None
        self.reported: torch.Tensor | np.ndarray | None = None
        self.late_reports = 0  # reports after the step or time budget ran out (no step)
        #: recommend the best evaluated θ instead of the last reported one (opt-in:
        #: ``Optimizer.recommend = "best-evaluated"``)
        self.recommend_best = False
        self._append, self._replace_last, self._entries = _journal()
        self._dtype = task.dtype
        self._installed = False
        self._grad_limit = gradient_limit(budget)
        self._limit_seconds = (None if budget.seconds is None else
                               budget.seconds * (1 + CLOCK_SLACK[1]) + CLOCK_SLACK[0])

    @staticmethod
    def _metered_names(task: Task) -> list[str]:
        names = ["loss", "evaluate"] + sorted(task.provides)
        return [n for n in dict.fromkeys(names) if callable(getattr(task, n, None))]

    # ------------------------------------------------------------------ taps on the task
    def install(self, front: Any) -> None:
        """Shadow the task instance's metered methods with taps; ``front`` (the Problem)
        serves direct ``loss``/``grad`` calls exactly as the optimizer's own."""
        _install_audit_hook()
        for name, original in self._original.items():
            tap = self._tap(name, original, front)
            setattr(tap, _MARK, original)
            self._task.__dict__[name] = tap
        self._installed = True

    def _tap(self, name: str, original: Callable[..., Any], front: Any) -> Callable[..., Any]:
        ledger = self
        if name in ("loss", "grad"):
            metered = getattr(front, name)

            def tap(thetas: Any, key: int | None = None, *args: Any, **kwargs: Any) -> Any:
                if ledger.depth:  # the task calling itself: the outer call pays
                    return original(thetas, key, *args, **kwargs)
                ledger.direct += 1
                return metered(thetas, key)
        else:
            def tap(*args: Any, **kwargs: Any) -> Any:
                if not ledger.depth:  # uncharged (a capability) or held out (evaluate)
                    via = "problem.call" if name != "evaluate" else "the harness's checkpoints"
                    ledger.flag(f"task.{name}() was called directly, bypassing {via}")
                ledger.depth += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    ledger.depth -= 1
        tap.__name__ = tap.__qualname__ = name
        return tap

    def detach(self) -> None:
        """Remove the taps: the task instance is the plain task again (for artifacts)."""
        if not self._installed:
            return
        for name in self._original:
            if getattr(self._task.__dict__.get(name), _MARK, None) is not None:
                del self._task.__dict__[name]
        self._installed = False

    # ------------------------------------------------------------ the metered calls
    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        """Evaluate a batch the front has checked, cut and copied (its own plain tensor, so
        the best row is kept without cloning): count, time, observe. (The hot path: the
        budget check and the timing are written out, not called.)"""
        n = thetas.shape[0]
        limit = self.budget.evals
        if (limit is not None and self.evals + n > limit) or self._limit_seconds is not None:
            self._check(self.evals + n, limit, "evaluation")
        self.evals += n
        if self._cuda:  # charge queued optimizer work to the optimizer, task work to the task
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.depth += 1
        try:
            if disturbed():  # the optimizer's torch modes and defaults must not reach the task
                with bare():
                    values = self._loss(thetas, key)
            else:
                values = self._loss(thetas, key)
        except Exception as exc:
            raise self._task_failed("loss", n, 0, exc) from exc
        finally:
            self.depth -= 1
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self.task_seconds += time.perf_counter() - start
        # the hot path's checks: a tensor of shape [n], floating, on the task's kind of device
        if (not isinstance(values, torch.Tensor) or values.shape != (n,)
                or not values.is_floating_point()
                or (not values.is_cpu if self._cpu else not self._on_device(values))):
            raise self._task_failed("loss", n, 0, self._bad_result("loss", values, (n,)))
        self._observe(thetas, values, owned=True)
        return values

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = thetas.shape[0]
        self._check(self.grads + n, self._grad_limit, "gradient")
        self.grads += n
        try:
            values, grads = self._timed(self._grad, thetas, key)
        except Exception as exc:
            raise self._task_failed("grad", 0, n, exc) from exc
        bad = (self._bad_result("grad", values, (n,), "values")
               or self._bad_result("grad", grads, (n, self.dim), "gradients"))
        if bad:
            raise self._task_failed("grad", 0, n, bad)
        self._observe(thetas, values)
        return values, grads

    def bill(self, capability: str, args: tuple, kwargs: dict[str, Any]) -> tuple[int, int]:
        """``(evals, grads)`` the task's declared :class:`~zgbench.task.Cost` charges for
        this call of ``capability`` (the rows are counted in its θ argument)."""
        cost = self.costs[capability]
        if cost.per == "call" or not (cost.evals or cost.grads):
            return cost.bill(1)
        theta = theta_argument(self._original[capability], args, kwargs)
        return cost.bill(rows_of(theta, self.dim))

    def call(self, capability: str, args: tuple, kwargs: dict, evals: int, grads: int) -> Any:
        """Call a capability charged ``evals`` and ``grads`` (what the front computed: at
        least the task's bill, else the front was changed and the bill is charged)."""
        owed = self.bill(capability, args, kwargs)
        if evals < owed[0] or grads < owed[1]:
            self.flag(f"a {capability} call was charged less than the task's bill "
                      "(the meter was tampered with)")
            evals, grads = max(evals, owed[0]), max(grads, owed[1])
        self._check(self.evals + evals, self.budget.evals, "evaluation")
        self._check(self.grads + grads, self._grad_limit, "gradient")
        self.evals += evals
        self.grads += grads
        self.declared_evals += evals
        self.declared_grads += grads
        self.calls[capability] = self.calls.get(capability, 0) + 1
        try:
            return self._timed(self._original[capability], *args, **kwargs)
        except Exception as exc:
            raise self._task_failed(capability, evals, grads, exc) from exc

    # ------------------------------------------------------------------ the task's faults
    def _task_failed(self, method: str, evals: int, grads: int,
                     exc: BaseException) -> TaskError:
        """Note that the task broke (it raised, or returned something it must not): the run
        fails as the task's fault. The front never charged the call (it raised before
        counting), so the audit compares its counters with what the task performed less
        these ``evals`` and ``grads``: the optimizer is not blamed for the task's fault."""
        self.failed_evals += evals
        self.failed_grads += grads
        if isinstance(exc, TaskError):
            error = exc
        else:
            error = TaskError(f"task {self.name!r}.{method} raised "
                              f"{type(exc).__name__}: {exc}")
        if self.task_error is None:
            self.task_error = f"{error}\n" + "".join(traceback.format_exception(exc))
        return error

    def _on_device(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is on the task's device (``cuda`` matches any ``cuda:i``)."""
        device = value.device
        return device.type == self.device.type and (
            self.device.index is None or device.index in (None, self.device.index))

    def _bad_result(self, method: str, value: Any, shape: tuple[int, ...],
                    what: str = "") -> TaskError | None:
        """What is wrong with a tensor ``method`` returned (type, device, dtype, shape, in
        that order), or ``None``."""
        head = f"task {self.name!r}.{method} returned {what + ' as ' if what else ''}"
        if not isinstance(value, torch.Tensor):
            kind = type(value)
            name = kind.__qualname__ if kind.__module__ == "builtins" else \
                f"{kind.__module__}.{kind.__qualname__}"
            return TaskError(f"{head}{name}, expected a torch.Tensor of shape {shape}")
        if not self._on_device(value):
            return TaskError(f"{head}a tensor on device {value.device}, expected the task's "
                             f"device {self.device}")
        if not value.is_floating_point():
            return TaskError(f"{head}dtype {value.dtype}, expected a floating-point dtype "
                             f"(the task's is {self._dtype})")
        if tuple(value.shape) != shape:
            return TaskError(f"{head}shape {tuple(value.shape)}, expected {shape}")
        return None

    def report(self, theta: torch.Tensor | np.ndarray) -> None:
        """Keep the recommendation (already the front's own copy) and count a step."""
        limit = self.budget.steps
        if (limit is not None and self.steps >= limit) or self._limit_seconds is not None:
            self._check(self.steps + 1, limit, "step")
        self.steps += 1
        self.reported = theta
        if limit is not None and self.steps == limit:  # what a late report may come after
            self._at_step_limit = (self.evals, self.grads)

    def report_late(self, theta: torch.Tensor | np.ndarray) -> None:
        """Keep a recommendation reported after the step or time budget ran out, counting
        no step: a library that owns its loop learns of the budget only from
        BudgetExhausted and reports its best point then. Flagged where the budget was not
        spent, or where the optimizer evaluated past the step limit before reporting."""
        spent_time = self.budget.seconds is not None and self.seconds() >= (
            self.budget.seconds * (1 - CLOCK_SLACK[1]) - CLOCK_SLACK[0])
        spent_steps = self.budget.steps is not None and self.steps >= self.budget.steps
        if not (spent_time or spent_steps):
            self.flag("a report past the budget was made before the budget was spent "
                      "(the meter was tampered with)")
        elif not spent_time and getattr(self, "_at_step_limit", None) != (self.evals, self.grads):
            self.flag("evaluations past the step budget preceded a late report")
        self.late_reports += 1
        self.reported = theta

    def _check(self, wanted: int, limit: int | None, what: str) -> None:
        """The ledger's own budget check. The front cuts first, so this trips only if the
        front's counters or clock were changed."""
        if limit is not None and wanted > limit:
            self.refused += 1
            self.flag(f"a {what} beyond the budget was attempted (the meter was tampered with)")
            raise BudgetExhausted(f"{what} budget spent (ledger)")
        if self._limit_seconds is not None and self.seconds() > self._limit_seconds:
            self.refused += 1
            self.flag("a call past the time budget was attempted (the clock was tampered with)")
            raise BudgetExhausted("time budget spent (ledger)")

    def _timed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._cuda:  # charge queued optimizer work to the optimizer, task work to the task
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.depth += 1
        try:
            if disturbed():  # the optimizer's torch modes and defaults must not reach the task
                with bare():
                    out = fn(*args, **kwargs)
            else:
                out = fn(*args, **kwargs)
        finally:
            self.depth -= 1
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self.task_seconds += time.perf_counter() - start
        return out

    def _observe(self, thetas: torch.Tensor, values: torch.Tensor, owned: bool = False) -> None:
        """Track the best loss and its θ. ``owned``: ``thetas`` is the front's own copy, so a
        row of it may be kept without cloning."""
        if values.requires_grad:
            values = values.detach()
        if not self._cuda:  # on the CPU reading values is free: skip work when nothing improved
            # One torch call, then Python floats: between a numpy library's ask and tell every
            # torch call costs µs, more than min() over a batch's few floats here.
            floats = values.tolist()
            low = min(floats)  # skips NaN (comparisons with NaN are false) unless it is first
            if low != low:
                low = min((v for v in floats if v == v), default=math.inf)
            if low < self.best_cpu:
                row = thetas[floats.index(low)]
                self.best_cpu = low
                self.best_theta = row if owned else row.clone()
            return
        # on CUDA, tensor ops only (no .item()): no host sync in the hot path
        value, index = values.nan_to_num(nan=math.inf).min(0)
        value = value.to(self.best.dtype)
        if self.best_theta is None:
            self.best_theta = thetas[index].clone()
        self.best_theta = torch.where(value < self.best, thetas[index], self.best_theta)
        self.best = torch.minimum(self.best, value)

    # ---------------------------------------------------------------- clock and record
    def start(self) -> float:
        """Start the clock (once) and make this the active run for the audit hook."""
        global _active
        if self.t0 is not None:
            self.flag("the run's clock was started again")
            raise ContractError("the clock of a run is started once, by the harness")
        self.t0 = time.perf_counter()
        _active = self
        return self.t0

    def stop(self) -> None:
        """The optimizer's code is over: freeze the clock, end the audit."""
        global _active
        if _active is self:
            _active = None
        if self.stopped is None and self.t0 is not None:
            self.stopped = time.perf_counter()

    def seconds(self) -> float:
        """Charged wall time on the ledger's clock (uncharged checkpoints excluded)."""
        if self.t0 is None:
            return 0.0
        return (self.stopped or time.perf_counter()) - self.t0 - self.paused

    @property
    def trajectory(self) -> list[dict[str, Any]]:
        """The checkpoints so far: a fresh copy each time (the journal keeps JSON text)."""
        return self._entries()

    def best_loss(self) -> float:
        return float(self.best) if self._cuda else self.best_cpu

    def recommendation(self) -> torch.Tensor:
        """The last reported θ, else the best evaluated θ, else θ₀; the best evaluated θ
        first where the optimizer asked for it (:attr:`recommend_best`)."""
        if self.recommend_best and self.best_theta is not None:
            return self.best_theta
        if isinstance(self.reported, np.ndarray):  # reported by a numpy library
            self.reported = torch.from_numpy(self.reported).to(self.device, self._dtype)
        if self.reported is not None:
            return self.reported
        if self.best_theta is not None:
            return self.best_theta
        return self._task.initial().detach().clone()

    def initial(self) -> torch.Tensor:
        return self._task.initial().detach().clone()

    def checkpoint(self, replace: bool = False) -> float:
        """Evaluate the recommendation (uncharged) and append a trajectory entry from the
        ledger's own counters; return the seconds it took (paused time)."""
        pause = time.perf_counter()
        theta = self.recommendation()
        self.depth += 1
        try:
            with torch.no_grad(), (bare() if disturbed() else contextlib.nullcontext()):
                metrics = self._held_out(theta)
                current = self._current(theta)
        finally:
            self.depth -= 1
        seconds = self.seconds()
        (self._replace_last if replace else self._append)({
            "evals": self.evals,
            "grads": self.grads,
            "steps": self.steps,
            "seconds": seconds,
            "task_seconds": self.task_seconds,
            "optimizer_seconds": max(seconds - self.task_seconds, 0.0),
            "best_loss": _finite_or_none(self.best_loss()),
            "current_loss": _finite_or_none(current),
            "metrics": {k: _finite_or_none(v) for k, v in metrics.items()},
        })
        took = time.perf_counter() - pause
        self.paused += took
        return took

    def _held_out(self, theta: torch.Tensor) -> dict[str, float]:
        """The task's ``evaluate`` of ``theta`` as floats; a fault there is the task's."""
        try:
            return {k: float(v) for k, v in self._original["evaluate"](theta).items()}
        except Exception as exc:
            raise self._task_failed("evaluate", 0, 0, exc) from exc

    def _current(self, theta: torch.Tensor) -> float:
        """The loss of ``theta`` at the evaluation key (uncharged); a fault is the task's."""
        try:
            values = self._original["loss"](theta.reshape(1, -1), self._eval_key)
        except Exception as exc:
            raise self._task_failed("loss", 0, 0, exc) from exc
        bad = self._bad_result("loss", values, (1,))
        if bad:
            raise self._task_failed("loss", 0, 0, bad)
        return float(values[0])

    def final(self) -> dict[str, Any]:
        """The harness's own evaluation of the final recommendation: the last entry of the
        trajectory (replacing one taken at the same spend, which may predate a report)."""
        entries = self.trajectory
        last = entries[-1] if entries else None
        self.checkpoint(replace=last is not None and (
            last["evals"], last["grads"], last["steps"]) == (self.evals, self.grads, self.steps))
        return self.trajectory[-1]

    def flag(self, reason: str) -> None:
        if reason not in self.violations:
            self.violations.append(reason)

    def audit(self, front: Any) -> dict[str, Any]:
        """Compare what was performed with what the front charged; name every violation."""
        if self._installed:
            for name in self._original:
                if getattr(self._task.__dict__.get(name), _MARK, None) is None:
                    self.flag(f"the metered task.{name} was replaced during the run")
        charged = {"evals": _read(front, "evals"), "grads": _read(front, "grads"),
                   "steps": _read(front, "steps")}
        rows, grad_rows = self._performed()
        if (rows, grad_rows) != (self.evals - self.declared_evals, self.grads - self.declared_grads):
            self.flag(f"the ledger was changed: the task evaluated {rows} losses and {grad_rows} "
                      f"gradients, the ledger counted {self.evals - self.declared_evals} and "
                      f"{self.grads - self.declared_grads}")
        performed = {"evals": rows + self.declared_evals, "grads": grad_rows + self.declared_grads,
                     "steps": self.steps}
        # calls the task broke raised before the front counted them: not the optimizer's doing
        uncharged = {"evals": self.failed_evals, "grads": self.failed_grads, "steps": 0}
        for key in charged:
            if charged[key] != performed[key] - uncharged[key]:
                self.flag(f"the problem's {key} counter was changed: it charged "
                          f"{charged[key]}, the task performed {performed[key]}")
        seconds = self.seconds()
        wall = 0.0 if self.t0 is None else (self.stopped or time.perf_counter()) - self.t0
        charged_seconds = _read(front, "seconds", 0.0)
        if seconds - charged_seconds > CLOCK_SLACK[0] + CLOCK_SLACK[1] * seconds:
            self.flag(f"the problem's clock was set back: it charged {charged_seconds:.3f} s "
                      f"of {seconds:.3f} s")
        limits = {**self.budget.as_dict(), "grads": self._grad_limit}
        exceeded = any(limits[k] is not None and performed[k] > limits[k] for k in performed)
        exceeded = exceeded or (
            self._limit_seconds is not None and seconds > self._limit_seconds)
        return {
            "evals_performed": performed["evals"], "evals_charged": charged["evals"],
            "grads_performed": performed["grads"], "grads_charged": charged["grads"],
            "steps_performed": performed["steps"], "steps_charged": charged["steps"],
            "declared_evals": self.declared_evals, "declared_grads": self.declared_grads,
            "capability_calls": dict(self.calls), "direct_calls": self.direct,
            "seconds_wall": wall, "seconds_ledger": seconds, "seconds_charged": charged_seconds,
            "budget_exceeded": exceeded, "refused_calls": self.refused,
            "failed_evals": self.failed_evals, "failed_grads": self.failed_grads,
            "late_reports": self.late_reports, "violations": list(self.violations),
        }


def _counted(loss: Callable[..., Any], grad: Callable[..., Any] | None):
    """``loss`` and ``grad`` counting the rows they evaluate, and a reader of the counts."""
    performed = [0, 0]

    def counted_loss(thetas: torch.Tensor, key: int) -> torch.Tensor:
        performed[0] += thetas.shape[0]
        return loss(thetas, key)

    def counted_grad(thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        performed[1] += thetas.shape[0]
        return grad(thetas, key)

    return counted_loss, counted_grad if grad else None, lambda: tuple(performed)


def _journal():
    """Append, replace-last and read functions over checkpoints kept as JSON text in a
    closure: no object the optimizer can reach by attribute holds an entry it could edit."""
    texts: list[str] = []

    def append(entry: dict[str, Any]) -> None:
        texts.append(json.dumps(entry))

    def replace_last(entry: dict[str, Any]) -> None:
        texts[-1] = json.dumps(entry)

    def read() -> list[dict[str, Any]]:
        return [json.loads(t) for t in texts]

    return append, replace_last, read


def _original(task: Task, name: str) -> Callable[..., Any]:
    """The task's own method ``name``, looking through a tap left by an earlier ledger
    (a task instance reused for several problems, as gradcheck does)."""
    attr = getattr(task, name)
    return getattr(attr, _MARK, None) or attr


def _read(front: Any, name: str, default: Any = None) -> Any:
    try:
        return getattr(front, name)
    except Exception:
        return default


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/NaN: store them as null."""
    return value if math.isfinite(value) else None
