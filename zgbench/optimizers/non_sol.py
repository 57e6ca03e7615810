"""``non-sol``: the NON baseline of solver-in-the-loop training, no solver in the loop.

After Um et al. 2020, "Solver-in-the-Loop: Learning from Differentiable Physics to Interact
with Iterative PDE-Solvers" (NeurIPS), the NON variant that DeepZero (Chen et al., ICLR 2024)
compares against: the correction network is trained by plain supervised learning on
pre-computed one-step pairs (the coarse solver's step from a downsampled reference state, and
the next reference state), so it never sees the states its own corrections produce. The task
provides the pairs' loss and its autodiff gradient through the ``pairs`` capability (see
``zgbench.contracts.CAPABILITIES``); this optimizer takes Adam steps on it. Each call is
charged one gradient evaluation, as a step of the first-order ``adam`` baseline is.

Its lr stays an absolute number, not a multiple of the task's scale: it runs only on tasks
that provide ``pairs`` (``pde-sol``'s corrector), and it is the supervised recipe's lr for
that network (the solver-in-the-loop claim compares it with ``cge[step=adam]`` at one
absolute lr), not an exploratory step.
"""

from __future__ import annotations

import torch

from zgbench import Optimizer, Param, Problem, hookimpl


class NonSol(Optimizer):
    """NON (Um et al. 2020): Adam on the task's one-step supervised pairs, no solver in the loop."""

    name = "non-sol"
    requires = frozenset({"pairs"})
    lr = Param(0.01, "Adam learning rate", tune=(1e-4, 0.1), log=True, gt=0)

    def run(self, problem: Problem) -> None:
        theta = torch.nn.Parameter(problem.initial())
        opt = torch.optim.Adam([theta], lr=self.lr)
        while True:
            _, grad = problem.call("pairs", theta.detach()[None], problem.new_key(), grads=1)
            theta.grad = grad[0]
            opt.step()
            problem.report(theta.detach())


@hookimpl
def zgbench_optimizers():
    return [NonSol]
