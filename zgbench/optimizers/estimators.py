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
``cge[reuse=true]`` adds DeepZero's feature reuse on tasks that provide ``layers``: the
inputs of every layer are recorded at θ and a perturbation of layer l restarts the forward
pass there (same numbers to rounding, fewer layer evaluations).

μ is a length, a multiple of the task's scale (``Param(relative=True)``): coordinate i is
perturbed by μ_i = μ·scale_i and divided by it, and RGE perturbs along μ ⊙ u and divides
coordinate i of the estimate by μ_i (unbiased to first order for any per-coordinate μ). On
scale-1 tasks μ is today's value. ``fd``'s Adam lr is relative too (Adam's step is a length);
``cge`` and ``rge`` keep the base's absolute SGD lr (DeepZero's 0.1; see
:mod:`zgbench.estimator`).
"""

from __future__ import annotations

import functools

import torch

from zgbench import GradientEstimator, Param, Problem, TaskInfo, UsageError, hookimpl


class CoordinateEstimator(GradientEstimator):
    """Base of coordinate-wise finite differences (forward or central).

    Perturbed vectors go to the task in calls of at most ``batch`` vectors (forward
    parallelism). With ``reuse`` (DeepZero's feature reuse) the task's ``layers`` capability
    records every layer's input at θ once per estimate, and the perturbations of a layer's
    coordinates restart the forward pass at that layer; every perturbed vector is still
    charged as one evaluation.
    """

    mu = Param(5e-3, "perturbation size μ", tune=(1e-5, 0.1), log=True, gt=0, relative=True)
    scheme = Param("forward", "difference scheme", choices=("forward", "central"))
    batch = Param(1024, "most parameter vectors per loss call", ge=1)
    reuse = Param(False, "feature reuse through the task's layers (restart at perturbed layer)",
                  execution=True)

    def evals_per_step(self, dim: int) -> int:
        if self.scheme == "central":
            return 2 * dim + (1 if self.reuse else 0)  # with reuse: one trace at θ
        return dim + 1

    def skip(self, task: TaskInfo) -> str | None:
        if self.reuse and "layers" not in task.provides:
            return (f"{self.name}[reuse=true] needs a task that provides 'layers' ({task.name!r} "
                    f"provides {sorted(task.provides) or 'nothing beyond loss'}): "
                    "use reuse=false there")
        return super().skip(task)

    def prepare(self, problem: Problem) -> None:
        self._mu = problem.step_parts(self.mu)  # (factor, per-coordinate shape or None)
        if self.reuse:  # the harness skips tasks without layers (skip); a direct call fails here
            self._layer_slices = problem.call("layers")

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        return self.coordinate_gradient(problem, theta, key, torch.arange(theta.numel(),
                                                                          device=theta.device))

    def coordinate_gradient(self, problem: Problem, theta: torch.Tensor, key: int,
                            coords: torch.Tensor) -> torch.Tensor:
        """The estimate on the coordinates ``coords`` only (zero elsewhere)."""
        grad = torch.zeros_like(theta)
        if not self.reuse:
            base = None if self.scheme == "central" else problem.loss(theta[None], key)[0]
            self._differences(grad, theta, coords, base, lambda rows: problem.loss(rows, key))
            return grad
        base, trace = problem.call("layers", theta[None], key, evals=1)
        for index, (_, lo, hi) in enumerate(self._layer_slices):
            part = coords[(coords >= lo) & (coords < hi)]
            if part.numel():
                self._differences(grad, theta, part, base[0], functools.partial(
                    self._restart, problem, key, index, trace))
        return grad

    @staticmethod
    def _restart(problem: Problem, key: int, index: int, trace, rows: torch.Tensor):
        return problem.call("layers", rows, key, start=index, inputs=trace, evals=rows.shape[0])

    def _differences(self, grad: torch.Tensor, theta: torch.Tensor, coords: torch.Tensor,
                     base: torch.Tensor | None, evaluate) -> None:
        """Fill ``grad[coords]`` with differences of ``evaluate`` (rows -> losses) around θ."""
        forward = self.scheme == "forward"
        factor, shape = self._mu
        for chunk in coords.split(self.batch if forward else max(self.batch // 2, 1)):
            rows = torch.arange(chunk.numel(), device=theta.device)
            mu = factor if shape is None else factor * shape[chunk]  # μ_i per coordinate
            plus = theta.repeat(chunk.numel(), 1)
            plus[rows, chunk] += mu
            if forward:
                grad[chunk] = (evaluate(plus) - base) / mu
            else:
                minus = theta.repeat(chunk.numel(), 1)
                minus[rows, chunk] -= mu
                values = evaluate(torch.cat([plus, minus]))
                grad[chunk] = (values[: chunk.numel()] - values[chunk.numel():]) / (2 * mu)


class CGE(CoordinateEstimator):
    """CGE (DeepZero): coordinate-wise forward differences, SGD with momentum and cosine decay."""

    name = "cge"


class FD(CoordinateEstimator):
    """Finite differences: central differences on every coordinate with an Adam step."""

    name = "fd"
    mu = Param(1e-3, "perturbation size μ", tune=(1e-5, 0.1), log=True, gt=0, relative=True)
    scheme = Param("central", "difference scheme", choices=("forward", "central"))
    step = Param("adam", "outer step", choices=("sgd", "adam"))
    lr = Param(0.05, "learning rate of the outer step (Adam: its step per coordinate)",
               tune=(1e-4, 1.0), log=True, gt=0, relative=True)
    weight_decay = Param(0.0, "weight decay of the outer step", ge=0)
    schedule = Param("constant", "learning-rate schedule", choices=("cosine", "constant"))


class RGE(GradientEstimator):
    """RGE (DeepZero): random-direction forward differences, q directions per step."""

    name = "rge"
    mu = Param(5e-3, "perturbation size μ", tune=(1e-5, 0.1), log=True, gt=0, relative=True)
    q = Param(10, "random directions per gradient estimate", tune=(2, 50), log=True, ge=1)
    directions = Param("sphere", "direction distribution", choices=("sphere", "gaussian"))

    def evals_per_step(self, dim: int) -> int:
        return self.q + 1

    def prepare(self, problem: Problem) -> None:
        self._gen = self.generator(problem.device)
        self._mu = problem.step_parts(self.mu)

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        d = theta.numel()
        u = torch.randn(self.q, d, generator=self._gen, device=theta.device, dtype=theta.dtype)
        scale = 1.0
        if self.directions == "sphere":
            u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
            scale = float(d)
        mu, shape = self._mu
        offsets = mu * u if shape is None else mu * (u * shape)
        values = problem.loss(torch.cat([theta[None], theta + offsets]), key)
        slopes = (values[1:] - values[0]) / mu
        grad = scale / self.q * (slopes @ u)
        # along μ ⊙ u the slope is Σ_i μ_i/μ · u_i ∂_i ℓ: divide coordinate i by shape_i
        return grad if shape is None else grad / shape


@hookimpl
def zgbench_optimizers():
    return [CGE, FD, RGE]
