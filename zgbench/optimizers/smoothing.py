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

σ, σ_min and the Adam lr are lengths, multiples of the task's scale (``Param(relative=
True)``): on a task whose scale varies per coordinate, σ_i = σ·scale_i (the sampler and the
weights take a ``[d]`` σ) and Adam's step is lr·scale_i per coordinate. On scale-1 tasks they
are the example's values above.
"""

from __future__ import annotations

import math

import torch

from zgbench import GradientEstimator, Param, Problem, UsageError, hookimpl

#: Keeps u away from 0, 1/2 and 1, where the inverse CDF is infinite or zero (as the
#: authors' code does with its eps).
_U_EPS = 1e-5


Sigma = float | torch.Tensor  # one σ, or one per coordinate ([d], broadcast over samples)


def slope_density(tau: torch.Tensor, sigma: float) -> torch.Tensor:
    """p(τ) = |τ|/(2σ²)·exp(−τ²/2σ²): the normalised |∇κ| of a 1-D Gaussian."""
    return tau.abs() / (2 * sigma**2) * torch.exp(-tau**2 / (2 * sigma**2))


def kernel_slope(tau: torch.Tensor, sigma: float) -> torch.Tensor:
    """∇κ(τ) = −τ/σ² κ(τ) of the 1-D Gaussian κ = N(0, σ²)."""
    kappa = torch.exp(-tau**2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return -tau / sigma**2 * kappa


def sample_weight(tau: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """∇κ(τ)/p(τ) in closed form: −sign(τ)·sqrt(2/π)/σ."""
    return -torch.sign(tau) * math.sqrt(2 / math.pi) / sigma


def slope_samples(pairs: int, dim: int, sigma: Sigma, generator: torch.Generator,
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
    of the planned steps, then linear down to ``sigma_min`` at the last step). σ and σ_min
    are floats or ``[d]`` tensors (per-coordinate, on a task whose scale varies)."""

    def __init__(self, sigma: Sigma, kind: str, sigma_min: Sigma, start: float, steps: int):
        self.sigma, self.kind, self.sigma_min = sigma, kind, sigma_min
        self.first = int(start * steps)
        self.steps = max(steps, self.first + 1)

    def __call__(self, step: int) -> Sigma:
        if self.kind == "constant" or step < self.first:
            return self.sigma
        frac = min((step - self.first) / (self.steps - self.first), 1.0)
        value = self.sigma - frac * (self.sigma - self.sigma_min)
        if isinstance(value, torch.Tensor):
            return torch.maximum(value, torch.as_tensor(self.sigma_min, dtype=value.dtype,
                                                        device=value.device))
        return max(value, self.sigma_min)


def check_sigma(params: dict, owner: str) -> None:
    """Shared validation of σ and its schedule. σ and σ_min are floats or
    :class:`~zgbench.Step` values; σ_min ≤ σ is checked where both are of one kind (both
    relative or both absolute), the only case it can be checked before the task's scale
    is known."""
    sigma, low = params["sigma"], params["sigma_min"]
    value = lambda x: getattr(x, "value", x)  # noqa: E731
    kind = lambda x: getattr(x, "absolute", True)  # noqa: E731  (a float is absolute)
    if value(sigma) <= 0:
        raise UsageError(f"{owner}: sigma must be positive, got {sigma}.")
    if value(low) <= 0 or (kind(low) == kind(sigma) and value(low) > value(sigma)):
        raise UsageError(f"{owner}: sigma_min must be in (0, sigma], got {low}.")
    if not 0 <= params["anneal_start"] < 1:
        raise UsageError(f"{owner}: anneal_start must be in [0, 1), got {params['anneal_start']}.")


class Smoothing(GradientEstimator):
    """PRDPT: importance-sampled Gaussian-smoothed gradient, antithetic, Adam, σ annealing."""

    name = "smoothing"
    sigma = Param(0.5, "standard deviation σ of the smoothing kernel", tune=(1e-2, 1.0),
                  log=True, relative=True)
    anneal = Param("linear", "σ schedule", choices=("constant", "linear"))
    sigma_min = Param(0.01, "σ at the end of a linear anneal", relative=True)
    anneal_start = Param(0.5, "share of the planned steps with constant σ before annealing")
    pairs = Param(1, "antithetic pairs per step (2 evaluations each)")
    step = Param("adam", "outer step", choices=("sgd", "adam"))
    lr = Param(2e-2, "learning rate of the outer step (Adam: its step per coordinate)",
               tune=(1e-4, 0.5), log=True, gt=0, relative=True)
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
        self._sigma = self._sigma_start = sigma_value(problem, self.sigma)
        self._sigma_end = sigma_value(problem, self.sigma_min)

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        tau = slope_samples(self.pairs, theta.numel(), self._sigma, self._gen, theta.device,
                            theta.dtype)
        values = problem.loss(theta - tau, key)
        return (values[:, None] * sample_weight(tau, self._sigma)).mean(0)

    def start(self, problem: Problem, planned: int) -> None:
        self._sigmas = SigmaSchedule(self._sigma_start, self.anneal, self._sigma_end,
                                     self.anneal_start, planned)

    def before_step(self, step: int) -> None:
        self._sigma = self._sigmas(step)


def sigma_value(problem: Problem, sigma) -> Sigma:
    """A σ (Step or float) on ``problem``: a Python float where it is the same on every
    coordinate (exactly the old number on scale-1 tasks), else a ``[d]`` tensor."""
    factor, shape = problem.step_parts(sigma)
    return factor if shape is None else factor * shape


@hookimpl
def zgbench_optimizers():
    return [Smoothing]
