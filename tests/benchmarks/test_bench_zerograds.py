"""zerograds: surrogate overhead per optimizer step, and its share of a run's wall time.

One step of the surrogate = k_θ = 3 θ updates through ∇h_φ(θ) plus k_φ = 3 Adam steps of the
surrogate on a batch of 2B = 20 samples: everything zerograds adds to the 20 loss evaluations
of a step. Measured with the automatic architecture at d = 10 (3 × 64, no encoding) and at
d = 1,000 and 35,152 (8 × 128 with 6 NeRF frequencies: 13·d inputs), and at d = 35,152 with the
3 frequencies the authors' code uses for their MLP task (7·d inputs).
Compare the per-step time with the task's loss time per batch (the goal: at d = 35,152 the
surrogate should not dominate when a loss batch costs more than 10 ms).

The second measurement runs zerograds on quick-suite tasks and reads the share of wall time
spent in the optimizer (surrogate and bookkeeping) from the records' trajectories.

    .venv/bin/pytest tests/benchmarks/test_bench_zerograds.py --benchmark-enable
"""

import pytest
import torch

from zgbench.budget import Budget
from zgbench.optimizers.zerograds import ZeroGrads
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Sphere
from zgbench.testing import run_once

DIMS = [10, 1_000, 35_152]
#: the automatic architecture at each d, and the paper's MLP-task setting (3 frequencies)
CASES = [(d, {}) for d in DIMS] + [(35_152, {"encodings": 3})]


def _surrogate_step_setup(dim, params=None):
    task = Sphere(dim=dim, seed=0)
    problem = Problem(task, Budget(evals=10**9), checkpoints=())
    opt = ZeroGrads(seed=0, **(params or {}))
    opt.prepare(problem)
    net, net_opt = opt.new_surrogate(problem)
    theta = torch.nn.Parameter(problem.initial())
    theta_opt = opt.make_step([theta])
    points, values = opt.sample(problem, theta.detach(), key=0)
    return opt, net, net_opt, theta, theta_opt, points, values


def _surrogate_step(opt, net, net_opt, theta, theta_opt, points, values):
    for _ in range(opt.k_theta):
        theta.grad = opt.surrogate_gradient(net, theta.detach())
        theta_opt.step()
    opt.fit(net, net_opt, points, values)


@pytest.mark.parametrize("dim,params", CASES, ids=["10", "1000", "35152", "35152-enc3"])
def test_surrogate_overhead_per_step(benchmark, dim, params):
    args = _surrogate_step_setup(dim, params)
    layers, width, encodings = args[0].architecture(dim)
    benchmark.group = "zerograds surrogate per step (k_theta=3, k_phi=3, 2B=20)"
    benchmark.extra_info.update(dim=dim, layers=layers, width=width, encodings=encodings,
                                parameters=sum(p.numel() for p in args[1].parameters()))
    # the warm-up round allocates the Adam state (skipped when benchmarks are disabled)
    benchmark.pedantic(_surrogate_step, args=args, rounds=2 if dim > 1000 else 10,
                       iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("dim", DIMS)
def test_sphere_loss_batch(benchmark, dim):
    """The cheapest task's loss for the same batch, for scale."""
    task = Sphere(dim=dim, seed=0)
    thetas = torch.randn(20, dim, generator=torch.Generator().manual_seed(0))
    benchmark.group = "zerograds surrogate per step (k_theta=3, k_phi=3, 2B=20)"
    benchmark(task.loss, thetas, 0)


@pytest.mark.parametrize("task", ["sphere[dim=8]", "step[dim=8]", "spline-toy"])
def test_optimizer_share_of_wall_time(benchmark, task):
    """Run zerograds for 2000 evaluations (100 steps) and record the optimizer's share."""
    benchmark.group = "zerograds run, 2000 evaluations"
    record = benchmark.pedantic(run_once, args=(task, "zerograds"), kwargs={"evals": 2000},
                                rounds=1, iterations=1)
    assert record["status"] == "ok", record["error"]
    final = record["final"]
    share = final["optimizer_seconds"] / max(final["seconds"], 1e-12)
    benchmark.extra_info.update(optimizer_seconds=final["optimizer_seconds"],
                                task_seconds=final["task_seconds"], optimizer_share=share,
                                steps=final["steps"])
    assert 0 <= share <= 1
