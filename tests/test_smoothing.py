"""smoothing (PRDPT): the closed-form sample weight, the sampler, the estimator, the schedule."""

import math

import pytest
import torch

from zgbench import plugins, specs
from zgbench.budget import Budget
from zgbench.contracts import Task
from zgbench.errors import UsageError
from zgbench.optimizers.smoothing import (
    SigmaSchedule, Smoothing, kernel_slope, sample_weight, slope_density, slope_samples)
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Step
from zgbench.testing import make_problem, run_once




@pytest.mark.parametrize("sigma", [0.01, 0.5, 3.0])
def test_closed_form_weight_equals_general_formula(sigma):
    gen = torch.Generator().manual_seed(0)
    tau = slope_samples(500, 3, sigma, gen, torch.device("cpu"), torch.float64)
    general = kernel_slope(tau, sigma) / slope_density(tau, sigma)
    closed = -torch.sign(tau) * math.sqrt(2 / math.pi) / sigma
    assert torch.allclose(general, closed, rtol=1e-10)
    assert torch.equal(sample_weight(tau, sigma), closed)


def test_slope_density_is_normalised_and_sampled():
    sigma = 0.7
    grid = torch.linspace(-10 * sigma, 10 * sigma, 200_001, dtype=torch.float64)
    assert torch.trapezoid(slope_density(grid, sigma), grid) == pytest.approx(1.0, abs=1e-6)
    gen = torch.Generator().manual_seed(1)
    tau = slope_samples(50_000, 1, sigma, gen, torch.device("cpu"), torch.float64).reshape(-1)
    # |τ| is Rayleigh(σ): mean σ·sqrt(π/2), second moment 2σ²
    assert tau.abs().mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    assert (tau**2).mean() == pytest.approx(2 * sigma**2, rel=0.02)


def test_pairs_are_antithetic():
    tau = slope_samples(4, 5, 0.3, torch.Generator().manual_seed(2), torch.device("cpu"))
    assert tau.shape == (8, 5)
    assert torch.equal(tau[1::2], -tau[::2])
    assert torch.isfinite(tau).all() and (tau != 0).all()


class Linear(Task):
    """ℓ(θ) = a·θ: its smoothed gradient is a, whatever σ."""

    name = "linear"
    metrics = {"value": "min"}
    primary_metric = "value"
    dim = 3
    a = torch.tensor([1.0, -2.0, 0.5])

    def initial(self):
        return torch.zeros(3)

    def loss(self, thetas, key):
        return thetas @ self.a

    def evaluate(self, theta):
        return {"value": float(theta @ self.a)}


def test_estimate_is_unbiased_for_a_linear_loss():
    problem = Problem(Linear(), Budget(evals=10**9))
    problem.start()
    a = Linear.a
    est = Smoothing(seed=0, pairs=20_000, sigma=0.8)
    est.prepare(problem)
    grad = est.estimate_gradient(problem, torch.zeros(3), key=0)
    assert torch.allclose(grad, a, atol=0.03)
    assert problem.evals == 40_000


def test_estimate_on_step_matches_smoothed_gradient():
    """On the step function the estimate is non-zero and points like the σ-smoothed slope
    along the smoothed coordinate (the gradient of a plateau is zero)."""
    problem = make_problem("step[dim=1]", budget=Budget(evals=10**9))
    x_star = Step(dim=1, seed=0).x_star  # the instance make_problem built
    est = Smoothing(seed=0, pairs=20_000, sigma=0.5)
    est.prepare(problem)
    theta = x_star + 1.3  # on the plateau of value 1, right of the optimum
    grad = est.estimate_gradient(problem, theta, key=0)
    # exact smoothed gradient in 1-D: Σ_k (k² − (k−1)²) κ(θ−x*−(k−½)) over the jumps
    z = float(theta - x_star)
    exact = sum((k * k - (k - 1) ** 2) * math.exp(-((z - (k - 0.5)) ** 2) / (2 * 0.25))
                / (0.5 * math.sqrt(2 * math.pi)) for k in range(-10, 11))
    assert float(grad) == pytest.approx(exact, rel=0.05)


def test_linear_anneal_follows_prdpt():
    schedule = SigmaSchedule(0.5, "linear", 0.01, 0.5, steps=400)
    assert schedule(0) == schedule(199) == 0.5
    assert schedule(300) == pytest.approx(0.5 - 100 / 200 * 0.49)
    assert schedule(400) == pytest.approx(0.01) and schedule(10_000) == pytest.approx(0.01)
    assert SigmaSchedule(0.5, "constant", 0.01, 0.5, steps=400)(399) == 0.5


def test_bad_parameters_are_usage_errors():
    registry = plugins.load()
    for text in ("smoothing[sigma=0]", "smoothing[sigma_min=1]", "smoothing[pairs=0]",
                 "smoothing[anneal_start=1]"):
        with pytest.raises(UsageError):
            specs.resolve_optimizer(registry, text)


def test_deterministic_and_makes_progress_on_sphere():
    a = run_once("sphere[dim=4]", "smoothing", evals=1000, seed=3)
    b = run_once("sphere[dim=4]", "smoothing", evals=1000, seed=3)
    assert a["status"] == "ok", a["error"]
    assert _same_numbers(a, b)
    first, last = a["trajectory"][0]["metrics"]["gap"], a["final"]["metrics"]["gap"]
    assert last < 0.2 * first


def _same_numbers(a, b):
    strip = lambda r: [{k: v for k, v in c.items() if "seconds" not in k} for c in r["trajectory"]]
    return strip(a) == strip(b)
