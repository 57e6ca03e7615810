"""Cheap synthetic test functions, batched in torch, any dimension, CPU or CUDA.

Each instance hides its optimum x* ~ U(-1, 1)^d and starts from θ₀ ~ U(-3, 3)^d, both drawn
from the task seed, so repetitions differ and no method wins by starting at the origin.
``evaluate`` reports the gap f(θ) − f* (primary) and the distance ‖θ − x*‖.

The scale (``Task.scale``) is 1.0: COCO's common search box [-5, 5]^d (its range of 10 per
coordinate, a tenth of it), the box these functions are posed in (optimum in [-1, 1]^d, start
in [-3, 3]^d) and on which every built-in step-size default was set.

``step`` and ``cliff`` are not differentiable: ``step`` has a zero gradient almost everywhere
(plateaus), ``cliff`` a jump across a hyperplane through the optimum. They do not provide
``grad``: autodiff would give a gradient that ignores the plateaus and the jump.
"""

from __future__ import annotations

import math

import torch

from zgbench import Budget, Param, Task, UsageError, hookimpl
from zgbench import Cost


class Synthetic(Task):
    """Base of the synthetic functions: shifted optimum, random start, gap metric."""

    metrics = {"gap": "min", "distance": "min"}
    primary_metric = "gap"
    family = "synthetic"
    default_budget = Budget(evals=2000, grads=200)
    #: COCO's common box [-5, 5]^d: the reference scale of every step-size default
    scale = 1.0
    dim = Param(8, "number of coordinates")
    #: value of f at the optimum (0 for every function here)
    optimum_value = 0.0

    #: smallest dimension the function is defined for
    min_dim = 1
    reference_note = "the known optimum x*"

    @classmethod
    def check_params(cls, params):
        if params["dim"] < cls.min_dim:
            raise UsageError(f"{cls.name} needs dim >= {cls.min_dim}, got {params['dim']}.")

    def setup(self) -> None:
        gen = self.generator()
        self.x_star = (torch.rand(self.dim, generator=gen, device=self.device) * 2 - 1)
        self.theta0 = torch.rand(self.dim, generator=gen, device=self.device) * 6 - 3

    def initial(self) -> torch.Tensor:
        return self.theta0.clone()

    def f(self, z: torch.Tensor) -> torch.Tensor:
        """The function of z = θ − x* for a batch ``[B, d]`` -> ``[B]``."""
        raise NotImplementedError

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        return self.f(thetas - self.x_star)

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = (thetas - self.x_star).detach().requires_grad_(True)
            values = self.f(z)
            (grads,) = torch.autograd.grad(values.sum(), z)
        return values.detach(), grads

    def reference(self) -> dict[str, float]:
        """The known optimum x* (gap 0, distance 0): the best any optimizer can reach. The
        sanity output is the start alone (the default :meth:`Task.sanity`)."""
        return self.evaluate(self.x_star)

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        value = self.loss(theta.reshape(1, -1), 0)[0]
        return {
            "gap": float(value) - self.optimum_value,
            "distance": float(torch.linalg.vector_norm(theta - self.x_star)),
        }


class Sphere(Synthetic):
    """Sphere: sum of squares, the smoothest baseline (convex, differentiable)."""

    name = "sphere"
    provides = frozenset({"grad"})
    costs = {"grad": Cost(grads=1)}

    def f(self, z):
        return (z * z).sum(-1)


class Rosenbrock(Synthetic):
    """Rosenbrock: a curved narrow valley; optimum shifted to x*."""

    name = "rosenbrock"
    provides = frozenset({"grad"})
    costs = {"grad": Cost(grads=1)}
    dim = Param(2, "number of coordinates (at least 2)")
    min_dim = 2

    def f(self, z):
        y = z + 1.0  # the classic function has its optimum at (1, ..., 1)
        return (100.0 * (y[..., 1:] - y[..., :-1] ** 2) ** 2 + (1.0 - y[..., :-1]) ** 2).sum(-1)


class Rastrigin(Synthetic):
    """Rastrigin: a sphere covered in regular local minima (multimodal, differentiable)."""

    name = "rastrigin"
    provides = frozenset({"grad"})
    costs = {"grad": Cost(grads=1)}

    def f(self, z):
        return 10.0 * z.shape[-1] + (z * z - 10.0 * torch.cos(2 * math.pi * z)).sum(-1)


class Step(Synthetic):
    """Step: sphere of rounded coordinates; zero gradient almost everywhere (plateaus)."""

    name = "step"

    def f(self, z):
        r = torch.floor(z + 0.5)
        return (r * r).sum(-1)


class Cliff(Synthetic):
    """Cliff: sphere plus a jump of `height` on the half-space z₁ < 0 (a discontinuity)."""

    name = "cliff"
    height = Param(1.0, "size of the jump")

    def f(self, z):
        return (z * z).sum(-1) + self.height * (z[..., 0] < 0).to(z.dtype)


@hookimpl
def zgbench_tasks():
    return [Sphere, Rosenbrock, Rastrigin, Step, Cliff]
