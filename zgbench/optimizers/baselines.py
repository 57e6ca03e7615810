"""Baselines every comparison needs: ``random-search`` and the first-order ``adam``.

``random-search`` is the reference point of normalised scores (1 = its median), so it is
deliberately plain: Gaussian samples around the incumbent with a fixed σ, the incumbent
re-evaluated in every batch under the same key, so noisy tasks compare like with like.
"""

from __future__ import annotations

import torch

from zgbench import Optimizer, Param, Problem, hookimpl


class RandomSearch(Optimizer):
    """Random search: Gaussian samples around the incumbent, keep the best."""

    name = "random-search"
    sigma = Param(0.3, "standard deviation of the samples", tune=(1e-3, 1.0), log=True, gt=0)
    batch = Param(16, "samples per loss call (plus the incumbent)", ge=1)

    def run(self, problem: Problem) -> None:
        gen = self.generator(problem.device)
        best = problem.initial()
        while True:
            noise = torch.randn(self.batch, problem.dim, generator=gen, device=problem.device,
                                dtype=best.dtype)
            candidates = torch.cat([best[None], best + self.sigma * noise])
            values = problem.loss(candidates, problem.new_key()).nan_to_num(nan=float("inf"))
            best = candidates[int(torch.argmin(values))].clone()
            problem.report(best)


class Adam(Optimizer):
    """Adam on the task's autodiff gradient: the first-order reference."""

    name = "adam"
    requires = frozenset({"grad"})
    lr = Param(0.05, "learning rate", tune=(1e-4, 0.5), log=True, gt=0)

    def run(self, problem: Problem) -> None:
        theta = torch.nn.Parameter(problem.initial())
        opt = torch.optim.Adam([theta], lr=self.lr)
        while True:
            _, grad = problem.grad(theta.detach()[None])
            theta.grad = grad[0]
            opt.step()
            problem.report(theta.detach())


@hookimpl
def zgbench_optimizers():
    return [RandomSearch, Adam]
