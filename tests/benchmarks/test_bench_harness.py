"""Harness overhead: a metered loss call vs the task's own loss, sphere[dim=1000], B = 64.

Run with ``pytest tests/benchmarks/test_bench_harness.py --benchmark-enable``; the overhead is
the difference of the two means (see the issue note for figures).
"""

import pytest
import torch

from zgbench.budget import Budget
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Sphere


@pytest.fixture(scope="module")
def setup():
    task = Sphere(dim=1000, seed=0)
    thetas = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    return task, thetas


def test_task_loss(benchmark, setup):
    task, thetas = setup
    benchmark.group = "harness overhead sphere[dim=1000] B=64"
    benchmark(task.loss, thetas, 0)


def test_metered_loss(benchmark, setup):
    task, thetas = setup
    problem = Problem(task, Budget(evals=10**12), seed=0)
    problem.start()
    benchmark.group = "harness overhead sphere[dim=1000] B=64"
    benchmark(problem.loss, thetas, 0)
