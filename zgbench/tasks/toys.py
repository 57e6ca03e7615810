"""Toy problems from the ZeroGrads paper, for reproductions that run in seconds on a CPU.

``spline-toy`` is the 1-D toy of Fischer & Ritschel, "ZeroGrads: Learning Local Surrogates for
Non-Differentiable Graphics" (ACM TOG / SIGGRAPH 2024; ``experiments/toy_example`` in their
code): f is the Akima spline through the knots

    x = -100, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 100
    y =    9, 7.5, 7, 6.5, 6, 4, 3.5, 0, 2, 1, 6, 8, 9

and the loss is f(θ)², the MSE between an image filled with f(θ) and the target image filled
with f(4) = 0. The run starts at θ₀ = 1.1; a local minimum waits at θ ≈ 6 (loss 1).

**Two global minimisers.** The paper names θ* = 4.0, but the Akima spline undershoots: f
crosses zero at 4.0 and again at θ ≈ 4.1163 (f ≥ −0.021 in between, so the loss stays below
5e-4 on the whole interval). Both zeros are global minimisers (loss exactly 0). ``distance`` is
therefore the distance to the *nearest* global minimiser, min(|θ − 4|, |θ − 4.1163|): an
optimizer sitting at the second zero has found an optimum and must not be ranked "0.116 off"
(it was, before). The second zero is found numerically in :meth:`SplineToy.setup`, by
bisection on the cubic piece [4, 5] (f(4.05) < 0 < f(5)), in float64 to 1e-12; it is a property
of the knots, not a parameter. ``loss`` (the loss gap, the minimum being 0) is reported too.
With ``quantize > 0`` the zeros of the rounded f form intervals; ``distance`` still measures
to the spline's two zeros, and ``loss`` is the honest measure there.

The scale (``Task.scale``) is 1.0: the knots that shape the loss lie one unit apart on
[-2, 8], the range of 10 the paper's toy is posed on (COCO's box at scale 1), and the paper's
σ 0.33 is that scale's.

The spline is C¹, but the authors evaluate it outside autodiff (numpy/scipy), so for the
optimizer it is a black box; the task does not provide ``grad``. With ``quantize > 0`` the
value f is rounded to multiples of ``quantize`` before squaring: a staircase whose gradient is
zero almost everywhere, the harder, truly non-differentiable variant.

The Akima slopes are computed here in a few lines of torch rather than with
``scipy.interpolate.Akima1DInterpolator`` so that the quick suite needs no optional
dependency; ``tests/test_zerograds.py`` checks the values against scipy's. Outside the knot
range [-100, 100] the spline is held constant (scipy would return NaN).
"""

from __future__ import annotations

import torch

from zgbench import Budget, Param, Task, UsageError, hookimpl

KNOTS_X = (-100.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0)
KNOTS_Y = (9.0, 7.5, 7.0, 6.5, 6.0, 4.0, 3.5, 0.0, 2.0, 1.0, 6.0, 8.0, 9.0)


def akima_slopes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Akima's derivative at each knot (Akima 1970, as scipy's ``method="akima"``)."""
    m = torch.diff(y) / torch.diff(x)
    m = torch.cat([3 * m[:1] - 2 * m[1:2], 2 * m[:1] - m[1:2], m,
                   2 * m[-1:] - m[-2:-1], 3 * m[-1:] - 2 * m[-2:-1]])
    dm = torch.diff(m).abs()
    f1, f2 = dm[2:], dm[:-2]
    f12 = f1 + f2
    fallback = 0.5 * (m[3:] + m[:-3])  # slope undefined where both weights vanish
    defined = f12 > 1e-9 * f12.max()
    weighted = m[1:-2] + f2 / torch.where(defined, f12, 1.0) * (m[2:-1] - m[1:-2])
    return torch.where(defined, weighted, fallback)


def hermite(points: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
            slopes: torch.Tensor) -> torch.Tensor:
    """The cubic Hermite interpolant through (x, y) with ``slopes``, at ``points``."""
    points = points.clamp(x[0], x[-1])
    i = (torch.searchsorted(x, points, right=True) - 1).clamp(0, x.numel() - 2)
    h = x[i + 1] - x[i]
    s = (points - x[i]) / h
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * y[i] + (s3 - 2 * s2 + s) * h * slopes[i]
            + (-2 * s3 + 3 * s2) * y[i + 1] + (s3 - s2) * h * slopes[i + 1])


class SplineToy(Task):
    """ZeroGrads' 1-D toy: squared Akima spline, from 1.1 to a zero (4.0 or ≈ 4.1163)."""

    name = "spline-toy"
    metrics = {"distance": "min", "loss": "min"}
    primary_metric = "distance"
    family = "synthetic"
    #: the paper's run: 6000 iterations of 10 antithetic pairs
    default_budget = Budget(evals=120_000)
    dim = 1
    #: knots one unit apart on [-2, 8]: the paper's σ 0.33 is a third of it
    scale = 1.0
    start = Param(1.1, "starting point θ₀")
    quantize = Param(0.0, "round f to multiples of this before squaring (0: the paper's spline)")
    #: the paper's optimum; the spline's second zero is :attr:`minimisers` [1]
    optimum = 4.0
    reference_note = "the known minimiser θ* = 4.0"

    @classmethod
    def check_params(cls, params):
        if params["quantize"] < 0:
            raise UsageError(f"spline-toy: quantize must be >= 0, got {params['quantize']}.")

    def setup(self) -> None:
        self.knots_x = torch.tensor(KNOTS_X, device=self.device, dtype=torch.float64)
        self.knots_y = torch.tensor(KNOTS_Y, device=self.device, dtype=torch.float64)
        self.slopes = akima_slopes(self.knots_x, self.knots_y)
        self.minimisers = (self.optimum, self.second_zero())

    def second_zero(self, low: float = 4.05, high: float = 5.0) -> float:
        """The zero of f in (4, 5] besides 4.0, by bisection (f(low) < 0 < f(high)). Hand
        written: 50 halvings of a bracket, where scipy would be an optional dependency."""
        f = lambda x: float(self.f(torch.tensor([x], dtype=torch.float64))[0])  # noqa: E731
        if not f(low) < 0 < f(high):
            raise RuntimeError("spline-toy: the second zero is no longer bracketed by [4.05, 5]")
        for _ in range(50):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if f(mid) < 0 else (low, mid)
        return 0.5 * (low + high)

    def f(self, points: torch.Tensor) -> torch.Tensor:
        """The spline at ``points`` (any shape), in float64 for exact knots."""
        return hermite(points.to(torch.float64), self.knots_x, self.knots_y, self.slopes)

    def initial(self) -> torch.Tensor:
        return torch.tensor([self.start], device=self.device, dtype=self.dtype)

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        value = self.f(thetas[:, 0])
        if self.quantize > 0:
            value = torch.round(value / self.quantize) * self.quantize
        return (value * value).to(thetas.dtype)

    def reference(self) -> dict[str, float]:
        """The paper's minimiser θ* = 4.0 (distance 0, loss 0). Sanity: the start alone."""
        return self.evaluate(torch.tensor([self.optimum], device=self.device, dtype=self.dtype))

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        x = float(theta.reshape(-1)[0])
        return {"distance": min(abs(x - m) for m in self.minimisers),
                "loss": float(self.loss(theta.reshape(1, 1), 0)[0])}


@hookimpl
def zgbench_tasks():
    return [SplineToy]
