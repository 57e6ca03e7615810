"""zgbench: a plugin-based benchmark suite for optimizing non-differentiable pipelines.

Tasks and optimizers are plugins (pluggy hooks, entry-point group ``zgbench``); the harness
runs their cross product under a metered budget and writes records and leaderboards.

Everything a plugin needs is importable from here, and a plugin imports nothing else of
zgbench (the built-in plugins under ``zgbench/tasks`` and ``zgbench/optimizers`` included;
``tests/test_layering.py`` enforces it for them):

- the contracts: :class:`Task`, :class:`Optimizer`, :class:`Param`, :func:`hookimpl`;
  :class:`Step`, the value of a step-size Param (a multiple of ``Task.scale``, or absolute);
- what an optimizer meets: :class:`Problem`, :class:`Budget`, :class:`BudgetExhausted`;
- :class:`GradientEstimator`, the base of optimizers that estimate a gradient and step;
- errors: :class:`UsageError` (bad input, exit 2), :class:`MissingExtra` (an optional
  dependency is not installed), :class:`ContractError` (a plugin broke a contract);
- files: :func:`cache_dir` and :func:`cache_key` (the on-disk cache for expensive,
  deterministic task data) and :func:`atomic_write` (never a half-written file).
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

#: Where each public name lives. Imported on first use (PEP 562), so ``import zgbench`` (every
#: ``zgbench`` command starts so) costs no torch import: ``zgbench --help``, usage errors and
#: ``zgbench list`` stay fast, and ``from zgbench import Task`` in a plugin works as before.
_EXPORTS = {
    "Budget": ("zgbench.budget", "Budget"),
    "BudgetExhausted": ("zgbench.budget", "BudgetExhausted"),
    "cache_dir": ("zgbench.cache", "cache_dir"),
    "cache_key": ("zgbench.cache", "key"),
    "ContractError": ("zgbench.errors", "ContractError"),
    "MissingExtra": ("zgbench.errors", "MissingExtra"),
    "UsageError": ("zgbench.errors", "UsageError"),
    "EstimatesGradient": ("zgbench.estimator", "EstimatesGradient"),
    "GradientEstimator": ("zgbench.estimator", "GradientEstimator"),
    "hookimpl": ("zgbench.hookspecs", "hookimpl"),
    "Optimizer": ("zgbench.optimizer", "Optimizer"),
    "TaskInfo": ("zgbench.optimizer", "TaskInfo"),
    "Param": ("zgbench.params", "Param"),
    "Step": ("zgbench.params", "Step"),
    "Problem": ("zgbench.problem", "Problem"),
    "atomic_write": ("zgbench.store", "atomic_write"),
    "Task": ("zgbench.task", "Task"),
    "Cost": ("zgbench.task", "Cost"),
    # issue 26.6: what a plugin author missed, at the top level. ``WorstForNaN``: NaN/inf-safe
    # losses for rank-based libraries; ``zgbench.testing`` (run_once, make_problem,
    # check_anchors), a module (None: the module itself), which loads the harness.
    "WorstForNaN": ("zgbench.finite", "WorstForNaN"),
    "testing": ("zgbench.testing", None),
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from zgbench.budget import Budget, BudgetExhausted
    from zgbench.cache import cache_dir
    from zgbench.cache import key as cache_key
    from zgbench.errors import ContractError, MissingExtra, UsageError
    from zgbench.estimator import EstimatesGradient, GradientEstimator
    from zgbench.hookspecs import hookimpl
    from zgbench.optimizer import Optimizer, TaskInfo
    from zgbench.params import Param, Step
    from zgbench.problem import Problem
    from zgbench.store import atomic_write
    from zgbench.task import Cost, Task
    from zgbench.finite import WorstForNaN
    from zgbench import testing


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept (the next lookup is a
    plain attribute); anything else is an AttributeError as usual."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zgbench' has no attribute {name!r}")
    import importlib

    module, attr = _EXPORTS[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Budget",
    "BudgetExhausted",
    "ContractError",
    "Cost",
    "EstimatesGradient",
    "GradientEstimator",
    "MissingExtra",
    "Optimizer",
    "Param",
    "Problem",
    "Step",
    "Task",
    "TaskInfo",
    "UsageError",
    "atomic_write",
    "cache_dir",
    "cache_key",
    "hookimpl",
    "__version__",
]
__all__ += ["WorstForNaN", "testing"]
