"""zerograds: the public code's algorithm, piece by piece, and the paper's reproductions.

Reproductions assert the direction of an effect with fixed seeds, never exact numbers.
"""

import math

import numpy as np
import pytest
import torch

from zgbench import Step as StepSize
from zgbench import plugins, specs
from zgbench.budget import Budget, BudgetExhausted
from zgbench.errors import UsageError
from zgbench.optimizers.zerograds import (
    HashedEncoder,
    Surrogate,
    ZeroGrads,
    doubling_encoding,
    encoding_into,
    positional_encoding,
)
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Sphere, Step
from zgbench.tasks.toys import KNOTS_X, KNOTS_Y, SplineToy
from zgbench.testing import make_problem, run_once




def _numbers(record):
    """A record's trajectory without wall-clock columns."""
    return [{k: v for k, v in c.items() if "seconds" not in k} for c in record["trajectory"]]


# ------------------------------------------------------------------------------ the toy
def test_spline_toy_matches_scipy_akima():
    interpolate = pytest.importorskip("scipy.interpolate")
    reference = interpolate.Akima1DInterpolator(np.array(KNOTS_X), np.array(KNOTS_Y))
    xs = np.linspace(-99.5, 99.5, 20_001)
    toy = SplineToy()
    assert np.allclose(toy.f(torch.tensor(xs)).numpy(), reference(xs), atol=1e-10)
    values = toy.loss(torch.tensor([[1.1], [4.0], [6.0]]), key=0)
    assert values[1] == 0 and values[2] == pytest.approx(1.0) and values[0] > 30


def test_spline_toy_distance_is_to_the_nearest_zero():
    """Both zeros of f are global minimisers: a point at either one scores distance 0 and loss
    0; between them, the distance is to the nearer; 1.1 is 2.9 from 4.0."""
    toy = SplineToy(seed=0)
    first, second = toy.minimisers
    assert first == 4.0 and second == pytest.approx(4.1163, abs=1e-4)
    assert abs(float(toy.f(torch.tensor([second], dtype=torch.float64))[0])) < 1e-10
    for zero in (first, second):
        metrics = toy.evaluate(torch.tensor([zero], dtype=torch.float64))
        assert metrics["distance"] == pytest.approx(0.0, abs=1e-12)
        assert metrics["loss"] == pytest.approx(0.0, abs=1e-18)
    assert toy.evaluate(torch.tensor([4.1]))["distance"] == pytest.approx(second - 4.1, abs=1e-6)
    assert toy.evaluate(torch.tensor([1.1]))["distance"] == pytest.approx(2.9)
    assert toy.evaluate(torch.tensor([6.0]))["distance"] == pytest.approx(6.0 - second)


def test_spline_toy_quantized_is_a_staircase():
    toy = SplineToy(quantize=0.5)
    x = torch.linspace(1.0, 3.0, 2001)[:, None]
    values = toy.loss(x, 0)
    assert len(torch.unique(values)) <= 6  # f ∈ [3.5, 6]: a few plateaus only


# ------------------------------------------------------------------------ building blocks
def test_positional_encoding_is_nerfs():
    x = torch.tensor([[0.3, -1.2]])
    out = positional_encoding(x, 3)
    expected = [x]
    for k in range(3):
        expected += [torch.sin(2.0**k * x), torch.cos(2.0**k * x)]
    assert torch.equal(out, torch.cat(expected, dim=-1))
    assert positional_encoding(x, 0) is x


def test_doubling_encoding_is_nerfs_up_to_rounding():
    """The double-angle recurrence against the direct form: its error doubles per level,
    at most a few 1e-6 at 2^5 in float32 (the direct form's is 4e-8), 1e-14 in float64."""
    gen = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        x = torch.randn(64, 500, generator=gen, dtype=torch.float64).to(dtype) * 30
        error = (doubling_encoding(x, 6) - positional_encoding(x, 6)).abs().max().item()
        assert error < tol
    assert doubling_encoding(x, 0) is not None and doubling_encoding(x, 0).shape == x.shape


@pytest.mark.parametrize("doubling", [False, True])
def test_encoding_into_is_bit_for_bit_the_functional_form(doubling):
    x = torch.randn(7, 33, generator=torch.Generator().manual_seed(1)) * 4
    out = torch.empty(7, 9, 33)
    encoding_into(x, 4, out, doubling=doubling)
    reference = doubling_encoding(x, 4) if doubling else positional_encoding(x, 4)
    assert torch.equal(out.view(7, -1), reference)


def test_automatic_architecture_low_and_high_dimensional():
    opt = ZeroGrads()
    assert opt.architecture(10) == (3, 64, 0)
    assert opt.architecture(35_152) == (8, 128, 6)
    net = Surrogate(5, 3, 64, 2, torch.Generator().manual_seed(0), torch.device("cpu"))
    sizes = [(layer.in_features, layer.out_features) for layer in net.layers]
    assert sizes == [(25, 64), (64, 64), (64, 64), (64, 1)]


def test_leaky_relu_after_every_layer_including_the_output():
    net = Surrogate(2, 1, 4, 0, torch.Generator().manual_seed(0), torch.device("cpu"))
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    h = x
    for layer in net.layers:
        h = torch.where(layer(h) > 0, layer(h), 0.01 * layer(h))
    assert torch.allclose(net(x), h.squeeze(-1))


class CountingSphere(Sphere):
    """The sphere, recording the batch size of every loss call."""

    def setup(self):
        super().setup()
        self.calls = []

    def loss(self, thetas, key):
        self.calls.append(thetas.shape[0])
        return super().loss(thetas, key)


@pytest.mark.parametrize("importance", [False, True])
def test_samples_are_antithetic_and_batched_in_one_call(importance):
    task = CountingSphere(dim=6, seed=0)
    problem = Problem(task, Budget(evals=10_000), checkpoints=())
    opt = ZeroGrads(seed=1, batch=5, importance=importance, smooth=False)
    opt.prepare(problem)
    theta = problem.initial()
    points, values = opt.sample(problem, theta, key=7)
    assert task.calls == [10] and problem.evals == 10
    eps = theta - points
    assert torch.allclose(eps[1::2], -eps[::2])
    rms = 0.33 * (math.sqrt(2) if importance else 1)  # the slope density has E τ² = 2σ²
    assert eps.pow(2).mean().sqrt().item() == pytest.approx(rms, rel=0.3)
    assert torch.allclose(values, Sphere(dim=6, seed=0).loss(points, 7))


def test_theta_steps_use_the_surrogate_before_it_sees_the_batch():
    """One step with k_θ = 1: θ moves by Adam's first step along ∇h of the *initial*
    surrogate, which proves the fit on this step's batch comes after the θ step."""
    problem = make_problem("sphere[dim=3]", budget=Budget(steps=1, evals=10_000))
    opt = ZeroGrads(seed=4, k_theta=1, lr=0.1)
    with pytest.raises(BudgetExhausted):
        opt.run(problem)
    fresh = ZeroGrads(seed=4)
    fresh.prepare(problem)
    net, _ = fresh.new_surrogate(problem)
    theta0 = problem.initial()
    g = ZeroGrads.surrogate_gradient(net, theta0)
    expected = theta0 - 0.1 * g / (g.abs() + 1e-8)  # Adam's first step: lr · sign(g)
    assert torch.allclose(problem.recommendation(), expected, atol=1e-5)


def test_fit_reduces_the_surrogate_error_on_its_batch():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=10_000))
    opt = ZeroGrads(seed=0, k_phi=200, lr_phi=1e-2)
    opt.prepare(problem)
    net, net_opt = opt.new_surrogate(problem)
    points, values = opt.sample(problem, problem.initial(), key=0)
    before = torch.nn.functional.mse_loss(net(points), values).item()
    opt.fit(net, net_opt, points, values)
    assert torch.nn.functional.mse_loss(net(points), values).item() < 0.05 * before


def test_non_finite_losses_are_left_out_of_the_fit():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=10_000))
    opt = ZeroGrads(seed=0)
    opt.prepare(problem)
    net, net_opt = opt.new_surrogate(problem)
    points, values = opt.sample(problem, problem.initial(), key=0)
    values[0], values[3] = float("nan"), float("inf")
    opt.fit(net, net_opt, points, values)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_fit_gradients_are_autograds():
    """The fit's own backward (the first layer's weight gradient into a kept buffer) gives
    autograd's gradients, for both encoders; a second call overwrites, not accumulates."""
    gen = torch.Generator().manual_seed(0)
    for encoder in ("dense", "hashed"):
        net = Surrogate(30, 2, 16, 3, torch.Generator().manual_seed(2), torch.device("cpu"),
                        encoder=encoder, hash_size=64)
        points, target = torch.randn(12, 30, generator=gen), torch.randn(12, generator=gen)
        loss = torch.nn.functional.mse_loss(net(points), target)
        expected = torch.autograd.grad(loss, list(net.parameters()))
        for _ in range(2):
            net.mse_backward(net.encode_batch(points), target)
        for p, g in zip(net.parameters(), expected):
            assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)


def test_dense_batch_encoding_is_the_public_encoding():
    net = Surrogate(40, 1, 8, 6, torch.Generator().manual_seed(0), torch.device("cpu"))
    x = torch.randn(5, 40, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net.encode_batch(x), positional_encoding(x, 6))


# ------------------------------------------------------------------ the hashed encoder
def _hashed(dim, frequencies, buckets, dtype=torch.float32, seed=0):
    return HashedEncoder(dim, frequencies, buckets, torch.Generator().manual_seed(seed),
                         torch.device("cpu"), dtype)


def _hashed_by_hand(enc, x):
    """The sketch written out feature by feature: feature type f of the coordinate at
    position p goes to bucket (offset of type f) + p mod w_f, with the sign s_p (odd
    features only) times the weight of its type's chunk p // w_f."""
    d = enc.dim
    position = torch.empty(d, dtype=torch.long)
    position[enc.order] = torch.arange(d)
    out = torch.zeros(x.shape[0], enc.out_features, dtype=x.dtype)
    offsets = [sum(enc.widths[:f]) for f in range(enc.types)]
    for f, width in enumerate(enc.widths):
        kind, level = ("x", 0) if f == 0 else (("sin", "cos")[(f - 1) % 2], (f - 1) // 2)
        for i in range(d):
            p = position[i].item()
            value = x[:, i] * 2.0**level
            feature = {"x": x[:, i], "sin": torch.sin(value), "cos": torch.cos(value)}[kind]
            sign = enc.signs[p] if kind != "cos" else 1.0
            weight = enc.chunk_weights[f][p // width]
            out[:, offsets[f] + p % width] += sign * weight * feature
    return out


def test_hashed_encoder_is_a_count_sketch_of_the_encoding():
    enc = _hashed(7, 2, 15, torch.float64)  # 35 features, 5 types of 5..1 buckets
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert enc.widths == [5, 4, 3, 2, 1] and enc.out_features == 15
    assert torch.allclose(enc(x), _hashed_by_hand(enc, x), atol=1e-12)
    assert torch.allclose(enc.batch(x), enc(x), atol=1e-12)
    assert sorted(enc.order.tolist()) == list(range(7))
    for weights, chunks in zip(enc.chunk_weights, enc.chunks):
        signs = weights * math.sqrt(chunks)
        assert torch.equal(signs.abs(), torch.ones_like(signs))
        assert abs(signs.sum().item()) <= 1  # balanced: the cos features are centred


def test_hashed_buckets_have_distinct_widths_within_the_size():
    enc = _hashed(35_152, 6, 4096)
    assert len(set(enc.widths)) == 13 and enc.out_features <= 4096
    assert enc.widths == sorted(enc.widths, reverse=True)  # the most buckets for x
    assert min(enc.widths) >= 300 and enc.chunks[0] == -(-35_152 // enc.widths[0])
    small = _hashed(10, 6, 4096)  # never more than a bucket per feature
    assert small.widths == [10] * 13 and small.chunks == [1] * 13


@pytest.mark.parametrize("dim,frequencies,buckets", [(7, 0, 4), (5, 2, 8), (11, 3, 16)])
def test_hashed_encoder_backward_passes_gradcheck(dim, frequencies, buckets):
    enc = _hashed(dim, frequencies, buckets, torch.float64)
    x = torch.randn(3, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.autograd.gradcheck(enc, (x.requires_grad_(True),))


def test_hashed_surrogate_gradient_matches_finite_differences_of_the_surrogate():
    """∇_θ h_φ(θ) (analytic, float32) against central differences of h_φ itself (float64
    copy of the same surrogate) along random directions, at a high-d point. The step is
    1e-6: at 1e-4 a difference can straddle a LeakyReLU kink (measured: 2.6% off at
    lr_φ 1e-4, exact to 5 digits at 1e-6)."""
    problem = make_problem("sphere[dim=3000]", budget=Budget(evals=10_000))
    opt = ZeroGrads(seed=0, encoder="hashed", hash_size=512)
    opt.prepare(problem)
    net, net_opt = opt.new_surrogate(problem)
    points, values = opt.sample(problem, problem.initial(), key=0)
    opt.fit(net, net_opt, points, values)  # a trained surrogate, not just the initial one
    theta = problem.initial()
    grad = ZeroGrads.surrogate_gradient(net, theta).double()
    net64 = net.double()
    enc = net64.encoder
    enc.signs = enc.signs.double()
    enc.chunk_weights = [w.double() for w in enc.chunk_weights]
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(3000, generator=gen, dtype=torch.float64)
        h = 1e-6
        with torch.no_grad():
            fd = (net64(theta.double() + h * v) - net64(theta.double() - h * v)) / (2 * h)
        assert fd.item() == pytest.approx((grad @ v).item(), rel=2e-3, abs=1e-6)


def test_hashed_zerograds_descends_with_colliding_buckets_deterministically():
    """The high-d surrogate (8 x 128, 6 frequencies: 832 features at d = 64) behind 247
    buckets, so ~3.4 features share each: θ still moves toward the optimum within 2000
    evaluations, at the settings the encoder was measured at before issue 22's defaults
    (k_θ 3, no smoothing sample, lr_φ 1e-3). Measured gap after 2000 evaluations, seeds
    0-5: hashed x0.85, x0.97, x0.81, x0.90, x0.93, x0.88 (mean x0.89); dense x0.89, x0.89,
    x0.89, x0.95, x0.93, x0.91 (mean x0.91). (At the new defaults, lr_φ 1e-4 as the
    authors' high-d scripts, neither moves in 2000 evaluations: mean x1.02 hashed, x0.97
    dense.) Same seed, same numbers."""
    spec = ("zerograds[high_dim=64,encoder=hashed,hash_size=256,lr=0.01,k_theta=3,"
            "smooth=false,lr_phi=1e-3]")
    a = run_once("sphere[dim=64]", spec, evals=2000, seed=0)
    b = run_once("sphere[dim=64]", spec, evals=2000, seed=0)
    c = run_once("sphere[dim=64]", spec, evals=2000, seed=2)
    assert a["status"] == "ok", a["error"]
    for record in (a, c):
        start, end = record["trajectory"][0]["metrics"], record["final"]["metrics"]
        assert end["gap"] < 0.95 * start["gap"]
    assert _numbers(a) == _numbers(b) and _numbers(a) != _numbers(c)


def test_bad_parameters_are_usage_errors():
    registry = plugins.load()
    for text in ("zerograds[batch=0]", "zerograds[sigma=-1]", "zerograds[width=0]",
                 "zerograds[k_phi=-1]", "zerograds[anneal=cosine]", "zerograds[hash_size=0]",
                 "zerograds[encoder=sparse]"):
        with pytest.raises(UsageError):
            specs.resolve_optimizer(registry, text)


def test_deterministic_for_a_seed():
    a = run_once("sphere[dim=4]", "zerograds[importance=true,smooth=true]", evals=400, seed=2)
    b = run_once("sphere[dim=4]", "zerograds[importance=true,smooth=true]", evals=400, seed=2)
    c = run_once("sphere[dim=4]", "zerograds[importance=true,smooth=true]", evals=400, seed=5)
    assert a["status"] == "ok", a["error"]
    assert _numbers(a) == _numbers(b) and _numbers(a) != _numbers(c)


# ------------------------------------------------------- defaults and scale-relative steps
class ScaledSphere(Sphere):
    """The sphere with a declared per-coordinate scale (a float or a ``[d]`` list): what a
    task of another scale looks like to an optimizer."""

    def __init__(self, scale, **kwargs):
        self._declared = scale
        super().__init__(**kwargs)

    def setup(self):
        super().setup()
        self.scale = (self._declared if isinstance(self._declared, float)
                      else torch.tensor(self._declared))


def _first_move(task, **params):
    """|θ₁ − θ₀| after one outer step with k_θ = 1: Adam's first step is lr_θ per
    coordinate of what it optimizes (up to its ε)."""
    problem = Problem(task, Budget(steps=1, evals=10_000), checkpoints=())
    with pytest.raises(BudgetExhausted):
        ZeroGrads(seed=3, k_theta=1, **params).run(problem)
    return (problem.recommendation() - problem.initial()).abs()


def test_defaults_are_the_public_codes():
    """smoothing sample on, k_θ 1, k_φ 3, B 10 antithetic, inner σ 0.1, σ 0.33 relative,
    lr_θ auto = σ / (10 k_θ) = 0.033 relative, lr_φ 1e-3 (small) / 1e-4 (encoded), the
    surrogate chosen by d (encoded from 1000 on)."""
    opt = ZeroGrads()
    assert (opt.smooth, opt.k_theta, opt.k_phi, opt.batch, opt.antithetic) == (True, 1, 3, 10, True)
    assert opt.inner_sigma == 0.1 and opt.params["lr"] == "auto" and opt.lr_phi == "auto"
    assert opt.lr == opt.theta_lr()  # resolved on construction: the outer loop reads a Step
    assert str(opt.sigma) == "0.33" and not opt.sigma.absolute
    lr = opt.theta_lr()
    assert lr.value == pytest.approx(0.033) and not lr.absolute
    assert opt.surrogate_lr(999) == 1e-3 and opt.surrogate_lr(1000) == 1e-4
    assert opt.architecture(999) == (3, 64, 0) and opt.architecture(1000) == (8, 128, 6)
    assert str(ZeroGrads.declared_params()["lr"].describe()).startswith("lr=auto")
    registry = plugins.load()
    assert (specs.resolve_optimizer(registry, "zerograds[lr=auto,lr_phi=auto]").canonical
            == specs.resolve_optimizer(registry, "zerograds").canonical)


def test_surrogate_choice_overrides_the_dimension_rule():
    small, encoded = ZeroGrads(surrogate="small"), ZeroGrads(surrogate="encoded")
    assert small.architecture(35_152) == (3, 64, 0) and small.surrogate_lr(35_152) == 1e-3
    assert encoded.architecture(126) == (8, 128, 6) and encoded.surrogate_lr(126) == 1e-4
    assert ZeroGrads(surrogate="encoded", encodings=3, lr_phi=5e-4).architecture(10) == (8, 128, 3)
    assert ZeroGrads(lr_phi=5e-4).surrogate_lr(5000) == 5e-4


@pytest.mark.parametrize("sigma,k_theta", [(0.33, 1), (0.33, 3), (0.05, 4), ("abs:0.02", 2)])
def test_auto_lr_follows_the_rule(sigma, k_theta):
    """k_θ · lr_θ = σ / 10, in σ's kind (relative or absolute); an explicit lr_θ stays."""
    spec = specs.resolve_optimizer(plugins.load(), f"zerograds[sigma={sigma},k_theta={k_theta}]")
    opt = ZeroGrads(**spec.kwargs)
    lr = opt.theta_lr()
    assert k_theta * lr.value == pytest.approx(opt.sigma.value / 10)
    assert lr.absolute == opt.sigma.absolute
    explicit = ZeroGrads(**{**spec.kwargs, "lr": StepSize(0.007)})
    assert explicit.theta_lr() == StepSize(0.007)


def test_sigma_and_lr_scale_with_the_task():
    """On a task of scale s (a float, and a [d] tensor of different scales per coordinate)
    the locality's σ is 0.33 s per coordinate and θ's first Adam step lr_θ · s, lr_θ the
    rule's 0.033; on the scale-1 sphere, 0.33 and 0.033."""
    per_coordinate = [0.01, 0.1, 1.0, 3.0, 0.01, 0.1]
    for scale in (1.0, 0.02, per_coordinate):
        task = ScaledSphere(scale, dim=6, seed=0)
        problem = Problem(task, Budget(evals=100_000), checkpoints=())
        opt = ZeroGrads(seed=1, batch=2000, smooth=False)
        opt.prepare(problem)
        s = torch.ones(6) * torch.as_tensor(scale)
        assert torch.allclose(opt._sigma, 0.33 * s)
        eps = problem.initial() - opt.sample(problem, problem.initial(), key=0)[0]
        assert torch.allclose(eps.std(dim=0), 0.33 * s, rtol=0.05)  # per coordinate
        move = _first_move(ScaledSphere(scale, dim=6, seed=0))
        assert torch.allclose(move, 0.033 * s, rtol=0.01)  # float32 θ and Adam ε


def test_absolute_steps_ignore_the_scale():
    task = ScaledSphere([0.01, 0.1, 1.0, 3.0], dim=4, seed=0)
    problem = Problem(task, Budget(evals=10_000), checkpoints=())
    opt = ZeroGrads(seed=1, sigma=StepSize(0.05, True), lr=StepSize(0.002, True))
    opt.prepare(problem)
    assert torch.allclose(opt._sigma, torch.full((4,), 0.05))
    move = _first_move(ScaledSphere([0.01, 0.1, 1.0, 3.0], dim=4, seed=0),
                       sigma=StepSize(0.05, True), lr=StepSize(0.002, True))
    assert torch.allclose(move, torch.full((4,), 0.002), rtol=0.01)
    # auto lr_θ of an absolute σ is absolute: σ / 10 everywhere
    move = _first_move(ScaledSphere([0.01, 0.1, 1.0, 3.0], dim=4, seed=0),
                       sigma=StepSize(0.05, True))
    assert torch.allclose(move, torch.full((4,), 0.005), rtol=0.01)


def test_spec_strings_for_steps():
    registry = plugins.load()
    spec = specs.resolve_optimizer(registry, "zerograds[sigma=abs:0.02,lr=0.01]")
    assert spec.kwargs["sigma"] == StepSize(0.02, True) and spec.kwargs["lr"] == StepSize(0.01)
    assert "sigma=abs:0.02" in spec.label and "lr=0.01" in spec.label
    for text in ("zerograds[lr=0]", "zerograds[lr=fast]", "zerograds[lr_phi=-1]",
                 "zerograds[sigma=abs:0]", "zerograds[sigma=0.1,sigma_min=0.2]"):
        with pytest.raises(UsageError):
            specs.resolve_optimizer(registry, text)


# --------------------------------------------------------------------------- reproductions
def test_toy_reaches_the_optimum_at_4_from_1_1():
    """The paper's toy (σ 0.33, B 10 antithetic, lr_φ 1e-3, k_θ = k_φ = 3, no smoothing
    sample), with lr_θ ×4 and a quarter of the 6000 iterations to fit the test budget: from
    1.1 across the shoulder at 3 into the global minimum at 4 (loss 0 on [4, 4.11]), not the
    local one at 6 (loss 1). The script's values are absolute (abs:)."""
    record = run_once("spline-toy", "zerograds[sigma=abs:0.33,lr=abs:2e-3,k_theta=3,"
                      "smooth=false]", evals=30_000)
    assert record["status"] == "ok", record["error"]
    start, end = record["trajectory"][0]["metrics"], record["final"]["metrics"]
    assert start["distance"] == pytest.approx(2.9)
    assert end["distance"] < 0.3 and end["loss"] < 0.2


def test_rosenbrock_moves_toward_the_optimum():
    """The paper's 2-D Rosenbrock settings (B 4, k_θ 1, smoothing sample, σ 0.33) with lr_θ
    ×4 and 1000 of its 10k iterations: into the valley and along it toward the (hidden,
    shifted) optimum. (Paper settings in full: see the report; some seeds need more steps.)"""
    record = run_once("rosenbrock[dim=2]",
                      "zerograds[batch=4,k_theta=1,smooth=true,sigma=abs:0.33,lr=abs:2e-3]",
                      evals=8000, seed=1)
    assert record["status"] == "ok", record["error"]
    start, end = record["trajectory"][0]["metrics"], record["final"]["metrics"]
    assert end["distance"] < 0.6 * start["distance"]
    assert end["gap"] < 0.1 * start["gap"]


def test_step_gradient_is_zero_for_autodiff_and_finite_differences():
    task = Step(dim=8, seed=0)
    thetas = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)) * 2
    z = (thetas - task.x_star).requires_grad_(True)
    (grad,) = torch.autograd.grad(task.f(z).sum(), z)
    assert torch.count_nonzero(grad) == 0  # what an autodiff optimizer such as adam would get
    record = run_once("step[dim=8]", "fd", evals=2000)
    start, end = record["trajectory"][0], record["final"]
    assert end["metrics"]["distance"] == start["metrics"]["distance"]  # fd never moved


@pytest.mark.parametrize("optimizer", ["zerograds[lr=0.02]", "smoothing"])
def test_step_progress_where_fd_cannot_move(optimizer):
    for seed in (0, 1):
        record = run_once("step[dim=8]", optimizer, evals=4000, seed=seed)
        assert record["status"] == "ok", record["error"]
        start, end = record["trajectory"][0]["metrics"], record["final"]["metrics"]
        assert end["gap"] < 0.5 * start["gap"]
