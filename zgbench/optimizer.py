"""The optimizer contract: a search strategy that talks to a task only through a problem.

Modelled on benchopt's Solver: an optimizer's ``run`` gets a metered
:class:`~zgbench.problem.Problem` and never the task itself. It imports the problem (for
``run``'s signature); the problem does not import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from zgbench.component import Component
from zgbench.errors import ContractError
from zgbench.problem import Problem


@dataclass(frozen=True)
class TaskInfo:
    """What an optimizer may know of a task before a run, to say it cannot run there: the
    task's name, its declared capabilities and the parameters of this instance (the task is
    not built: a skipped pair costs nothing)."""

    name: str
    provides: frozenset[str]
    params: Mapping[str, Any] = field(default_factory=dict)


class Optimizer(Component):
    """A search strategy. Override :meth:`run`; talk to the task only through ``problem``.

    ``run`` loops until the problem raises :class:`~zgbench.budget.BudgetExhausted` (the
    harness catches it) or returns early when it has converged. Call ``problem.report(theta)``
    once per iteration with the current recommendation: it counts a step.
    """

    kind: ClassVar[str] = "optimizer"
    #: Capabilities the task must provide.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: What the run's result is: ``"reported"`` (default) the last θ given to
    #: ``problem.report`` (else the best evaluated θ, else θ₀); ``"best-evaluated"`` the
    #: lowest-loss θ the problem evaluated, whatever was reported (for a library whose own
    #: recommendation is not a point it evaluated; on a noisy task the best of many noisy
    #: evaluations is optimistic, hence not the default).
    recommend: ClassVar[str] = "reported"

    def __init__(self, *, seed: int = 0, **params: Any) -> None:
        super().__init__(**params)
        self.seed = int(seed)

    def generator(self, device: str | torch.device) -> torch.Generator:
        """A generator on ``device`` seeded by the optimizer's seed."""
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed % (2**63))
        return gen

    def skip(self, task: TaskInfo) -> str | None:
        """Why this optimizer, with these parameters, cannot run on ``task``, or ``None``.

        The harness records a skipped pair as ``n/a`` with this reason: an incompatibility,
        neither run nor scored as a failure nor retried (benchopt's ``BaseSolver.skip``). The
        default checks :attr:`requires`; override for a requirement of one setting (e.g.
        ``cge[reuse=true]`` needs ``layers``) and return ``super().skip(task)`` otherwise."""
        missing = self.requires - task.provides
        if missing:
            return f"task {task.name!r} does not provide {sorted(missing)}"
        return None

    def run(self, problem: Problem) -> None:
        raise NotImplementedError


RECOMMEND = ("reported", "best-evaluated")


def recommends_best(optimizer: Optimizer) -> bool:
    """Whether ``optimizer`` asks for the best evaluated θ as its result (:attr:`Optimizer.recommend`)."""
    value = getattr(optimizer, "recommend", "reported")
    if value not in RECOMMEND:
        raise ContractError(f"{type(optimizer).__name__}.recommend must be one of "
                            f"{', '.join(map(repr, RECOMMEND))}, got {value!r}")
    return value == "best-evaluated"


def skip_reason(optimizer: Optimizer, task_cls: type, task_params: Mapping[str, Any]) -> str | None:
    """``optimizer.skip`` on the task class ``task_cls`` built with ``task_params``: the one
    place the harness, ``tune`` and ``gradcheck`` ask whether a pair can run at all."""
    info = TaskInfo(str(task_cls.name), frozenset(task_cls.provides), dict(task_params))
    reason = optimizer.skip(info)
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"{type(optimizer).__name__}.skip must return a reason (str) or None, "
                        f"got {reason!r}")
    return reason or None
