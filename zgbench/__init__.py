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

# ---- issue 26.6 (helper `edges`): what a plugin author missed, at the top level --------------
# ``WorstForNaN``: NaN/inf-safe losses for rank-based libraries; ``zgbench.testing``
# (run_once, make_problem, check_anchors), imported on first use: it loads the harness.
from zgbench.finite import WorstForNaN  # noqa: E402

__all__ += ["WorstForNaN", "testing"]


def __getattr__(name: str):
    if name == "testing":
        import importlib

        return importlib.import_module("zgbench.testing")
    raise AttributeError(f"module 'zgbench' has no attribute {name!r}")
