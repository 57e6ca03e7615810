"""``smoothing``: Gaussian-smoothed gradients with importance sampling (PRDPT).

After Fischer & Ritschel, "Plateau-Reduced Differentiable Path Tracing", CVPR 2023. The loss
is replaced by its convolution with a Gaussian κ = N(0, σ²I), whose gradient needs no
derivative of ℓ::

    ∇(ℓ * κ)(θ) = ∫ ℓ(θ − τ) ∇κ(τ) dτ,        ∇κ(τ) = −τ/σ² κ(τ).

Every coordinate τ_i is drawn from the density of the kernel's slope,
p(τ) = |τ| / (2σ²) · exp(−τ² / 2σ²), by its inverse CDF
τ = ±sqrt(−2σ² log(2(1 − u))), with antithetic pairs u, 1 − u (which give exactly ±τ).
The per-sample weight ∂κ/p then collapses to the constant −sign(τ_i)·sqrt(2/π)/σ
(:func:`sample_weight`; ``tests/test_smoothing.py`` checks it against the general formula).

As in the authors' code (``utils_fns.importance_gradgauss``), all coordinates of a sample are
drawn from p and coordinate i is weighted by its own factor only: the estimate is the gradient
of ℓ smoothed with κ along coordinate i and with p along the others. Defaults are their
example's: Adam lr 2e-2, σ = 0.5 constant for the first half of the run then linearly down to
0.01, one antithetic pair (two evaluations) per step.

The sampler and the σ schedule are shared with ``zerograds`` (same authors).
"""

from __future__ import annotations

import math

import torch

from zgbench import GradientEstimator, Param, Problem, UsageError, hookimpl

#: Keeps u away from 0, 1/2 and 1, where the inverse CDF is infinite or zero (as the
#: authors' code does with its eps).
_U_EPS = 1e-5


def slope_density(tau: torch.Tensor, sigma: float) -> torch.Tensor:
    """p(τ) = |τ|/(2σ²)·exp(−τ²/2σ²): the normalised |∇κ| of a 1-D Gaussian."""
    return tau.abs() / (2 * sigma**2) * torch.exp(-tau**2 / (2 * sigma**2))


def kernel_slope(tau: torch.Tensor, sigma: float) -> torch.Tensor:
    """∇κ(τ) = −τ/σ² κ(τ) of the 1-D Gaussian κ = N(0, σ²)."""
    kappa = torch.exp(-tau**2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return -tau / sigma**2 * kappa


def sample_weight(tau: torch.Tensor, sigma: float) -> torch.Tensor:
    """∇κ(τ)/p(τ) in closed form: −sign(τ)·sqrt(2/π)/σ."""
    return -torch.sign(tau) * math.sqrt(2 / math.pi) / sigma


def slope_samples(pairs: int, dim: int, sigma: float, generator: torch.Generator,
                  device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[2·pairs, dim]`` offsets τ ~ p per coordinate; row 2k+1 is the antithetic −(row 2k)."""
    u = torch.rand(pairs, dim, generator=generator, device=device, dtype=dtype)
    u = u.clamp(_U_EPS, 1 - _U_EPS)
    u = torch.where((u - 0.5).abs() < _U_EPS, u + _U_EPS, u)
    upper = u >= 0.5
    magnitude = torch.sqrt(-2 * sigma**2 * torch.log(2 * torch.where(upper, 1 - u, u)))
    tau = torch.where(upper, magnitude, -magnitude)
    # u and 1 - u map to +τ and −τ: interleave the pairs
    return torch.stack([tau, -tau], dim=1).reshape(2 * pairs, dim)


class SigmaSchedule:
    """σ per step: constant, or PRDPT's linear anneal (constant for the first ``start`` share
    of the planned steps, then linear down to ``sigma_min`` at the last step)."""

    def __init__(self, sigma: float, kind: str, sigma_min: float, start: float, steps: int):
        self.sigma, self.kind, self.sigma_min = sigma, kind, sigma_min
        self.first = int(start * steps)
        self.steps = max(steps, self.first + 1)

    def __call__(self, step: int) -> float:
        if self.kind == "constant" or step < self.first:
            return self.sigma
        frac = min((step - self.first) / (self.steps - self.first), 1.0)
        return max(self.sigma - frac * (self.sigma - self.sigma_min), self.sigma_min)


def check_sigma(params: dict, owner: str) -> None:
    """Shared validation of σ and its schedule."""
    if params["sigma"] <= 0:
        raise UsageError(f"{owner}: sigma must be positive, got {params['sigma']}.")
    if params["sigma_min"] <= 0 or params["sigma_min"] > params["sigma"]:
        raise UsageError(f"{owner}: sigma_min must be in (0, sigma], got {params['sigma_min']}.")
    if not 0 <= params["anneal_start"] < 1:
        raise UsageError(f"{owner}: anneal_start must be in [0, 1), got {params['anneal_start']}.")


class Smoothing(GradientEstimator):
    """PRDPT: importance-sampled Gaussian-smoothed gradient, antithetic, Adam, σ annealing."""

    name = "smoothing"
    sigma = Param(0.5, "standard deviation σ of the smoothing kernel", tune=(1e-2, 1.0),
                  log=True)
    anneal = Param("linear", "σ schedule", choices=("constant", "linear"))
    sigma_min = Param(0.01, "σ at the end of a linear anneal")
    anneal_start = Param(0.5, "share of the planned steps with constant σ before annealing")
    pairs = Param(1, "antithetic pairs per step (2 evaluations each)")
    step = Param("adam", "outer step", choices=("sgd", "adam"))
    lr = Param(2e-2, "learning rate of the outer step", tune=(1e-4, 0.5), log=True, gt=0)
    weight_decay = Param(0.0, "weight decay of the outer step", ge=0)
    schedule = Param("constant", "learning-rate schedule", choices=("cosine", "constant"))

    @classmethod
    def check_params(cls, params):
        check_sigma(params, "optimizer 'smoothing'")
        if params["pairs"] < 1:
            raise UsageError(f"optimizer 'smoothing': pairs must be >= 1, got {params['pairs']}.")

    def evals_per_step(self, dim: int) -> int:
        return 2 * self.pairs

    def prepare(self, problem: Problem) -> None:
        self._gen = self.generator(problem.device)
        self._sigma = self.sigma

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        tau = slope_samples(self.pairs, theta.numel(), self._sigma, self._gen, theta.device,
                            theta.dtype)
        values = problem.loss(theta - tau, key)
        return (values[:, None] * sample_weight(tau, self._sigma)).mean(0)

    def start(self, problem: Problem, planned: int) -> None:
        self._sigmas = SigmaSchedule(self.sigma, self.anneal, self.sigma_min,
                                     self.anneal_start, planned)

    def before_step(self, step: int) -> None:
        self._sigma = self._sigmas(step)


@hookimpl
def zgbench_optimizers():
    return [Smoothing]
