"""The two contracts a plugin implements: :class:`Task` and :class:`Optimizer`.

Modelled on benchopt's Objective/Solver split: a task owns the black box and how to judge a
result; an optimizer owns the search and sees the task only through a metered
:class:`~zgbench.problem.Problem`. Both declare their hyper-parameters with
:class:`~zgbench.params.Param` and are built from keyword arguments, so a spec string such as
``sphere[dim=16]`` or a TOML table describes an instance completely.

Capabilities are plain words. A task lists what it ``provides`` beyond ``loss`` (``grad``,
``residual``, ``layers``, ...); an optimizer lists what it ``requires``. The harness runs only
pairs with ``requires <= provides``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zgbench.budget import Budget
from zgbench.errors import MissingExtra
from zgbench.params import Param, declared, resolve

if TYPE_CHECKING:
    from zgbench.problem import Problem

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


class Component:
    """What tasks and optimizers share: a name, parameters, a description, optional needs."""

    #: Unique name used in specs, e.g. ``"sphere"``. Lower case, digits and dashes.
    name: ClassVar[str] = ""
    #: Python modules this component imports lazily, and the extra that installs them.
    needs: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: The command that installs ``needs``, for a plugin's own package (e.g.
    #: ``"pip install 'my-plugin[fast]'"``); default: zgbench's ``extra``.
    install: ClassVar[str | None] = None
    kind: ClassVar[str] = "component"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = resolve(type(self), params, f"{self.kind} {self.name!r}")
        for key, value in self.params.items():
            setattr(self, key, value)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Validate a full set of coerced parameter values before anything runs.

        Override to check what a type cannot express (ranges, combinations, names looked up
        in a library); raise :class:`~zgbench.errors.UsageError` with the fix. Called when a
        spec is resolved, so bad input exits with status 2 instead of failing a run.
        """

    @classmethod
    def declared_params(cls) -> dict[str, Param]:
        return declared(cls)

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring: ``zgbench list`` shows it."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def missing_dependency(cls) -> str | None:
        """A message naming the extra to install if a needed module is absent, else ``None``."""
        missing = [m for m in cls.needs if _absent(m)]
        if not missing:
            return None
        modules = f"missing module{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        what = "modules that are not installed" if cls.install else f"the extra {cls.extra or 'all'}"
        return f"{cls.kind} {cls.name!r} needs {what} ({modules}): {cls.install_command()}"

    @classmethod
    def install_command(cls) -> str:
        """How to install what :attr:`needs` lists: :attr:`install`, else zgbench's extra."""
        return cls.install or f"pip install 'zgbench[{cls.extra or 'all'}]'"

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`MissingExtra` if an optional dependency is not installed."""
        message = cls.missing_dependency()
        if message:
            raise MissingExtra(message)


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
        """Optional: write pictures of ``theta``'s result under ``directory``; return paths."""
        return []


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


#: Attributes the constructors set on every instance (beside the class attributes).
_INSTANCE_ATTRS = ("seed", "device", "dtype", "params")


def _absent(module: str) -> bool:
    """Whether ``module`` cannot be imported (``a.b`` with no ``a`` included)."""
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def validate_class(obj: object, base: type[Component]) -> str | None:
    """Why ``obj`` is not a valid ``base`` subclass, or ``None`` if it is."""
    import re

    if not isinstance(obj, type):
        return f"returned {obj!r}, which is not a class"
    if not issubclass(obj, base):
        return f"{obj.__qualname__} is not a subclass of zgbench.{base.__name__}"
    if not isinstance(obj.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", obj.name):
        return (f"{obj.__qualname__} has no valid name {obj.name!r}: use lower-case letters, "
                "digits, '-', '.' and '_', starting with a letter or digit (e.g. 'my-task')")
    for param in declared(obj):  # set as attributes: one named like zgbench's would replace it
        if param in _INSTANCE_ATTRS or (param != "dim" and hasattr(base, param)):
            return (f"{obj.__qualname__}: parameter {param!r} would replace zgbench's own "
                    f"{base.__name__}.{param}; give it another name")
    if base is Task:
        for method in ("initial", "loss", "evaluate"):
            if getattr(obj, method) is getattr(Task, method):
                return f"task {obj.name!r} does not implement {method}()"
        if obj.primary_metric not in obj.metrics:
            return (
                f"task {obj.name!r}: primary_metric {obj.primary_metric!r} is not one of its "
                f"metrics {sorted(obj.metrics)}"
            )
        bad = {m: d for m, d in obj.metrics.items() if d not in ("min", "max")}
        if bad:
            return f"task {obj.name!r}: metric directions must be 'min' or 'max', got {bad}"
    if base is Optimizer and obj.run is Optimizer.run:
        return f"optimizer {obj.name!r} does not implement run()"
    return None
