"""zgbench: a plugin-based benchmark suite for optimizing non-differentiable pipelines.

Tasks and optimizers are plugins (pluggy hooks, entry-point group ``zgbench``); the harness
runs their cross product under a metered budget and writes records and leaderboards.
The public contracts a plugin author needs are importable from here.
"""

__version__ = "0.1.0"

from zgbench.budget import Budget, BudgetExhausted
from zgbench.contracts import Optimizer, Task
from zgbench.errors import UsageError
from zgbench.hookspecs import hookimpl
from zgbench.params import Param
from zgbench.problem import Problem

__all__ = [
    "Budget",
    "BudgetExhausted",
    "Optimizer",
    "Param",
    "Problem",
    "Task",
    "UsageError",
    "hookimpl",
    "__version__",
]
