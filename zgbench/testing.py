"""Helpers for testing plugins: run one pair in-process and get its record.

Plugin authors use these in their own test suites::

    from zgbench.testing import run_once
    record = run_once("sphere[dim=4]", "my-optimizer", evals=500)
    assert record["status"] == "ok"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zgbench import plugins, specs
from zgbench.budget import Budget
from zgbench.harness import RunSpec, execute
from zgbench.plugins import Registry


def run_once(task: str, optimizer: str, *, evals: int | None = None, grads: int | None = None,
             steps: int | None = None, seconds: float | None = None, seed: int = 0,
             device: str = "cpu", registry: Registry | None = None,
             results: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``task`` × ``optimizer`` once (repetition ``seed``) and return the record's JSON
    object (:meth:`zgbench.record.Record.as_dict`, as the store holds it).

    The budget is the task's default with the given limits replaced; ``timeout`` is the
    run's hard wall-clock limit (default: as ``zgbench run``). ``record["audit"]`` says what
    the harness counted; a status ``violated`` names what the optimizer did wrong.
    """
    registry = registry or plugins.load()
    task_spec = specs.resolve_task(registry, task)
    opt_spec = specs.resolve_optimizer(registry, optimizer)
    budget = registry.task(task_spec.name).cls.default_budget.override(
        evals=evals, grads=grads, steps=steps, seconds=seconds)
    return execute(RunSpec(task_spec, opt_spec, seed, budget, device), registry, results,
                   timeout=timeout).as_dict()


def make_problem(task: str, *, budget: Budget | None = None, seed: int = 0, device: str = "cpu",
                 registry: Registry | None = None):
    """A started metered :class:`~zgbench.problem.Problem` on a task instance, for unit tests
    of optimizers and estimators."""
    from zgbench.problem import Problem

    registry = registry or plugins.load()
    spec = specs.resolve_task(registry, task)
    cls = registry.task(spec.name).cls
    instance = cls(device=device, seed=seed, **spec.kwargs)
    problem = Problem(instance, budget or cls.default_budget, seed=seed)
    problem.start()
    return problem
