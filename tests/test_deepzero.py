"""DeepZero estimators (cge with feature reuse, sparse-cge) and MeZO on the classify task."""

from __future__ import annotations

import pytest
import torch

from zgbench import Step
from zgbench.budget import Budget, BudgetExhausted
from zgbench.errors import UsageError
from zgbench.optimizers.deepzero import MeZO, SparseCGE
from zgbench.optimizers.estimators import CGE
from zgbench.testing import make_problem, run_once
from zgbench.seeding import derive_seed

pytest.importorskip("sklearn")



CNN = "classify[batch=32]"
SMALL = "classify[width=4,batch=32]"  # the small CNN at 666 parameters: quick training runs


def problem(task=CNN, evals=10**7, seed=0):
    return make_problem(task, budget=Budget(evals=evals, grads=100), seed=seed)


#: DeepZero's μ, absolute: the tests that compare two ways to one estimate bound their
#: difference by the loss's float32 rounding divided by μ, so μ is fixed here (the default is
#: relative to the task's scale: 5e-4 to 1e-3 on these nets, 5-10x more rounding in the ratio).
MU = Step(5e-3, absolute=True)


def cge_gradient(prob, theta, key, **params):
    params.setdefault("mu", MU)
    optimizer = CGE(**params)
    optimizer.prepare(prob)
    return optimizer.estimate_gradient(prob, theta, key)


def test_cge_equals_autograd_within_order_mu():
    prob = problem()
    theta = prob.initial()
    _, grad = prob.grad(theta[None], 7)
    # reuse=True: the same numbers as plain CGE (tested below), only faster
    errors = {mu: float((cge_gradient(prob, theta, 7, mu=Step(mu, absolute=True), reuse=True)
                         - grad[0]).norm() / grad[0].norm()) for mu in (2e-2, 5e-3, 1e-3)}
    assert errors[5e-3] < 0.05  # DeepZero's μ (absolute): a few per cent of |∇ℓ|
    assert errors[2e-2] > errors[5e-3] > errors[1e-3]  # and it shrinks with μ
    central = cge_gradient(prob, theta, 7, mu=Step(5e-3, absolute=True), scheme="central",
                           reuse=True)
    assert float((central - grad[0]).norm() / grad[0].norm()) < errors[5e-3]


def test_feature_reuse_equals_plain_cge_and_charges_the_same():
    plain_problem, reuse_problem = problem(), problem()
    theta = plain_problem.initial()
    plain = cge_gradient(plain_problem, theta, 3)
    reused = cge_gradient(reuse_problem, theta, 3, reuse=True, batch=300)
    # rounding of the loss (float32, ~2.3) divided by μ
    tolerance = 16 * torch.finfo(torch.float32).eps * 2.3 / 5e-3
    assert torch.allclose(reused, plain, atol=tolerance, rtol=0)
    assert reuse_problem.evals == plain_problem.evals == theta.numel() + 1


def test_feature_reuse_on_resnet_blocks():
    """Restarts inside residual blocks (tuple inputs), on a sample of coordinates."""
    prob = problem("classify[model=resnet20,batch=8]")
    theta = prob.initial()
    coords = torch.randperm(theta.numel(), generator=torch.Generator().manual_seed(0))[:60]
    results = []
    for reuse in (False, True):
        optimizer = CGE(reuse=reuse, batch=16)
        optimizer.prepare(prob)
        results.append(optimizer.coordinate_gradient(prob, theta, 5, coords))
    assert torch.allclose(results[0], results[1], atol=1e-3, rtol=0)
    assert results[0][coords].abs().sum() > 0


def test_reuse_without_layers_is_n_a_not_a_failure():
    """An incompatibility of one setting (skip), not a failure: not run, not retried."""
    record = run_once("sphere[dim=4]", "cge[reuse=true]", evals=50)
    assert record["status"] == "n/a" and "provides 'layers'" in record["error"]
    assert "use reuse=false" in record["error"] and record["final"] is None


def test_mezo_perturb_and_restore():
    prob = problem()
    theta = prob.initial()
    before = theta.clone()
    mezo = MeZO(chunk=500)  # several chunks: z is redrawn chunk by chunk
    mezo.prepare(prob)
    slope = mezo.projected_gradient(prob, theta, key=2, seed=1234)
    assert torch.allclose(theta, before, atol=1e-6, rtol=0)
    # the slope is the directional derivative along shape ⊙ z (the task's scale, mean 1),
    # which the same seed regenerates
    z = torch.zeros_like(theta)
    mezo.perturb(z, 1234, 1.0, mezo._shape)
    _, grad = prob.grad(before[None], 2)
    assert slope == pytest.approx(float(z @ grad[0]), rel=0.05)
    # restored as well when the budget runs out between the two evaluations
    short = problem(evals=1)
    mezo.prepare(short)
    with pytest.raises(BudgetExhausted):
        mezo.projected_gradient(short, theta, key=2, seed=99)
    assert torch.allclose(theta, before, atol=1e-6, rtol=0)


def test_mezo_keeps_no_perturbation():
    """The seed trick: nothing of size d survives a step except θ itself."""
    mezo = MeZO(chunk=64)
    theta = torch.zeros(1000)
    mezo.perturb(theta, 5, 1.0)
    again = torch.zeros(1000)
    mezo.perturb(again, 5, 1.0)
    assert torch.equal(theta, again) and theta.std() > 0.5
    assert not hasattr(mezo, "z") and all(not isinstance(v, torch.Tensor)
                                          for v in vars(mezo).values())


@pytest.mark.parametrize("optimizer, evals", [
    ("cge[reuse=true]", 20_000),
    ("rge[lr=0.005,q=20]", 6_000),
    ("mezo[lr=0.003]", 3_000),
])
def test_raises_accuracy_above_chance(optimizer, evals):
    record = run_once(SMALL, optimizer, evals=evals)
    assert record["status"] == "ok", record["error"]
    start, end = (record["trajectory"][0]["metrics"]["accuracy"],
                  record["final"]["metrics"]["accuracy"])
    assert end > 0.3 and end > start + 0.1  # chance is 0.1


def test_sparse_cge_masks_follow_grasp_ratios():
    # ZO-GraSP (2 x 33 evaluations), then 12 planned steps of 133 coordinates + 1
    prob = problem(SMALL, evals=2 * 33 + 134 * 12)
    sparse = SparseCGE(sparsity=0.8, masks=4, grasp_q=32, reuse=True, mu=MU)
    sparse.prepare(prob)
    slices = prob.call("layers")
    assert sum(sparse._keep) == round(0.2 * prob.dim)
    assert prob.evals == 2 * (32 + 1)  # two ZO-GraSP estimates
    assert sparse._every == 12 // 4
    mask = sparse.draw_mask(prob.device)
    for (_, lo, hi), keep in zip(slices, sparse._keep):
        assert int(((mask >= lo) & (mask < hi)).sum()) == keep
    theta = prob.initial()
    evals = prob.evals
    grad = sparse.estimate_gradient(prob, theta, 8)
    assert prob.evals - evals == mask.numel() + 1
    off = torch.ones(prob.dim, dtype=torch.bool)
    off[sparse._coords] = False
    assert grad[off].abs().sum() == 0  # the mask sparsifies the estimate, not θ
    full = cge_gradient(prob, theta, 8)
    assert torch.allclose(grad[sparse._coords], full[sparse._coords], atol=1e-3)
    # a new mask every planned_steps // masks steps
    first = sparse._coords
    for _ in range(sparse._every - 1):
        sparse.estimate_gradient(prob, theta, 8)
    assert sparse._coords is first
    sparse.estimate_gradient(prob, theta, 8)
    assert not torch.equal(sparse._coords, first)


def test_sparse_cge_trains_and_is_deterministic():
    runs = [run_once(SMALL, "sparse-cge[reuse=true,grasp_q=64]", evals=3000) for _ in range(2)]
    assert runs[0]["status"] == "ok", runs[0]["error"]
    assert runs[0]["final"]["metrics"] == runs[1]["final"]["metrics"]
    assert runs[0]["final"]["metrics"]["accuracy"] > runs[0]["trajectory"][0]["metrics"]["accuracy"]


def test_mezo_is_deterministic():
    a, b = (run_once(SMALL, "mezo", evals=200, seed=1) for _ in range(2))
    assert a["final"]["metrics"] == b["final"]["metrics"]
    assert a["final"]["best_loss"] == b["final"]["best_loss"]


def test_bad_parameters(registry):
    from zgbench import specs

    with pytest.raises(UsageError, match="sparsity"):
        specs.resolve_optimizer(registry, "sparse-cge[sparsity=1.0]")
    with pytest.raises(UsageError, match="eps.*> 0"):
        specs.resolve_optimizer(registry, "mezo[eps=0]")


def test_reuse_is_an_execution_option_paired_with_plain_cge():
    """reuse changes how the numbers are computed, not which: the two runs are distinct
    (identity) but draw the same keys (seeds), so they end with the same numbers up to
    floating-point reassociation (bitwise on AVX-512; with oneDNN limited to AVX2, as on an
    AVX2-only AMD EPYC, the test loss differs by 4.7e-7 relative after these 3 steps)."""
    spec = "classify[width=4,batch=32]"
    plain, reused = run_once(spec, "cge", steps=3), run_once(spec, "cge[reuse=true]", steps=3)
    assert plain["run_id"] != reused["run_id"] and plain["seeds"] == reused["seeds"]
    assert reused["final"]["metrics"] == pytest.approx(plain["final"]["metrics"], rel=1e-5)
    assert plain["final"]["evals"] == reused["final"]["evals"]
    other = run_once(spec, "cge[mu=0.01]", steps=3)  # a numeric parameter does change them
    assert other["seeds"]["problem"] != plain["seeds"]["problem"]
    # and the default setting keeps the seeds it had before reuse became an execution option
    assert plain["seeds"]["problem"] == derive_seed(
        "keys", plain["task"]["canonical"], plain["optimizer"]["canonical"], 0)
