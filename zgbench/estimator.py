"""The outer loop shared by gradient-estimating optimizers: estimate, step, report.

:class:`GradientEstimator` is the base class of ``fd``, ``rge``, ``cge`` and of estimators
that plugins add (smoothing, zerograds, a third party's new estimator): a subclass implements
:meth:`~GradientEstimator.estimate_gradient` and gets the budget-aware loop, the outer step and
the gradient diagnostics for free.
The outer step is a real ``torch.optim`` optimizer on a leaf tensor whose ``.grad`` we set to
the estimate, so SGD with momentum, weight decay, Adam and the cosine schedule are the
library's, not hand-written.

The base's ``lr`` is an absolute number: the default outer step is SGD (DeepZero's recipe,
lr 0.1 on network weights), whose step lr·ĝ is not a length (it scales with the gradient,
whose size the loss's units set as much as θ's), so no multiple of the task's scale makes it
portable. A subclass whose default step is Adam (``fd``, ``smoothing``) declares ``lr``
relative (``Param(..., relative=True)``): Adam's step is about lr per coordinate, a length,
and :meth:`GradientEstimator.outer_step` takes it per coordinate (lr x scale).
"""

from __future__ import annotations

import torch

from zgbench.optimizer import Optimizer
from zgbench.params import Param, Step
from zgbench.problem import Problem


class EstimatesGradient:
    """The declared contract of gradient diagnostics (``zgbench gradcheck`` and the claims'
    gradcheck rule): an optimizer that can say which direction it would move θ in, from loss
    values alone. :class:`GradientEstimator` has it; another optimizer mixes it in (``cbo``:
    ``class CBO(EstimatesGradient, Optimizer)``). Gradcheck asks only these three methods."""

    def prepare(self, problem: Problem) -> None:
        """Set up per-run state (random generators, caches) before the first estimate."""

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        """An estimate of ∇ℓ(θ) ``[dim]`` from loss values at ``key``. Call
        :meth:`prepare` once before the first estimate."""
        raise NotImplementedError

    def estimate_gradient_with_evals(self, problem: Problem, theta: torch.Tensor, key: int,
                                     evals: int) -> torch.Tensor:
        """One estimate spending about ``evals`` evaluations, for comparisons at equal
        evaluations: the mean of ⌊evals / c⌋ calls of :meth:`estimate_gradient` (at least one),
        c being what the first call cost. A deterministic estimator (``fd``, ``cge`` on a
        deterministic loss) gains nothing from repeats but spends the same allowance. Override
        to spend it another way (``zerograds`` fits its surrogate on that many samples)."""
        start = problem.evals
        total = self.estimate_gradient(problem, theta, key).detach().clone()
        repeats = max(evals // max(problem.evals - start, 1), 1)
        for _ in range(repeats - 1):
            total += self.estimate_gradient(problem, theta, key).detach()
        return total / repeats


class GradientEstimator(EstimatesGradient, Optimizer):
    """Base: estimate ∇ℓ(θ) from the metered problem, take one torch.optim step, repeat."""

    step = Param("sgd", "outer step", choices=("sgd", "adam"), tune=True)
    lr = Param(0.1, "learning rate of the outer step", tune=(1e-4, 1.0), log=True, gt=0)
    momentum = Param(0.9, "SGD momentum", ge=0)
    weight_decay = Param(5e-4, "weight decay of the outer step", ge=0)
    schedule = Param("cosine", "learning-rate schedule over the planned steps",
                     choices=("cosine", "constant"))

    def evals_per_step(self, dim: int) -> int:
        """Loss evaluations one gradient estimate costs (used to plan the schedule)."""
        raise NotImplementedError

    def planned_steps(self, problem: Problem) -> int:
        """Steps what is left of the budget pays for: the schedule's horizon (1000 under a
        time-only budget)."""
        steps = problem.affordable_steps(evals_per_step=max(self.evals_per_step(problem.dim), 1))
        return max(1000 if steps is None else steps, 1)

    def make_step(self, params: list[torch.Tensor], lr: float | None = None) -> torch.optim.Optimizer:
        """The torch optimizer of the outer step, at ``lr`` (default: ``self.lr``, a float)."""
        lr = self.lr if lr is None else lr
        if self.step == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)

    def outer_step(self, opt: torch.optim.Optimizer, theta: torch.Tensor) -> None:
        """``opt.step()`` with the per-coordinate learning rate of a relative ``lr`` on a
        task whose scale varies: the step torch takes at the scalar factor is stretched by
        the scale's shape (lr_i = lr·scale_i; Adam's and SGD's state do not depend on lr).
        On a uniform scale (or an absolute lr) it is the plain ``opt.step()``."""
        shape = getattr(self, "_lr_shape", None)
        if shape is None:
            opt.step()
            return
        before = theta.detach().clone()
        opt.step()
        with torch.no_grad():
            theta.copy_(before.add_((theta - before).mul_(shape)))

    def schedule_horizon(self, planned: int) -> int:
        """Scheduler steps over the run (the cosine schedule's horizon): one per outer step
        unless :meth:`update` steps the outer optimizer more than once."""
        return planned

    def start(self, problem: Problem, planned: int) -> None:
        """Per-run set-up that needs the planned step count (a σ schedule, a surrogate);
        called once after :meth:`prepare` and the outer optimizer are built."""

    def before_step(self, step: int) -> None:
        """Per-step schedules (σ annealing): called before each :meth:`update`."""

    def update(self, problem: Problem, theta: torch.nn.Parameter, opt: torch.optim.Optimizer,
               lr_schedule: torch.optim.lr_scheduler.LRScheduler | None) -> None:
        """One outer step of θ in place: set ``theta.grad`` to the estimate and step. Override
        for methods whose step is not "one estimate, one optimizer step" (zerograds)."""
        theta.grad = self.estimate_gradient(problem, theta.detach(), problem.new_key())
        self.outer_step(opt, theta)
        if lr_schedule is not None:
            lr_schedule.step()

    def run(self, problem: Problem) -> None:
        """The outer loop, written once, in the shape of pycma's ``OOOptimizer.optimize``:
        set up, then (before_step, update, report) until the problem raises BudgetExhausted.
        Subclasses change the loop through the hooks above, never by copying it."""
        self.prepare(problem)
        theta = torch.nn.Parameter(problem.initial())
        lr, self._lr_shape = problem.step_parts(self.lr)  # a float lr: (lr, None)
        # a float lr keeps the one-argument call: subclasses that override make_step(params)
        # (written before step sizes were relative) keep working
        opt = self.make_step([theta], lr) if isinstance(self.lr, Step) else self.make_step([theta])
        planned = self.planned_steps(problem)
        lr_schedule = None
        if self.schedule == "cosine":
            lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, self.schedule_horizon(planned))
        self.start(problem, planned)
        step = 0
        while True:
            self.before_step(step)
            self.update(problem, theta, opt, lr_schedule)
            problem.report(theta.detach())
            step += 1
