"""DeepZero / MeZO measurements on the classify task (CPU, small minibatches).

Run with ``pytest tests/benchmarks/test_bench_deepzero.py --benchmark-enable``. Everything
runs on one intra-op thread (the workloads are small, and shared CI cores are oversubscribed).

- forward evaluations per second for B perturbed parameter vectors, one batched (vmapped)
  ``loss`` call vs a loop of single-vector calls: the small CNN on digits (B = 256, 64
  images) and ResNet-20 on CIFAR-sized images (B = 8, 16 images); evals/s = B / mean;
- one full CGE gradient of the small CNN, plain vs feature reuse (``cge[reuse=true]``), and
  a ResNet-20 CGE gradient on 64 coordinates drawn uniformly (so layers appear in proportion
  to their size: the ratio estimates the full-gradient speed-up);
- peak memory of ``mezo`` vs ``adam`` vs one forward pass (``inference``): each runs one step
  of ResNet-20 (16 images) in a fresh Python process; the figure is the rise of the
  process's peak resident set size (VmHWM in /proc/self/status, reset through
  /proc/self/clear_refs once the task is built, before any forward pass) over the resident
  size at that point. Linux only.

Images for ResNet-20 are random bytes written in the cifar-10-batches-py format (the cost of
a forward pass does not depend on the pixel values).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zgbench.budget import Budget
from zgbench.optimizers.estimators import CGE
from zgbench.problem import Problem
from zgbench.tasks.classify import Classify

pytest.importorskip("sklearn")




def write_cifar10(root: Path, per_batch: int = 64) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return folder


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def tasks(cifar):
    return {
        "cnn": (Classify(seed=0, batch=64), 256),
        "resnet20": (Classify(dataset="cifar10", data=str(cifar), model="resnet20", batch=16,
                              seed=0), 8),
    }


@pytest.mark.parametrize("model", ["cnn", "resnet20"])
@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_forward_evals(benchmark, tasks, model, mode):
    task, rows = tasks[model]
    gen = torch.Generator().manual_seed(0)
    thetas = task.initial() + 1e-3 * torch.randn(rows, task.dim, generator=gen)
    benchmark.group = f"forward {model}: {rows} perturbed vectors"
    benchmark.extra_info["evals_per_call"] = rows
    with torch.no_grad():
        if mode == "batched":
            values = benchmark(task.loss, thetas, 1)
        else:
            values = benchmark(lambda: torch.stack([task.loss(t[None], 1)[0] for t in thetas]))
    assert values.shape == (rows,)


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "reuse"])
def test_cge_gradient_cnn(benchmark, tasks, reuse):
    task, _ = tasks["cnn"]
    problem = Problem(task, Budget(evals=10**12), seed=0)
    problem.start()
    cge = CGE(reuse=reuse)
    cge.prepare(problem)
    theta = task.initial()
    benchmark.group = f"one full CGE gradient, small CNN (d={task.dim}, 64 images)"
    grad = benchmark(cge.estimate_gradient, problem, theta, 3)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "reuse"])
def test_cge_gradient_resnet20_sample(benchmark, cifar, reuse):
    task = Classify(dataset="cifar10", data=str(cifar), model="resnet20", batch=4, seed=0)
    problem = Problem(task, Budget(evals=10**12), seed=0)
    problem.start()
    cge = CGE(reuse=reuse, batch=64)
    cge.prepare(problem)
    coords = torch.randperm(task.dim, generator=torch.Generator().manual_seed(0))[:64]
    benchmark.group = "CGE on 64 uniform coordinates of ResNet-20 (4 images)"
    grad = benchmark.pedantic(cge.coordinate_gradient, (problem, task.initial(), 3, coords),
                              rounds=3, iterations=1)
    assert grad[coords].abs().sum() > 0


_MEMORY_SCRIPT = r"""
import json, re, sys
import torch
from zgbench.budget import Budget, BudgetExhausted
from zgbench.optimizers.baselines import Adam
from zgbench.optimizers.deepzero import MeZO
from zgbench.problem import Problem
from zgbench.tasks.classify import Classify

def status(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1))

folder, name = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
task = Classify(dataset="cifar10", data=folder, model="resnet20", batch=16, seed=0)

class Inference:  # the reference: one forward pass at θ0, nothing else
    def run(self, problem):
        problem.loss(problem.initial()[None])

optimizer = {"mezo": MeZO, "adam": Adam}[name](seed=0) if name != "inference" else Inference()
problem = Problem(task, Budget(steps=1, evals=10**9, grads=10**9), seed=0, checkpoints=())
# no problem.start(): its checkpoint would run the test set through the network first
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak resident set size to the current one
before = status("VmRSS")
try:
    optimizer.run(problem)
except BudgetExhausted:
    pass
print(json.dumps({"before_kb": before, "peak_kb": status("VmHWM"), "dim": task.dim}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("optimizer", ["inference", "mezo", "adam"])
def test_peak_memory(benchmark, cifar, optimizer):
    def measure():
        out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(cifar), optimizer],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    benchmark.group = "peak memory over the built task, ResNet-20, 16 images, one step"
    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    extra_mb = (result["peak_kb"] - result["before_kb"]) / 1024
    benchmark.extra_info.update(result, extra_mb=round(extra_mb, 1))
    theta_mb = result["dim"] * 4 / 2**20
    print(f"\n{optimizer}: peak memory rise {extra_mb:.1f} MB (θ is {theta_mb:.1f} MB)")
    assert result["peak_kb"] >= result["before_kb"]
