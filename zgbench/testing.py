"""Helpers for testing plugins: run one pair in-process and get its record.

Plugin authors use these in their own test suites::

    from zgbench.testing import run_once
    record = run_once("sphere[dim=4]", "my-optimizer", evals=500)
    assert record["status"] == "ok"
"""

from __future__ import annotations

import math
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


def check_anchors(task) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Assert a task instance's anchors (issue 22): :meth:`~zgbench.Task.sanity` names at
    least the start, every sanity output and the reference have the task's metrics, and the
    primary metric scores every sanity output strictly worse than the reference. Returns
    ``(sanity, reference)`` for further checks. For a plugin's own tests too::

        from zgbench.testing import check_anchors
        check_anchors(MyTask(seed=0, size=4))
    """
    import torch

    metric = task.primary_metric
    sign = 1.0 if task.metrics[metric] == "min" else -1.0
    with torch.no_grad():
        sanity = task.sanity()
    with torch.enable_grad():
        reference = task.reference()
    assert reference is not None, f"{task.name}: reference() is None"
    assert set(reference) == set(task.metrics), f"{task.name}: reference keys {set(reference)}"
    best = sign * float(reference[metric])
    assert math.isfinite(best), f"{task.name}: reference {metric} = {reference[metric]}"
    assert "start" in sanity, f"{task.name}: sanity() names no 'start' ({list(sanity)})"
    for name, metrics in sanity.items():
        assert set(metrics) == set(task.metrics), f"{task.name}: sanity {name!r} keys"
        value = sign * float(metrics[metric])
        assert value > best, (f"{task.name}: the trivial output {name!r} scores {metric} = "
                              f"{metrics[metric]:.6g}, not worse than the reference's "
                              f"{reference[metric]:.6g}")
    return sanity, reference


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
