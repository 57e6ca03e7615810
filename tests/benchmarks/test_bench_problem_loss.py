"""Per-call cost of a metered ``problem.loss`` against the task's own ``loss`` on sphere,
d = 10 and 1,000, B = 1 and 64 (issue 24.2: every batch is copied into a plain tensor the
problem owns before the task sees it; this measures what that adds).

Run with ``pytest tests/benchmarks/test_bench_problem_loss.py --benchmark-enable
--benchmark-columns=mean,median``; the overhead of one call is the difference of the medians
of ``metered`` and ``task`` in a group.
"""

import pytest
import torch

from zgbench.budget import Budget
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Sphere

SHAPES = [(10, 1), (10, 64), (1000, 1), (1000, 64)]


@pytest.fixture(scope="module", params=SHAPES, ids=[f"d{d}-B{b}" for d, b in SHAPES])
def setup(request):
    dim, batch = request.param
    task = Sphere(dim=dim, seed=0)
    thetas = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0))
    return task, thetas, f"problem.loss sphere[dim={dim}] B={batch}"


def test_task(benchmark, setup):
    task, thetas, group = setup
    benchmark.group = group
    benchmark(task.loss, thetas, 0)


def test_metered(benchmark, setup):
    task, thetas, group = setup
    problem = Problem(task, Budget(evals=10**12), seed=0)
    problem.start()
    benchmark.group = group
    values = benchmark(problem.loss, thetas, 0)
    assert torch.equal(values, task.loss(thetas, 0))  # the same computation, in the same order
