"""pde-sol: time per loss evaluation, batched vs one vector per call (the quick instance).

Run with ``pytest tests/benchmarks/test_bench_pde.py --benchmark-enable``. One intra-op
thread (small tensors, shared CI cores). The quick instance: 16x16 coarse grid, 2 start
states x 2 steps per evaluation, 90 corrector weights. ``batched``: one ``loss`` call with
B vectors (candidates are a PhiFlow batch dimension, the corrector a grouped convolution);
``loop``: B calls with one vector each. Time per evaluation = mean / B. ``grad`` is one
first-order evaluation (PhiFlow's torch backend with autograd), ``pairs`` one NON step.
Traces are built in the fixture, so every figure is steady state.
"""

from __future__ import annotations

import pytest
import torch

from zgbench.tasks.pde_sol import _MEMO, PdeSol

pytest.importorskip("phi")
# PhiFlow / PhiML use APIs their own and torch's newer versions deprecate: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:phi")

B = 16


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZGBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        _MEMO.clear()
        task = PdeSol(seed=0)
        thetas = candidates(task)
        task.loss(thetas, key=1), task.loss(thetas[:1], key=1)  # trace both batch shapes
        yield task
    _MEMO.clear()
    torch.set_num_threads(threads)


def candidates(task: PdeSol) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return task.initial() + 0.05 * torch.randn(B, task.dim, generator=gen)


def test_loss_batched(benchmark, task):
    thetas = candidates(task)
    values = benchmark(task.loss, thetas, 3)
    assert values.shape == (B,)


def test_loss_loop(benchmark, task):
    thetas = candidates(task)
    values = benchmark(lambda: torch.cat([task.loss(t[None], 3) for t in thetas]))
    assert torch.allclose(values, task.loss(thetas, 3), rtol=1e-4)


def test_grad_one_vector(benchmark, task):
    values, grads = benchmark(task.grad, candidates(task)[:1], 3)
    assert grads.shape == (1, task.dim)


def test_pairs_one_vector(benchmark, task):
    values, grads = benchmark(task.pairs, candidates(task)[:1], 3)
    assert grads.shape == (1, task.dim)
