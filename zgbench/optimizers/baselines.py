"""Baselines every comparison needs: ``random-search`` and the first-order ``adam``.

``random-search`` is the reference point of normalised scores (1 = its median), so it is
deliberately plain: Gaussian samples around the incumbent with a fixed σ, the incumbent
re-evaluated in every batch under the same key, so noisy tasks compare like with like.

Step sizes are multiples of the task's scale (``Param(relative=True)``): σ = 0.3 x scale per
coordinate, and Adam's lr = 0.05 x scale per coordinate, because Adam's step moves each
coordinate by about lr whatever the gradient's magnitude (m̂/√v̂ is of order 1): its lr is a
length in θ-space. On scale-1 tasks (the synthetic functions) both are today's 0.3 and 0.05.
"""

from __future__ import annotations

import torch

from zgbench import Optimizer, Param, Problem, hookimpl


class RandomSearch(Optimizer):
    """Random search: Gaussian samples around the incumbent, keep the best."""

    name = "random-search"
    sigma = Param(0.3, "standard deviation of the samples", tune=(1e-3, 1.0), log=True, gt=0,
                  relative=True)
    batch = Param(16, "samples per loss call (plus the incumbent)", ge=1)

    def run(self, problem: Problem) -> None:
        gen = self.generator(problem.device)
        best = problem.initial()
        sigma, shape = problem.step_parts(self.sigma)
        while True:
            noise = torch.randn(self.batch, problem.dim, generator=gen, device=problem.device,
                                dtype=best.dtype)
            if shape is not None:
                noise = noise * shape
            candidates = torch.cat([best[None], best + sigma * noise])
            values = problem.loss(candidates, problem.new_key()).nan_to_num(nan=float("inf"))
            best = candidates[int(torch.argmin(values))].clone()
            problem.report(best)


class Adam(Optimizer):
    """Adam on the task's autodiff gradient: the first-order reference."""

    name = "adam"
    requires = frozenset({"grad"})
    lr = Param(0.05, "learning rate (Adam's step per coordinate)", tune=(1e-4, 0.5), log=True,
               gt=0, relative=True)

    def run(self, problem: Problem) -> None:
        theta = torch.nn.Parameter(problem.initial())
        lr, shape = problem.step_parts(self.lr)
        opt = torch.optim.Adam([theta], lr=lr)
        while True:
            _, grad = problem.grad(theta.detach()[None])
            theta.grad = grad[0]
            if shape is None:
                opt.step()
            else:  # lr_i = lr·shape_i: torch's step at lr, stretched per coordinate
                before = theta.detach().clone()
                opt.step()
                with torch.no_grad():
                    theta.copy_(before.add_((theta - before).mul_(shape)))
            problem.report(theta.detach())


@hookimpl
def zgbench_optimizers():
    return [RandomSearch, Adam]
