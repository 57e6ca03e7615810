"""Optimizers for fixed-point residuals L_θ = R(L_θ): full gradient, dual buffer, semi-gradient.

Hadadan, Chen and Zwicker, "Neural Radiosity", SIGGRAPH Asia 2021 (full gradient, dual
buffer); Cho and Cho, "Fast and Accurate Neural Rendering Using Semi-Gradients", 2024
(semi-gradient, weighted).

They need a task that provides ``residual(theta, key, detach=(...))`` (see
:data:`zgbench.contracts.CAPABILITIES`): the left side L_θ at N sampled points and independent
Monte Carlo estimates of the right side. With r = L_θ − ⟨R_θ⟩ and the relative normalisation
w = 1 / (sg(L_θ)² + ε), each method is a surrogate loss whose gradient is

- ``full-gradient``: 2 w r (∇L − ∇⟨R⟩), one estimate with its graph. Biased: ⟨R⟩ and ∇⟨R⟩
  share samples;
- ``dual-buffer``: 2 w r_a (∇L − ∇⟨R⟩_b), two independent estimates: unbiased;
- ``semi-gradient``: 2 w r ∇L, the right side detached and its network queries evaluated under
  ``torch.no_grad`` (nothing stored for them: that is where its time saving comes from);
- ``weighted[w=...]``: 2 w r_a (∇L − w ∇⟨R⟩_b): semi-gradient plus w times the dual-buffer
  right-side term (w = 0: semi-gradient, w = 1: dual buffer).

The outer step is ``torch.optim.Adam`` (lr 5e-4, decayed by 0.35 every 10k steps, as in the
papers) on θ. Each step makes one ``residual`` call, charged as one gradient evaluation.

The lr stays an absolute number, not a multiple of the task's scale: these methods run only on
tasks that provide ``residual`` (the radiosity networks), for which the papers set it, and it
is the lr of their training recipe on those very weights (a hash-grid table initialised at
±1e-4, whose useful range its training sets, not its init), so a relative default would
only re-express the papers' value through a scale it does not depend on.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zgbench import Optimizer, Param, Problem, UsageError, hookimpl


class ResidualOptimizer(Optimizer):
    """Base: one ``residual`` call per step, a surrogate loss, backward, an Adam step."""

    requires = frozenset({"residual"})
    lr = Param(5e-4, "Adam learning rate (the papers: 5e-4)", tune=(1e-4, 0.1), log=True)
    decay = Param(0.35, "learning-rate factor applied every decay_every steps")
    decay_every = Param(0, "steps between learning-rate decays; 0 = a third of the planned "
                           "steps (the papers' two decays, 10k of 30k, scaled to the budget)")
    eps = Param(0.01, "ε of the relative normalisation 1 / (sg(L)² + ε)")
    #: which right-side estimates to request: True = detached (evaluated under no-grad)
    detach: ClassVar[tuple[bool, ...]] = (False,)

    @classmethod
    def check_params(cls, params):
        if params["lr"] <= 0 or params["eps"] <= 0 or params["decay_every"] < 0:
            raise UsageError(f"{cls.name}: lr and eps must be positive and decay_every >= 0 "
                             "(0: a third of the planned steps).")
        if not 0 < params["decay"] <= 1:
            raise UsageError(f"{cls.name}: decay must be in (0, 1], got {params['decay']}.")

    def decay_period(self, problem: Problem) -> int:
        """``decay_every``, or with 0 a third of the steps the budget plans (one residual
        call is one step and one gradient evaluation); no decay if neither is bounded."""
        if self.decay_every:
            return self.decay_every
        planned = problem.affordable_steps(grads_per_step=1)
        return 2**62 if planned is None else max(1, planned // 3)

    def requested(self) -> tuple[bool, ...]:
        """The ``detach`` argument of the residual call."""
        return self.detach

    def surrogate(self, res) -> torch.Tensor:
        """A scalar whose gradient is this method's update direction."""
        raise NotImplementedError

    def run(self, problem: Problem) -> None:
        theta = torch.nn.Parameter(problem.initial())
        opt = torch.optim.Adam([theta], lr=self.lr)
        schedule = torch.optim.lr_scheduler.StepLR(opt, self.decay_period(problem),
                                                   gamma=self.decay)
        detach = self.requested()
        while True:
            res = problem.call("residual", theta, problem.new_key(), detach=detach, grads=1)
            opt.zero_grad(set_to_none=True)
            self.surrogate(res).backward()
            opt.step()
            schedule.step()
            problem.report(theta.detach())


class FullGradient(ResidualOptimizer):
    """Full gradient of the residual through both sides (the Neural Radiosity baseline)."""

    name = "full-gradient"

    def surrogate(self, res):
        return (res.weight(self.eps) * (res.lhs - res.rhs[0]) ** 2).mean()


class DualBuffer(ResidualOptimizer):
    """Dual buffer: two independent right-side estimates, one per factor (unbiased)."""

    name = "dual-buffer"
    detach = (True, False)

    def surrogate(self, res):
        a, b = res.rhs
        return 2 * (res.weight(self.eps) * (res.lhs - a).detach() * (res.lhs - b)).mean()


class SemiGradient(ResidualOptimizer):
    """Semi-gradient: the right side detached and evaluated under no-grad (Cho and Cho)."""

    name = "semi-gradient"
    detach = (True,)

    def surrogate(self, res):
        return (res.weight(self.eps) * (res.lhs - res.rhs[0]) ** 2).mean()


class Weighted(ResidualOptimizer):
    """Semi-gradient plus w times the right-side term (w = 0: semi-gradient, 1: dual buffer)."""

    name = "weighted"
    w = Param(0.5, "weight of the right-side gradient term, in [0, 1]")

    @classmethod
    def check_params(cls, params):
        super().check_params(params)
        if not 0 <= params["w"] <= 1:
            raise UsageError(f"weighted: w must be in [0, 1], got {params['w']}.")

    def requested(self):
        return (True,) if self.w == 0 else (True, False)

    def surrogate(self, res):
        r_a = (res.lhs - res.rhs[0]).detach()
        target = res.lhs if self.w == 0 else res.lhs - self.w * res.rhs[1]
        return 2 * (res.weight(self.eps) * r_a * target).mean()


@hookimpl
def zgbench_optimizers():
    return [FullGradient, DualBuffer, SemiGradient, Weighted]
