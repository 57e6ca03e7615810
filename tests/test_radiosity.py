"""The radiosity task (Mitsuba 3 + torch) and the semi-gradient family of optimizers.

Mitsuba's LLVM JIT is slow to start, so one small task instance per scene is built per module
and shared; the reference cache goes to a temporary folder.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mitsuba")

from zgbench.budget import Budget, BudgetExhausted  # noqa: E402
from zgbench.errors import UsageError  # noqa: E402
from zgbench.optimizers.semigradient import (  # noqa: E402
    DualBuffer, FullGradient, SemiGradient, Weighted)
from zgbench.problem import Problem  # noqa: E402
from zgbench.tasks._gridenc import GridEncoding  # noqa: E402

CBOX = dict(scene="cornell-box", batch=256, m=4, res=16, spp=4, ref_spp=256)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private cache folder, and one torch thread: on a shared 2-core machine OpenMP's
    spinning threads make small tensor ops 10x slower (restored afterwards)."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZGBENCH_CACHE", str(tmp_path_factory.mktemp("zgcache")))
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cbox(env):
    from zgbench.tasks.radiosity import Radiosity

    return Radiosity(seed=3, **CBOX)


@pytest.fixture(scope="module")
def furnace(env):
    from zgbench.tasks.radiosity import Radiosity

    return Radiosity(scene="furnace", batch=512, m=8, res=8, spp=1, ref_spp=64, seed=0)


def constant_theta(task, value: float) -> torch.Tensor:
    """Parameters whose network outputs ``value`` everywhere: last layer 0, its bias value."""
    theta = task.initial()
    params = task.net.unflatten(theta[None])
    last = task.net.layers - 1
    params[f"w{last}"].zero_()
    params[f"b{last}"].fill_(value)
    return theta


# --------------------------------------------------------------------- grid encoding
def test_grid_encoding_matches_a_naive_trilinear_hash_grid():
    enc = GridEncoding(levels=6, features=2, log2_table=10, base_res=2, max_res=40)
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(1))
    index, weight = enc.indices_and_weights(x)
    primes = (1, 2654435761, 805459861)
    assert 0 < enc.n_dense < enc.levels  # both kinds of level are exercised
    for level, res in enumerate(enc.res.tolist()):
        rows, offset = int(enc.rows[level]), int(enc.offsets[level])
        cell = torch.minimum((x.double() * res).floor().long(), torch.tensor(res - 1))
        frac = x.double() * res - cell
        for k, c in enumerate((a, b, z) for a in (0, 1) for b in (0, 1) for z in (0, 1)):
            v = cell + torch.tensor(c)
            if (res + 1) ** 3 <= 2**10:
                expect = v[:, 0] + (res + 1) * v[:, 1] + (res + 1) ** 2 * v[:, 2]
            else:
                expect = ((v[:, 0] * primes[0]) ^ (v[:, 1] * primes[1])
                          ^ (v[:, 2] * primes[2])) % rows
            w = torch.ones(200, dtype=torch.float64)
            for axis in range(3):
                w = w * (frac[:, axis] if c[axis] else 1 - frac[:, axis])
            assert torch.equal(index[:, level, k].long(), expect + offset)
            torch.testing.assert_close(weight[:, level, k].double(), w, atol=1e-5, rtol=0)


def test_grid_encoding_stacks_parameter_vectors():
    enc = GridEncoding(levels=4, features=2, log2_table=8, base_res=2, max_res=16)
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(2))
    tables = torch.randn(3, *enc.table.shape, generator=torch.Generator().manual_seed(3))
    index, weight = enc.indices_and_weights(x)
    together = enc.interpolate(tables, index, weight)
    for b in range(3):
        torch.testing.assert_close(together[b], enc.interpolate(tables[b:b + 1], index, weight)[0])


# ------------------------------------------------------------------------- residual
def test_residual_vanishes_for_the_exact_solution_of_a_furnace(furnace):
    """Closed sphere, emission 1, albedo ½: scattered radiance L − E = 1 everywhere."""
    exact = constant_theta(furnace, 1.0)
    res = furnace.residual(exact, key=7)
    assert torch.allclose(res.lhs, torch.ones_like(res.lhs))
    assert abs(float(res.rhs[0].mean()) - 1.0) < 0.01       # unbiased: no systematic gap
    good = float(furnace.loss(exact[None], key=7)[0])
    wrong = float(furnace.loss(constant_theta(furnace, 0.5)[None], key=7)[0])
    assert good < 0.02 * wrong
    # the camera sees E + L = 2 everywhere, as the path-traced reference does
    assert torch.allclose(furnace.image(exact), torch.full_like(furnace.reference_image, 2.0))
    assert furnace.evaluate(exact)["relmse"] < 5e-3


def test_semi_gradient_right_side_carries_no_gradient(cbox):
    theta = cbox.initial().requires_grad_(True)
    semi = cbox.residual(theta, key=11, detach=(True,))
    assert semi.lhs.requires_grad
    assert not semi.rhs[0].requires_grad and semi.rhs[0].grad_fn is None
    full = cbox.residual(theta, key=11, detach=(False,))
    assert full.rhs[0].requires_grad
    torch.testing.assert_close(semi.rhs[0], full.rhs[0].detach())
    # the semi-gradient is the full gradient's LHS term alone
    (g_semi,) = torch.autograd.grad(SemiGradient().surrogate(semi), theta)
    w = full.weight()
    lhs_term = 2 * (w * (full.lhs - full.rhs[0]).detach() * full.lhs).mean()
    (g_lhs,) = torch.autograd.grad(lhs_term, theta)
    torch.testing.assert_close(g_semi, g_lhs)


def test_dual_buffer_estimates_use_independent_samples(cbox):
    theta = cbox.initial()
    two = cbox.residual(theta, key=5, detach=(True, True))
    a, b = two.directions
    assert a.shape == b.shape == (CBOX["batch"], CBOX["m"], 3)
    same = (a - b).abs().amax(-1) < 1e-6
    assert not same.any()                                     # no shared incident sample
    assert not torch.allclose(two.rhs[0], two.rhs[1])
    # the first estimate does not depend on asking for a second one; equal keys repeat
    one = cbox.residual(theta, key=5, detach=(True,))
    torch.testing.assert_close(one.rhs[0], two.rhs[0])
    again = cbox.residual(theta, key=5, detach=(True, True))
    torch.testing.assert_close(again.rhs[1], two.rhs[1])


def test_loss_is_batched_and_grad_is_the_full_gradient(cbox, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    thetas = cbox.initial() + 0.05 * torch.randn(3, cbox.dim, generator=gen)
    values = cbox.loss(thetas, key=9)
    assert values.shape == (3,)
    for b in range(3):
        torch.testing.assert_close(values[b], cbox.loss(thetas[b:b + 1], key=9)[0])
    from zgbench.tasks import radiosity

    monkeypatch.setattr(radiosity, "_CHUNK", 3000)  # many small no-grad chunks: same values
    torch.testing.assert_close(cbox.loss(thetas, key=9), values)
    loss, grad = cbox.grad(thetas[:2], key=9)
    torch.testing.assert_close(loss, values[:2])
    theta = thetas[1].clone().requires_grad_(True)
    (expect,) = torch.autograd.grad(FullGradient().surrogate(cbox.residual(theta, key=9)), theta)
    torch.testing.assert_close(grad[1], expect, rtol=1e-4, atol=1e-7)


def test_weighted_interpolates_semi_gradient_and_dual_buffer(cbox):
    theta = cbox.initial().requires_grad_(True)
    res = cbox.residual(theta, key=4, detach=(True, False))

    def direction(opt):
        (g,) = torch.autograd.grad(opt.surrogate(res), theta, retain_graph=True)
        return g

    semi_on_a = cbox.residual(theta, key=4, detach=(True,))
    (g_semi,) = torch.autograd.grad(SemiGradient().surrogate(semi_on_a), theta)
    g_dual = direction(DualBuffer())
    torch.testing.assert_close(direction(Weighted(w=1.0)), g_dual)
    torch.testing.assert_close(direction(Weighted(w=0.0)), g_semi)
    torch.testing.assert_close(direction(Weighted(w=0.25)), 0.75 * g_semi + 0.25 * g_dual,
                               rtol=1e-4, atol=1e-7)
    assert Weighted(w=0.0).requested() == (True,)


# ------------------------------------------------------------------------- training
def test_short_run_renders_the_cornell_box_at_the_reference_exposure(cbox, tmp_path):
    problem = Problem(cbox, Budget(steps=60), seed=1)
    problem.start()
    with pytest.raises(BudgetExhausted):
        SemiGradient(lr=0.01, seed=1).run(problem)
    problem.finish()
    assert problem.grads == 60 and problem.steps == 60
    theta = problem.recommendation()
    image = cbox.image(theta)
    assert image.shape == cbox.reference_image.shape == (CBOX["res"], CBOX["res"], 3)
    ratio = image.mean((0, 1)) / cbox.reference_image.mean((0, 1))
    assert ((ratio > 0.75) & (ratio < 1.25)).all(), ratio     # same exposure per channel
    first, last = problem.trajectory[0]["metrics"], problem.trajectory[-1]["metrics"]
    assert last["relmse"] < 0.5 * first["relmse"]
    paths = cbox.artifacts(theta, str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["cache.png", "reference.png"]
    import mitsuba as mi
    import numpy as np

    shapes = [np.asarray(mi.Bitmap(p)).shape for p in paths]
    assert shapes == [(CBOX["res"], CBOX["res"], 3)] * 2


def test_same_seed_same_numbers(cbox):
    from zgbench.tasks.radiosity import Radiosity

    gen = lambda: cbox.generator()  # noqa: E731
    assert torch.equal(cbox.net.initial(gen(), cbox.device), cbox.initial())
    other = Radiosity(seed=4, **CBOX)  # the reference comes from the disk cache
    assert not torch.equal(other.initial(), cbox.initial())
    torch.testing.assert_close(other.reference_image, cbox.reference_image)
    theta = cbox.initial()
    r1, r2 = other.residual(theta, key=2), cbox.residual(theta, key=2)
    assert torch.equal(r1.lhs, r2.lhs) and torch.equal(r1.rhs[0], r2.rhs[0])


def test_points_do_not_depend_on_mitsubas_shape_order(env):
    """Mitsuba orders a loaded scene's shapes differently from load to load."""
    from zgbench.tasks import _mitsuba
    from zgbench.tasks._scenes import SCENES, Tracer

    mi = _mitsuba.load("cpu")
    u = torch.rand(64, 5, generator=torch.Generator().manual_seed(0))
    points = []
    for _ in range(4):
        tracer = Tracer(mi, mi.load_dict(SCENES["glossy"](mi, 8)), torch.device("cpu"))
        points.append(tracer.sample_points(u)[1].p)
    for p in points[1:]:
        assert torch.equal(p, points[0])


def test_through_the_harness(env, registry, tmp_path):
    from zgbench.testing import run_once

    spec = "radiosity[scene=cornell-box,batch=256,m=4,res=16,spp=4,ref_spp=256]"
    record = run_once(spec, "dual-buffer[lr=0.01]", steps=5, registry=registry, results=tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["final"]["grads"] == 5
    assert record["final"]["metrics"]["relmse"] is not None
    assert sorted(a.rsplit("/", 1)[-1] for a in record["artifacts"]) == ["cache.png",
                                                                           "reference.png"]
    again = run_once(spec, "dual-buffer[lr=0.01]", steps=5, registry=registry)
    assert again["final"]["metrics"] == record["final"]["metrics"]  # same seed, same numbers
    na = run_once("sphere[dim=4]", "semi-gradient", steps=5, registry=registry)
    assert na["status"] == "n/a"


def test_bad_input_names_the_fix(cbox, registry):
    from zgbench import specs

    with pytest.raises(UsageError, match="scene"):
        specs.resolve_task(registry, "radiosity[scene=kitchen]")
    with pytest.raises(UsageError, match="w must be in"):
        specs.resolve_optimizer(registry, "weighted[w=2]")
    with pytest.raises(UsageError, match="one parameter vector"):
        cbox.residual(cbox.initial()[None], key=0)


@pytest.mark.parametrize("scene", ["cornell-box", "hidden-light"])
def test_black_and_constant_radiance_score_worse_than_the_full_gradient_reference(env, scene):
    """Issue 22's ordering on two of the suite's scenes at test size (hidden-light: most of
    the scene is lit indirectly, where a constant radiance is furthest off)."""
    from zgbench.tasks.radiosity import Radiosity
    from zgbench.testing import check_anchors

    sanity, _ = check_anchors(Radiosity(seed=3, **{**CBOX, "scene": scene}))
    assert set(sanity) == {"start", "black", "constant radiance"}
