"""Consensus-based optimization in torch: ``cbo``.

Papers: Pinnau, Totzeck, Tse & Martin (2017), "A consensus-based model for global
optimization and its mean-field limit", M3AS 27(1); anisotropic noise: Carrillo, Jin, Li & Zhu
(2021), "A consensus-based global optimization method for high dimensional machine learning
problems", ESAIM: COCV 27; the link to gradients: Riedl, Klock, Geldhauser & Fornasier (2023),
"Gradient is All You Need?", arXiv:2306.09778. Reference implementation: CBXpy (``cbx``);
``tests/test_dfo.py`` checks that this module takes the very same steps.

N particles x_i, all evaluated in one batched ``loss`` call under one key. Each step:

    c = Σ_i w_i x_i,   w = softmax(−α ℓ(x))                          (consensus)
    x_i ← x_i − λ dt (x_i − c) + σ √dt D(x_i − c) ξ_i,  ξ_i ~ N(0, I)
    α ← min(α · alpha_factor, alpha_max)

with D(v) = v ⊙ (anisotropic) or ‖v‖₂ (isotropic). Defaults are CBXpy's (dt 0.01, α 1 ×1.05
per step capped at 1e5, σ 5.1, λ 1, N 20) except the noise: anisotropic rather than CBXpy's
isotropic, because isotropic noise spreads the particles by σ²·d·dt per step and with σ = 5.1
stalls far from the optimum already at d = 10 (gap 11-24 on a shifted sphere after CBXpy's
1000 steps, against 5e-4 with anisotropic noise). Particles start at θ₀ + U(−r, r)^d (CBXpy
draws U(−1, 1)^d around the origin; the benchmark's tasks start at θ₀). The recommendation
reported each step is the consensus point. Hand-written rather than calling ``cbx``: CBXpy is
numpy-only and owns its loop, while here the particles stay on the task's device and every
step is one metered batched call.

The task's scale: the initial spread r is a length, a multiple of the scale
(``Param(relative=True)``; r_i = r·scale_i, 1.0 x scale by default, CBXpy's U(−1, 1) on
scale-1 tasks). The noise σ is not: it multiplies D(x − c), which is already a length (the
particles' distance to the consensus), so σ is a pure number and the anisotropic dynamics
are the same in θ and in θ / scale coordinates with one σ. It stays absolute.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from zgbench import EstimatesGradient, Optimizer, Param, Problem, UsageError, hookimpl


def consensus(x: torch.Tensor, energies: torch.Tensor, alpha: float) -> torch.Tensor:
    """The softmin-weighted mean Σ w_i x_i of particles ``x`` ``[N, d]`` (log-sum-exp stable).

    NaN and +inf losses get weight zero; if no particle has a finite loss the weights are
    uniform (the plain mean), so a batch of failures never produces a NaN consensus.
    """
    e = energies.to(x.dtype).nan_to_num(nan=math.inf)
    logits = -alpha * e
    any_finite = torch.isfinite(logits).any()
    logits = torch.where(any_finite, logits, torch.zeros_like(logits))
    return torch.softmax(logits, dim=0) @ x


def cbo_update(x: torch.Tensor, c: torch.Tensor, xi: torch.Tensor, *, lam: float, dt: float,
               sigma: float, noise: str) -> torch.Tensor:
    """One Euler-Maruyama step of the CBO dynamics with standard normal draws ``xi``."""
    drift = x - c
    if noise == "anisotropic":
        scale = drift
    else:
        scale = torch.linalg.vector_norm(drift, dim=-1, keepdim=True)
    return x - lam * dt * drift + sigma * math.sqrt(dt) * scale * xi


class CBO(EstimatesGradient, Optimizer):
    """Consensus-based optimization (torch): particles drift to a softmin-weighted consensus."""

    name = "cbo"
    particles = Param(20, "number of particles N (one batched loss call per step)")
    dt = Param(0.01, "time step", tune=(1e-3, 0.1), log=True)
    lam = Param(1.0, "drift rate λ towards the consensus")
    sigma = Param(5.1, "noise scale σ (a pure number: it multiplies x − c)", tune=(0.1, 10.0),
                  log=True)
    alpha = Param(1.0, "initial inverse temperature α of the consensus weights")
    alpha_factor = Param(1.05, "α is multiplied by this after every step")
    alpha_max = Param(1e5, "cap on α")
    noise = Param("anisotropic", "noise D(x − c): anisotropic (per coordinate) or isotropic",
                  choices=("anisotropic", "isotropic"))
    radius = Param(1.0, "initial spread r: particles start at θ₀ + U(−r, r)^d",
                   tune=(1e-2, 2.0), log=True, relative=True)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if params["particles"] < 2:
            raise UsageError(f"cbo needs particles >= 2, got {params['particles']}.")
        for key in ("dt", "alpha", "alpha_max", "radius"):
            if not getattr(params[key], "value", params[key]) > 0:
                raise UsageError(f"cbo needs {key} > 0, got {params[key]}.")
        for key in ("lam", "sigma"):
            if params[key] < 0:
                raise UsageError(f"cbo needs {key} >= 0, got {params[key]}.")

    def _generator(self, device: torch.device) -> torch.Generator:
        if getattr(self, "_gen", None) is None:
            self._gen = self.generator(device)
        return self._gen

    def run(self, problem: Problem) -> None:
        gen = self._generator(problem.device)
        theta0 = problem.initial()
        shape = (self.particles, problem.dim)
        radius = self.spread(problem)
        x = theta0 + radius * (2 * torch.rand(shape, generator=gen, device=theta0.device,
                                              dtype=theta0.dtype) - 1)
        alpha = self.alpha
        while True:
            energies = problem.loss(x, problem.new_key())
            c = consensus(x, energies, alpha)
            xi = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype)
            x = cbo_update(x, c, xi, lam=self.lam, dt=self.dt, sigma=self.sigma, noise=self.noise)
            alpha = min(alpha * self.alpha_factor, self.alpha_max)
            problem.report(c)

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        """The consensus drift θ − c of N particles θ + r ε, ε ~ N(0, I), evaluated under ``key``.

        This is the direction CBO moves its particles in, for gradient diagnostics. It is not
        in gradient units: for N → ∞, Stein's lemma gives θ − c = α r² E_w[∇ℓ], the gradient
        averaged under the Gibbs-tilted Gaussian w ∝ exp(−αℓ) N(θ, r²I) (on ℓ = ‖θ − x*‖²
        exactly α r² / (1 + 2α r²) ∇ℓ(θ)). Compare directions (cosine), or divide by α r².
        Costs ``particles`` evaluations; uses the initial α.
        """
        gen = self._generator(theta.device)
        eps = torch.randn((self.particles, theta.numel()), generator=gen, device=theta.device,
                          dtype=theta.dtype)
        x = theta + self.spread(problem) * eps
        return theta - consensus(x, problem.loss(x, key), self.alpha)

    def spread(self, problem: Problem) -> float | torch.Tensor:
        """The initial spread r on ``problem``: a float on a uniform scale (exactly r there),
        else r·scale per coordinate ``[d]``."""
        factor, shape = problem.step_parts(self.radius)
        return factor if shape is None else factor * shape


@hookimpl
def zgbench_optimizers():
    return [CBO]
