"""``sparse-cge`` (DeepZero) and ``mezo`` (MeZO): zeroth-order training of networks.

``sparse-cge`` follows Chen et al., "DeepZero: Scaling up Zeroth-Order Optimization for Deep
Model Training", ICLR 2024. Once, before training, ZO-GraSP scores every coordinate from two
random-direction estimates: g0 = RGE(θ), g1 = RGE(θ + μ g0) (same directions, same
minibatch), Hg = (g1 − g0)/μ, score = −θ ⊙ Hg. As in GraSP (Wang et al. 2020) the highest
scores are pruned, the lowest ``1 − sparsity`` share kept; only the resulting share of kept
coordinates per layer (the task's ``layers``) is retained. During training a random
coordinate mask with those layer-wise ratios is drawn ``masks`` times over the planned run
(DeepZero: every 5 of 50 epochs, i.e. 10 masks) and CGE runs on the unmasked coordinates
only: the mask sparsifies the gradient estimate, never the weights. The outer step is the
published recipe (SGD, lr 0.1, momentum 0.9, weight decay 5e-4, cosine), inherited from
:class:`~zgbench.estimator.GradientEstimator`. Deviation: GraSP and DeepZero score on a
few samples per class; a black-box loss picks its own minibatch, so the scores use one
minibatch (one key).

``mezo`` follows Malladi et al., "Fine-Tuning Language Models with Just Forward Passes",
NeurIPS 2023: a two-point SPSA estimate g = (ℓ(θ + εz) − ℓ(θ − εz)) / (2ε) along
z ~ N(0, I), and the step θ ← θ − lr·g·z. z is never stored: it is redrawn from a seeded
generator, in chunks, to perturb θ in place, to restore it and to step, so the memory is
that of inference (θ plus one chunk of z).

Step sizes and the task's scale: μ (sparse-cge, from ``cge``) and ε (mezo) are lengths, so
multiples of the task's scale (``Param(relative=True)``; mezo perturbs by ε ⊙ scale ⊙ z).
The learning rates stay absolute numbers: sparse-cge's is the SGD recipe's (see
:mod:`zgbench.estimator`), and mezo's step lr·g·z is SGD's on the projected gradient g, not a
length either (MeZO's published lr are absolute, for language-model weights).
"""

from __future__ import annotations

import torch

from zgbench import Optimizer, Param, Problem, UsageError, hookimpl
from zgbench.optimizers.estimators import CGE


class SparseCGE(CGE):
    """Sparse CGE (DeepZero): CGE on random masks with ZO-GraSP layer-wise ratios."""

    name = "sparse-cge"
    requires = frozenset({"layers"})
    sparsity = Param(0.9, "share of coordinates left out of each gradient estimate")
    masks = Param(10, "random masks drawn over the planned run (DeepZero: every 5 of 50 epochs)")
    grasp_q = Param(192, "random directions of each ZO-GraSP gradient estimate")

    @classmethod
    def check_params(cls, params) -> None:
        if not 0.0 <= params["sparsity"] < 1.0:
            raise UsageError(f"sparse-cge: sparsity must lie in [0, 1), got {params['sparsity']}.")
        if params["masks"] < 1 or params["grasp_q"] < 1:
            raise UsageError("sparse-cge: masks and grasp_q must be at least 1.")

    def evals_per_step(self, dim: int) -> int:
        return max(int(round((1.0 - self.sparsity) * dim)), 1) + 1

    def prepare(self, problem: Problem) -> None:
        super().prepare(problem)
        self._slices = problem.call("layers")
        self._gen = self.generator(problem.device)
        self._keep = self.layer_counts(problem, problem.initial())
        # planned after ZO-GraSP's estimates: the horizon counts only what they left
        self._every = max(self.planned_steps(problem) // self.masks, 1)
        self._steps = 0

    def layer_counts(self, problem: Problem, theta: torch.Tensor) -> list[int]:
        """ZO-GraSP: how many coordinates of each layer to keep."""
        score = -theta * self.hessian_gradient(problem, theta, problem.new_key())
        keep = max(int(round((1.0 - self.sparsity) * theta.numel())), 1)
        kept = torch.zeros(theta.numel(), dtype=torch.bool, device=theta.device)
        kept[torch.topk(score, keep, largest=False).indices] = True  # GraSP prunes the top
        return [int(kept[lo:hi].sum()) for _, lo, hi in self._slices]

    def hessian_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        """Hg ≈ (RGE(θ + μ g0) − g0) / μ, g0 = RGE(θ), on the same directions and key."""
        seed = int(torch.randint(2**62, (1,), generator=self._gen, device=self._gen.device))
        mu = self._mu[0]  # the difference along g0 needs one length: the scale's factor
        g0 = self._rge(problem, theta, key, seed)
        g1 = self._rge(problem, theta + mu * g0, key, seed)
        return (g1 - g0) / mu

    def _rge(self, problem: Problem, theta: torch.Tensor, key: int, seed: int) -> torch.Tensor:
        """RGE with ``grasp_q`` directions uniform on the sphere, scaled by d (as ``rge``);
        the directions come from ``seed`` in chunks of ``batch``, so a second call redraws
        the same ones without storing them."""
        d = theta.numel()
        mu, shape = self._mu
        gen = torch.Generator(device=theta.device).manual_seed(seed)
        base = problem.loss(theta[None], key)[0]
        grad = torch.zeros_like(theta)
        for n in _chunks(self.grasp_q, self.batch):
            u = torch.randn(n, d, generator=gen, device=theta.device, dtype=theta.dtype)
            u /= torch.linalg.vector_norm(u, dim=1, keepdim=True)
            offsets = mu * u if shape is None else mu * (u * shape)
            slopes = (problem.loss(theta + offsets, key) - base) / mu
            grad += slopes @ u
        grad = grad * (d / self.grasp_q)
        return grad if shape is None else grad / shape  # as rge: per-coordinate μ_i

    def draw_mask(self, device: torch.device) -> torch.Tensor:
        """Sorted coordinates: ``keep_l`` drawn at random without replacement in each layer."""
        parts = [lo + torch.randperm(hi - lo, generator=self._gen, device=device)[:keep]
                 for (_, lo, hi), keep in zip(self._slices, self._keep)]
        return torch.cat(parts).sort().values

    def estimate_gradient(self, problem: Problem, theta: torch.Tensor, key: int) -> torch.Tensor:
        if self._steps % self._every == 0:
            self._coords = self.draw_mask(theta.device)
        self._steps += 1
        return self.coordinate_gradient(problem, theta, key, self._coords)


class MeZO(Optimizer):
    """MeZO: two-point SPSA with regenerated perturbations; memory of inference."""

    name = "mezo"
    lr = Param(1e-3, "learning rate", tune=(1e-5, 0.1), log=True, gt=0)
    eps = Param(1e-3, "perturbation size ε", tune=(1e-5, 0.1), log=True, relative=True)
    q = Param(1, "perturbations per step (two evaluations each)")
    weight_decay = Param(0.0, "weight decay", ge=0)
    chunk = Param(2**20, "entries of z drawn at once: bounds the memory beyond θ")

    @classmethod
    def check_params(cls, params) -> None:
        if params["eps"].value <= 0 or params["q"] < 1 or params["chunk"] < 1:
            raise UsageError("mezo: eps must be positive, q and chunk at least 1; got "
                             f"eps={params['eps']}, q={params['q']}, chunk={params['chunk']}.")

    def prepare(self, problem: Problem) -> None:
        """ε on ``problem``'s scale: call before :meth:`projected_gradient` (``run`` does)."""
        self._eps, self._shape = problem.step_parts(self.eps)
        if self._shape is not None:
            # ε carries the mean scale and the shape (mean 1) only the spread, so that the
            # absolute lr means the same as on a uniform scale of that mean
            mean = float(self._shape.mean())
            self._eps, self._shape = self._eps * mean, self._shape / mean

    def run(self, problem: Problem) -> None:
        theta = problem.initial()
        seeds = self.generator(problem.device)
        self.prepare(problem)
        while True:
            key = problem.new_key()
            steps = []
            for _ in range(self.q):
                seed = int(torch.randint(2**62, (1,), generator=seeds, device=seeds.device))
                steps.append((seed, self.projected_gradient(problem, theta, key, seed)))
            if self.weight_decay:
                theta.mul_(1.0 - self.lr * self.weight_decay)
            for seed, slope in steps:
                self.perturb(theta, seed, -self.lr * slope / self.q, self._shape)
            problem.report(theta)

    def projected_gradient(self, problem: Problem, theta: torch.Tensor, key: int,
                           seed: int) -> float:
        """(ℓ(θ + εz) − ℓ(θ − εz)) / 2ε, perturbing θ in place and restoring it. On a task
        whose scale varies, z is stretched by the scale's shape (its mean 1; ε carries the
        mean scale): the perturbation and the step move along shape ⊙ z."""
        eps, shape = self._eps, self._shape
        self.perturb(theta, seed, eps, shape)
        undo = -eps
        try:  # restore θ even when the budget runs out in between
            plus = problem.loss(theta[None], key)
            self.perturb(theta, seed, -2.0 * eps, shape)
            undo = eps
            minus = problem.loss(theta[None], key)
        finally:
            self.perturb(theta, seed, undo, shape)
        return float(plus[0] - minus[0]) / (2.0 * eps)

    def perturb(self, theta: torch.Tensor, seed: int, scale: float,
                shape: torch.Tensor | None = None) -> None:
        """θ += scale·(shape ⊙ z) in place (shape None: 1), z ~ N(0, I) redrawn from ``seed``
        chunk by chunk."""
        gen = torch.Generator(device=theta.device).manual_seed(seed)
        shapes = shape.split(self.chunk) if shape is not None else None
        for index, view in enumerate(theta.view(-1).split(self.chunk)):
            z = torch.randn(view.shape, generator=gen, device=theta.device, dtype=theta.dtype)
            view.add_(z if shapes is None else z * shapes[index], alpha=scale)


def _chunks(total: int, size: int) -> list[int]:
    size = max(int(size), 1)
    return [min(size, total - lo) for lo in range(0, total, size)]


@hookimpl
def zgbench_optimizers():
    return [SparseCGE, MeZO]
