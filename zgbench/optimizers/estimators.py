"""Zeroth-order gradient estimators: ``fd``, ``cge`` and ``rge``.

After DeepZero (Chen et al., ICLR 2024, "DeepZero: Scaling up Zeroth-Order Optimization for
Deep Model Training"):

- CGE, coordinate-wise: ĝ_i = (ℓ(θ + μ e_i) − ℓ(θ)) / μ over all d coordinates (d + 1
  evaluations). As μ → 0 it equals the true gradient up to O(μ).
- RGE, random directions: ĝ = (φ / q) Σ_i (ℓ(θ + μ u_i) − ℓ(θ)) / μ · u_i (q + 1
  evaluations). With ``directions=sphere`` u_i is uniform on the unit sphere and φ = d, which
  makes ĝ an unbiased estimate of the gradient of the smoothed loss, with the magnitude of the
  true gradient, so learning rates carry over between CGE and RGE. DeepZero's code omits the
  factor d (equivalent to dividing the learning rate by d). With ``directions=gaussian``,
  u_i ~ N(0, I) and φ = 1.
- ``fd`` is the textbook finite-difference baseline: central (2d evaluations) or forward
  differences, with an Adam step.

All perturbations of one estimate are evaluated under one key (common random numbers), in
batched ``loss`` calls of at most ``batch`` vectors each (DeepZero's forward parallelism).
"""

from __future__ import annotations

import torch

from zgbench.hookspecs import hookimpl
from zgbench.estimator import GradientEstimator
from zgbench.params import Param
from zgbench.problem import Problem


class CoordinateEstimator(GradientEstimator):
    """Base of coordinate-wise finite differences (forward or central)."""

    mu = Param(5e-3, "perturbation size μ")
    scheme = Param("forward", "difference scheme", choices=("forward", "central"))
    batch = Param(1024, "most parameter vectors per loss call")

    def evals_per_step(self, dim: int) -> int:
        return 2 * dim if self.scheme == "central" else dim + 1

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        return self.coordinate_gradient(problem, theta, key, torch.arange(theta.numel(),
                                                                          device=theta.device))

    def coordinate_gradient(self, problem: Problem, theta: torch.Tensor, key: int,
                            coords: torch.Tensor) -> torch.Tensor:
        """The estimate on the coordinates ``coords`` only (zero elsewhere)."""
        grad = torch.zeros_like(theta)
        base = None if self.scheme == "central" else problem.loss(theta[None], key)[0]
        for chunk in coords.split(self.batch if self.scheme == "forward" else max(self.batch // 2, 1)):
            rows = torch.arange(chunk.numel(), device=theta.device)
            plus = theta.repeat(chunk.numel(), 1)
            plus[rows, chunk] += self.mu
            if self.scheme == "forward":
                grad[chunk] = (problem.loss(plus, key) - base) / self.mu
            else:
                minus = theta.repeat(chunk.numel(), 1)
                minus[rows, chunk] -= self.mu
                values = problem.loss(torch.cat([plus, minus]), key)
                grad[chunk] = (values[: chunk.numel()] - values[chunk.numel():]) / (2 * self.mu)
        return grad


class CGE(CoordinateEstimator):
    """CGE (DeepZero): coordinate-wise forward differences, SGD with momentum and cosine decay."""

    name = "cge"


class FD(CoordinateEstimator):
    """Finite differences: central differences on every coordinate with an Adam step."""

    name = "fd"
    mu = Param(1e-3, "perturbation size μ")
    scheme = Param("central", "difference scheme", choices=("forward", "central"))
    step = Param("adam", "outer step", choices=("sgd", "adam"))
    lr = Param(0.05, "learning rate of the outer step")
    weight_decay = Param(0.0, "weight decay of the outer step")
    schedule = Param("constant", "learning-rate schedule", choices=("cosine", "constant"))


class RGE(GradientEstimator):
    """RGE (DeepZero): random-direction forward differences, q directions per step."""

    name = "rge"
    mu = Param(5e-3, "perturbation size μ")
    q = Param(10, "random directions per gradient estimate")
    directions = Param("sphere", "direction distribution", choices=("sphere", "gaussian"))

    def evals_per_step(self, dim: int) -> int:
        return self.q + 1

    def prepare(self, problem: Problem) -> None:
        self._gen = self.generator(problem.device)

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        d = theta.numel()
        u = torch.randn(self.q, d, generator=self._gen, device=theta.device, dtype=theta.dtype)
        scale = 1.0
        if self.directions == "sphere":
            u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
            scale = float(d)
        values = problem.loss(torch.cat([theta[None], theta + self.mu * u]), key)
        slopes = (values[1:] - values[0]) / self.mu
        return scale / self.q * (slopes @ u)


@hookimpl
def zgbench_optimizers():
    return [CGE, FD, RGE]
