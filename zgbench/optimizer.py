"""The optimizer contract: a search strategy that talks to a task only through a problem.

Modelled on benchopt's Solver: an optimizer's ``run`` gets a metered
:class:`~zgbench.problem.Problem` and never the task itself. It imports the problem (for
``run``'s signature); the problem does not import it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from zgbench.component import Component
from zgbench.problem import Problem


class Optimizer(Component):
    """A search strategy. Override :meth:`run`; talk to the task only through ``problem``.

    ``run`` loops until the problem raises :class:`~zgbench.budget.BudgetExhausted` (the
    harness catches it) or returns early when it has converged. Call ``problem.report(theta)``
    once per iteration with the current recommendation: it counts a step.
    """

    kind: ClassVar[str] = "optimizer"
    #: Capabilities the task must provide.
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, seed: int = 0, **params: Any) -> None:
        super().__init__(**params)
        self.seed = int(seed)

    def generator(self, device: str | torch.device) -> torch.Generator:
        """A generator on ``device`` seeded by the optimizer's seed."""
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed % (2**63))
        return gen

    def run(self, problem: Problem) -> None:
        raise NotImplementedError
