"""The task contract: a black-box objective and how to judge a result.

Modelled on benchopt's Objective: a task owns the black box (batched ``loss``), the held-out
``evaluate`` and the starting point; optimizers see it only through a metered
:class:`~zgbench.problem.Problem`, which is why this module must not import the problem (the
problem imports it).

Capabilities are plain words: a task lists what it ``provides`` beyond ``loss`` (``grad``,
``residual``, ``layers``, ...), an optimizer what it ``requires``; the harness runs only pairs
with ``requires <= provides``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from zgbench.budget import Budget
from zgbench.component import Component

#: Capabilities the core knows about. Plugins may use other words; these are documented.
CAPABILITIES = {
    "grad": "task.grad(thetas, key) -> (loss[B], grad[B, d]): autodiff gradient of the loss",
    "residual": "task.residual(theta[d], key, detach=(False,)) -> .lhs[N, c] and .rhs (one "
                "[N, c] Monte Carlo estimate of the fixed-point equation's right side per "
                "entry of detach, each from independent samples; True = its network queries "
                "run under no_grad, False = graph to theta; give theta requires_grad) and "
                ".weight(eps) = 1 / (sg(lhs)^2 + eps); optimizers charge one gradient "
                "evaluation per call",
    "layers": "task.layers() -> (LayerSlice(name, start, stop), ...), the network's layers "
              "in forward order, their slices tiling [0, d); task.layers(theta[1, d], key) -> "
              "(loss[1], trace) caches every layer's input at theta (charge 1 evaluation); "
              "task.layers(thetas[B, d], key, start=l, inputs=trace) -> loss[B] restarts the "
              "forward pass at layer l for rows equal to the traced theta before layer l, "
              "equal to loss(thetas, key) to rounding (charge B evaluations)",
    "pairs": "task.pairs(thetas, key) -> (loss[B], grad[B, d]): autodiff loss and gradient of "
             "a supervised one-step surrogate on pre-computed (coarse step, reference) pairs "
             "picked by key, with no solver in the loop (the NON baseline of "
             "solver-in-the-loop training); optimizers charge one gradient evaluation per row",
}


class Task(Component):
    """A black-box objective: batched ``loss``, held-out ``evaluate``, a starting point.

    Subclasses set ``name``, ``provides``, ``metrics`` and ``primary_metric``, declare
    :class:`Param` attributes, and override :meth:`setup`, :meth:`initial`, :meth:`loss` and
    :meth:`evaluate`. Everything random in the task instance (targets, data, initial point)
    must come from ``self.seed``; everything random in one loss call from its ``key``.
    """

    kind: ClassVar[str] = "task"
    #: Capabilities beyond ``loss``: see :data:`CAPABILITIES`.
    provides: ClassVar[frozenset[str]] = frozenset()
    #: Held-out metrics ``evaluate`` returns, each ``"min"`` or ``"max"`` (better direction).
    metrics: ClassVar[dict[str, str]] = {}
    #: The metric leaderboards rank by.
    primary_metric: ClassVar[str] = ""
    #: The budget a run gets unless the suite or the command line says otherwise.
    default_budget: ClassVar[Budget] = Budget(evals=1000)
    #: The family of tasks it belongs to, for the family sub-boards (synthetic, graphics,
    #: learning, radiosity, pde, or a plugin's own word); ``other`` unless declared.
    family: ClassVar[str] = "other"
    #: TEMP scaffolding of the scale API: per-coordinate length of a useful exploratory
    #: step (a float or a [d] tensor; set it in setup() to override).
    scale: Any = 1.0

    #: Length of the parameter vector; set it in :meth:`setup` (or declare it as a Param).
    dim: int

    def __init__(self, *, device: str | torch.device = "cpu", seed: int = 0, **params: Any):
        super().__init__(**params)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.dtype = torch.float32
        self.setup()

    def setup(self) -> None:
        """Build targets, data and models. Called once from ``__init__``."""

    def generator(self, key: int | None = None) -> torch.Generator:
        """A generator on the task's device seeded by the task seed, or by ``key`` if given."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed((self.seed if key is None else int(key)) % (2**63))
        return gen

    def initial(self) -> torch.Tensor:
        """The starting parameter vector θ₀, shape ``[dim]``, on the task's device."""
        raise NotImplementedError

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        """The black-box objective for ``B`` parameter vectors ``[B, dim]``: returns ``[B]``.

        ``key`` fixes all randomness of the call (minibatch, Monte Carlo samples): equal keys
        mean common random numbers across candidates and calls.
        """
        raise NotImplementedError

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        """Held-out quality of one parameter vector: every metric in :attr:`metrics`."""
        raise NotImplementedError

    def artifacts(self, theta: torch.Tensor, directory: str) -> list[str]:
        """Optional: write pictures of ``theta``'s result under ``directory``; return paths.

        A picture named ``reference.*`` is the target this instance is fitted to (the same for
        every optimizer at one seed): the report shows it once per seed, above that seed's
        runs, and ``zgbench show`` shows the others. The harness stores θ beside them."""
        return []
