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

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from zgbench.budget import Budget
from zgbench.component import Component
from zgbench.errors import ContractError

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


@dataclass(frozen=True)
class Cost:
    """What one call of a capability costs, in the budget's units: ``evals`` loss and
    ``grads`` gradient evaluations, ``per`` parameter vector passed (``"row"``) or ``per``
    call (``"call"``).

    Why the task says it: the task knows what its capability computes (a traced forward
    pass, an autodiff gradient, a Monte Carlo residual), the optimizer calling it does not,
    and an optimizer that named its own charge could name zero. The rows of a call are the
    parameter vectors in its first argument (θ): ``[B, dim]`` is ``B`` rows, ``[dim]`` one,
    no θ (``None`` or absent: a call asking for metadata, such as ``layers()``) none; any
    other shape counts ``ceil(numel / dim)``, so no tensor is free."""

    evals: int = 0
    grads: int = 0
    per: Literal["row", "call"] = "row"

    def __post_init__(self) -> None:
        for name in ("evals", "grads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ContractError(f"Cost({name}={value!r}): a whole number >= 0")
        if self.per not in ("row", "call"):
            raise ContractError(f"Cost(per={self.per!r}): 'row' or 'call'")

    def bill(self, rows: int) -> tuple[int, int]:
        """``(evals, grads)`` charged for a call with ``rows`` parameter vectors."""
        times = rows if self.per == "row" else 1
        return self.evals * times, self.grads * times


#: The cost of a documented capability a task provides without declaring it in
#: :attr:`Task.costs` (what :data:`CAPABILITIES` says an optimizer charges), and of any other
#: undeclared capability: :data:`UNDECLARED_COST`.
CAPABILITY_COSTS: dict[str, Cost] = {
    "grad": Cost(grads=1),
    "residual": Cost(grads=1, per="call"),
    "layers": Cost(evals=1),
    "pairs": Cost(grads=1),
}
#: A capability no one declared costs one loss evaluation per parameter vector passed: it
#: sees θ, so it is at least as informative as a loss call, and a call without θ is free.
UNDECLARED_COST = Cost(evals=1)
#: The budget's units: a loss row is one evaluation and a ``grad`` row one gradient, by
#: definition, so a task cannot declare them otherwise.
UNIT_COSTS: dict[str, Cost] = {"loss": Cost(evals=1), "grad": Cost(grads=1)}


def capability_costs(task: type[Task] | Task) -> dict[str, Cost]:
    """Every provided capability's :class:`Cost`: the task's :attr:`Task.costs`, else the
    documented default (:data:`CAPABILITY_COSTS`), else :data:`UNDECLARED_COST`. A
    declaration that is not a Cost, names a capability the task does not provide, or
    redefines a unit (``loss``, ``grad``) breaks the task contract."""
    cls = task if isinstance(task, type) else type(task)
    declared = getattr(cls, "costs", None) or {}
    if not isinstance(declared, Mapping):
        raise ContractError(f"task {cls.name!r}: costs must map capability names to Cost, "
                            f"got {type(declared).__name__}")
    provides = frozenset(getattr(task, "provides", ()))
    for name, cost in declared.items():
        if not isinstance(cost, Cost):
            raise ContractError(f"task {cls.name!r}: costs[{name!r}] must be a Cost "
                                f"(e.g. Cost(evals=1)), got {cost!r}")
        if name not in provides:
            raise ContractError(f"task {cls.name!r}: costs[{name!r}] declares the cost of a "
                                f"capability it does not provide ({sorted(provides)})")
        if name in UNIT_COSTS and cost != UNIT_COSTS[name]:
            raise ContractError(f"task {cls.name!r}: {name!r} is the budget's unit and costs "
                                f"{UNIT_COSTS[name]}; remove costs[{name!r}]")
    return {name: declared.get(name) or CAPABILITY_COSTS.get(name, UNDECLARED_COST)
            for name in sorted(provides)}


def rows_of(value: Any, dim: int) -> int:
    """Parameter vectors in a capability's θ argument (see :class:`Cost`): containers count
    what they hold, anything else that is not ``None`` one."""
    if value is None:
        return 0
    if isinstance(value, torch.Tensor):
        return math.ceil(value.numel() / max(dim, 1))
    shape = getattr(value, "shape", None)  # a numpy array
    if isinstance(shape, tuple):
        return math.ceil(math.prod(shape) / max(dim, 1))
    if isinstance(value, (list, tuple)):
        return sum(rows_of(v, dim) for v in value)
    return 1


def theta_argument(method: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """The first argument of a call of ``method`` (a bound capability), by position or by
    its name, ``None`` if the call passes none. Arguments that do not fit the signature
    are the caller's fault: :class:`ContractError`."""
    if args:
        return args[0]
    if not kwargs:
        return None
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # no signature (a builtin): the first keyword's value
        return next(iter(kwargs.values()))
    if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                     inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     inspect.Parameter.KEYWORD_ONLY):
        return kwargs.get(params[0].name)
    return next(iter(kwargs.values()))  # (*args, **kwargs): the first keyword's value


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
    #: What each capability costs per call or per parameter vector (:class:`Cost`). The
    #: problem charges it whatever the optimizer asks (``problem.call(..., evals=...)`` can
    #: only raise the charge). Undeclared: :data:`CAPABILITY_COSTS` for the documented
    #: capabilities, else one evaluation per parameter vector (:data:`UNDECLARED_COST`).
    costs: ClassVar[Mapping[str, Cost]] = {}
    #: Held-out metrics ``evaluate`` returns, each ``"min"`` or ``"max"`` (better direction).
    metrics: ClassVar[dict[str, str]] = {}
    #: The metric leaderboards rank by.
    primary_metric: ClassVar[str] = ""
    #: The budget a run gets unless the suite or the command line says otherwise.
    default_budget: ClassVar[Budget] = Budget(evals=1000)
    #: The family of tasks it belongs to, for the family sub-boards (synthetic, graphics,
    #: learning, radiosity, pde, or a plugin's own word); ``other`` unless declared.
    family: ClassVar[str] = "other"
    #: The per-coordinate length of a useful exploratory step: a tenth of each coordinate's
    #: useful range, so that COCO's common search box [-5, 5]^d (the synthetic functions, on
    #: which the built-in defaults were set) has scale 1.0. A float, or a ``[dim]`` tensor set
    #: in :meth:`setup` (network weights: per layer). Optimizers take their step sizes as
    #: multiples of it (``Param(..., relative=True)``, ``Problem.step``); say in the
    #: docstring why the value fits the task.
    scale: float | torch.Tensor = 1.0
    #: How ``zgbench list`` summarises a scale set per instance in :meth:`setup` (``list``
    #: builds no task), e.g. ``"per layer: its init std"``; empty: the class's ``scale``.
    scale_note: ClassVar[str] = ""

    #: In words, what :meth:`reference` is (shown on boards next to its value), e.g.
    #: ``"Adam on grad, 300 steps"`` or ``"the known optimum"``; empty without a reference.
    reference_note: ClassVar[str] = ""

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

    def sanity(self) -> dict[str, dict[str, float]]:
        """Named trivial outputs -> the held-out metrics :meth:`evaluate` gives them.

        Why: a benchmark instance that an empty image, a constant class or the unchanged start
        can win measures its configuration, not its optimizers. A task names the trivial
        outputs a careless metric would reward ("start", "empty image", "constant class",
        ...); its primary metric must score every one of them worse than :meth:`reference`
        (the built-in tasks test that ordering). Keys are the same as :attr:`metrics`. The
        default names the start only. Computed once per task instance by the harness and
        stored in every run's record."""
        return {"start": self.evaluate(self.initial())}

    def reference(self) -> dict[str, float] | None:
        """The held-out metrics of this instance's reference solution, or ``None``.

        Why: with the start, the board's second anchor. A final value reads as "how far from
        the start towards what is reachable": where the task has a differentiable version,
        what a first-order method reaches (e.g. Adam on :meth:`grad` for a fixed number of
        steps), else the best known solution (e.g. the known optimum). Say what it is in
        :attr:`reference_note`. It may be expensive (seconds to a minute): the harness calls
        it once per task instance, outside every run's budget and clock, and caches it, so a
        task need not cache. It must be deterministic given the instance (use
        :meth:`generator`)."""
        return None
