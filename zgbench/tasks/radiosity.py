"""``radiosity``: train a neural radiance cache to satisfy the rendering equation on a scene.

Hadadan, Chen and Zwicker, "Neural Radiosity", SIGGRAPH Asia 2021; Cho and Cho, "Fast and
Accurate Neural Rendering Using Semi-Gradients", 2024.

A network L_θ(x, ω) holds the scattered radiance of a Mitsuba 3 scene (emission is added
exactly where it is known). θ is the network's parameters as one flat vector: a
multiresolution grid encoding of x (:mod:`zgbench.tasks._gridenc`) and an MLP whose inputs are
[x normalised to the scene box, ω, normal, diffuse albedo, grid features], output abs().
Training minimises the residual of L_θ = T(E + L_θ) at random surface points
(:mod:`zgbench.tasks._scenes` samples them and traces the right side with Mitsuba).

Capabilities:

- ``residual(theta, key, detach=(False,)) -> Residual``: the left side ``lhs[N, 3]`` =
  L_θ(x_i, ω_i) and one right-side estimate ``rhs[j][N, 3]`` per entry of ``detach``, each
  from its own independent M incident samples at the same points; ``theta`` is a ``[dim]``
  tensor (give it ``requires_grad``): ``lhs`` and every ``rhs[j]`` with ``detach[j] = False``
  carry autograd graphs to it; for ``detach[j] = True`` the right side's network queries run
  under ``torch.no_grad`` (no graph, no stored activations). ``key`` fixes the points, the
  directions and every Monte Carlo sample; estimate j is the same whatever follows it in
  ``detach``. ``Residual.weight(eps)`` is the relative normalisation 1 / (sg(lhs)² + ε) and
  ``Residual.directions[j]`` the ``[N, M, 3]`` incident directions of estimate j. The
  optimizers of :mod:`zgbench.optimizers.semigradient` charge each call one gradient
  evaluation (``problem.call("residual", ..., grads=1)``), whatever the number of estimates;
  the backward pass they run on it counts as optimizer time.
- ``loss(thetas[B, d], key) -> [B]``: the mean relative squared residual
  ``mean((lhs − rhs)² / (lhs² + ε))`` (ε = 0.01, one M-sample right side) under no-grad, for
  every row on the same samples, so black-box optimizers can run on the task.
- ``grad(thetas, key)``: the autodiff gradient of that loss with the denominator detached:
  the full-gradient (Neural Radiosity) gradient.

``evaluate`` renders the cache from the scene's camera (first non-delta hit; emission plus
L_θ) and compares it with a path-traced reference: RelMSE (primary), MAPE and MSE.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from zgbench import Budget, Param, Task, UsageError, hookimpl
from zgbench import Cost
from zgbench.tasks import _anchors, _mitsuba
from zgbench.tasks._gridenc import GridEncoding
from zgbench.tasks._scenes import RHS_UNIFORMS, SCENES, Queries, Tracer, reference

#: ε of the relative normalisation (Hadadan et al., Cho and Cho) and of RelMSE / MAPE
EPS = 0.01
_GEOMETRY_CACHE = 3  # keys whose θ-independent samples are kept (current step, eval key)
_KEEP_CAMERA_INPUTS = 2**23  # grid corners (queries × levels × 8) kept for the camera render
_CHUNK = 2**25  # grid corners (θs × queries × levels × 8) per no-grad network evaluation


@dataclass
class Residual:
    """What ``residual`` returns: the two sides of L_θ = T(E + L_θ) at N sampled points."""

    lhs: torch.Tensor               # [N, 3] L_θ(x_i, ω_i), with graph
    rhs: tuple[torch.Tensor, ...]   # one [N, 3] estimate per requested entry
    directions: tuple[torch.Tensor, ...]  # [N, M, 3] the incident samples of each estimate

    def weight(self, eps: float = EPS) -> torch.Tensor:
        """Relative normalisation 1 / (sg(L_θ)² + ε), per point and channel."""
        return 1.0 / (self.lhs.detach() ** 2 + eps)


@dataclass
class _Samples:
    """The θ-independent part of one key: queries for the left side and each right side."""

    lhs: Queries
    rhs: list[Queries]
    directions: list[torch.Tensor]


class RadianceNet:
    """The cache L_θ as a pure function of a flat parameter vector (so optimizers own θ and the
    task can evaluate many θ at once with batched matrix products)."""

    def __init__(self, encoding: GridEncoding, hidden: int, layers: int) -> None:
        self.encoding = encoding
        sizes = [12 + encoding.out_dim] + [hidden] * layers + [3]
        self.shapes: list[tuple[str, tuple[int, ...]]] = [
            ("table", tuple(encoding.table.shape))]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.shapes += [(f"w{i}", (fan_out, fan_in)), (f"b{i}", (fan_out,))]
        self.layers = len(sizes) - 1
        self.dim = sum(int(np.prod(s)) for _, s in self.shapes)

    def unflatten(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views ``[B, *shape]`` of each parameter in ``thetas[B, dim]``."""
        out, start = {}, 0
        for name, shape in self.shapes:
            size = int(np.prod(shape))
            out[name] = thetas[:, start:start + size].reshape(thetas.shape[0], *shape)
            start += size
        return out

    def initial(self, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """Instant-NGP table init (±1e-4) and PyTorch's default Linear init (±1/√fan_in)."""
        fan_in = {f"b{name[1:]}": shape[1] for name, shape in self.shapes if name[0] == "w"}
        fan_in.update({name: shape[1] for name, shape in self.shapes if name[0] == "w"})
        parts = []
        for name, shape in self.shapes:
            bound = 1e-4 if name == "table" else 1.0 / np.sqrt(fan_in[name])
            parts.append((torch.rand(shape, generator=gen, device=device) * 2 - 1).reshape(-1)
                         * bound)
        return torch.cat(parts)

    def scale(self, device: torch.device) -> torch.Tensor:
        """The task's scale ``[dim]``: each MLP weight and bias gets its init's standard
        deviation 1/√(3·fan_in) (0.07-0.11 at the defaults); a weight's useful range is a few
        of those either side of zero, as COCO's box is ±5 at scale 1. The hash-grid table
        starts at ±1e-4, which says nothing of its range (measured: RMS 0.075 after 150
        semi-gradient steps at lr 0.01, cornell-box), so it gets the first layer's value."""
        fan_in = {name: shape[1] for name, shape in self.shapes if name[0] == "w"}
        fan_in.update({f"b{name[1:]}": n for name, n in fan_in.items()})
        fan_in["table"] = fan_in["w0"]
        parts = [torch.full((int(np.prod(shape)),), (3.0 * fan_in[name]) ** -0.5)
                 for name, shape in self.shapes]
        return torch.cat(parts).to(device)

    def __call__(self, thetas: torch.Tensor, static: torch.Tensor, index: torch.Tensor,
                 weight: torch.Tensor) -> torch.Tensor:
        """L_θ ``[B, K, 3]`` for ``thetas[B, dim]`` at inputs ``static[K, 12]`` and grid
        rows/weights ``[K, L, 8]``: batched matrix products, no loop over θ."""
        params = self.unflatten(thetas)
        grid = self.encoding.interpolate(params["table"], index, weight)
        h = torch.cat([static.expand(thetas.shape[0], *static.shape), grid], -1)
        for i in range(self.layers):
            h = torch.baddbmm(params[f"b{i}"][:, None, :], h, params[f"w{i}"].transpose(1, 2))
            if i < self.layers - 1:
                h = torch.relu(h)
        return h.abs()


class Radiosity(Task):
    """Neural radiosity: fit a radiance cache to the rendering equation of a Mitsuba scene."""

    name = "radiosity"
    provides = frozenset({"grad", "residual"})
    #: a residual call is one gradient evaluation, whatever the number of RHS estimates
    costs = {"grad": Cost(grads=1), "residual": Cost(grads=1, per="call")}
    needs = ("mitsuba",)
    extra = "graphics"
    metrics = {"relmse": "min", "mape": "min", "mse": "min"}
    primary_metric = "relmse"
    family = "radiosity"
    default_budget = Budget(evals=4000, grads=300, steps=300)
    scale_note = "per layer: the MLP's init std 1/sqrt(3 fan_in), the table the first layer's"

    scene = Param("cornell-box", "scene", choices=tuple(SCENES))
    batch = Param(256, "surface points per residual (the papers: 2^14)")
    m = Param(4, "incident samples per point for one right-side estimate (the papers: 32)")
    res = Param(32, "side of the rendered image in pixels")
    spp = Param(4, "samples per pixel of the cache render (stratified, first hit)")
    ref_spp = Param(4096, "samples per pixel of the path-traced reference")
    levels = Param(8, "grid levels")
    features = Param(2, "features per grid level")
    log2_table = Param(14, "log2 of the rows of a hashed grid level")
    base_res = Param(4, "coarsest grid resolution")
    max_res = Param(128, "finest grid resolution")
    hidden = Param(64, "width of the MLP's hidden layers")
    layers = Param(2, "hidden layers of the MLP")

    #: Adam steps, learning rate and its decay (per third) of :meth:`reference`.
    REFERENCE_STEPS = 100
    REFERENCE_LR = 1e-2
    REFERENCE_DECAY = 0.35
    reference_note = ("full-gradient cache: Adam (lr 1e-2, x0.35 per third) on grad, "
                      "100 steps from θ₀")

    @classmethod
    def check_params(cls, params):
        for key in ("batch", "m", "res", "spp", "ref_spp", "levels", "features", "hidden",
                    "layers"):
            if params[key] < 1:
                raise UsageError(f"radiosity: {key} must be at least 1, got {params[key]}.")
        if not 1 <= params["base_res"] <= params["max_res"]:
            raise UsageError("radiosity: need 1 <= base_res <= max_res, got "
                             f"base_res={params['base_res']}, max_res={params['max_res']}.")
        if not 4 <= params["log2_table"] <= 24:
            raise UsageError(f"radiosity: log2_table must be in 4..24, got {params['log2_table']}.")

    # ------------------------------------------------------------------------ setup
    def setup(self) -> None:
        self.check_params(self.params)
        mi = _mitsuba.load(str(self.device), needed_by=f"task {self.name!r}")
        self._mi = mi
        scene = mi.load_dict(SCENES[self.scene](mi, self.res))
        self.tracer = Tracer(mi, scene, self.device)
        ref = reference(mi, scene, self.scene, self.res, self.ref_spp)
        self.reference_image = torch.as_tensor(ref, device=self.device)
        self.net = RadianceNet(
            GridEncoding(self.levels, self.features, self.log2_table, self.base_res,
                         self.max_res).to(self.device), self.hidden, self.layers)
        self.dim = self.net.dim
        self.theta0 = self.net.initial(self.generator(), self.device)
        self.scale = self.net.scale(self.device)
        self._camera = self.tracer.camera(self.res, self.spp)
        # the camera's network inputs never change: keep them unless they are large
        small = self._camera.p.shape[0] * self.levels * 8 <= _KEEP_CAMERA_INPUTS
        self._camera_inputs = self._inputs(self._camera) if small else None
        self._cache: OrderedDict[tuple[int, int], _Samples] = OrderedDict()

    def initial(self) -> torch.Tensor:
        return self.theta0.clone()

    # ------------------------------------------------------------------- sampling
    def _samples(self, key: int, estimates: int) -> _Samples:
        """The θ-independent samples of ``key`` (cached for the last few keys)."""
        for (k, e), value in self._cache.items():
            if k == key and e >= estimates:
                self._cache.move_to_end((k, e))
                return _Samples(value.lhs, value.rhs[:estimates], value.directions[:estimates])
        gen = self.generator(key)
        n, m = self.batch, self.m
        u_points = torch.rand(n, 5, generator=gen, device=self.device)
        si, lhs = self.tracer.sample_points(u_points)
        rhs, directions = [], []
        for _ in range(estimates):
            u = torch.rand(n * m, RHS_UNIFORMS, generator=gen, device=self.device)
            queries, dirs = self.tracer.right_side(si, u, m)
            rhs.append(queries)
            directions.append(dirs.reshape(n, m, 3))
        samples = _Samples(lhs, rhs, directions)
        self._cache[(key, estimates)] = samples
        while len(self._cache) > _GEOMETRY_CACHE:
            self._cache.popitem(last=False)
        return samples

    def _inputs(self, q: Queries) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """θ-independent network inputs: [x in [-1, 1], ω, n, albedo] and grid rows/weights."""
        lo, hi = self.tracer.bbox
        x = (q.p - lo) / (hi - lo)
        static = torch.cat([2 * x - 1, q.d, q.n, q.albedo], -1)
        index, weight = self.net.encoding.indices_and_weights(x)
        return static, index, weight

    def _radiance(self, theta: torch.Tensor, q: Queries, inputs=None) -> torch.Tensor:
        """L_θ at the queries: ``theta[d] -> [K, 3]`` or ``theta[B, d] -> [B, K, 3]``."""
        out = self.net(theta.reshape(-1, self.dim), *(inputs or self._inputs(q)))
        return out[0] if theta.ndim == 1 else out

    def _radiance_no_grad(self, thetas: torch.Tensor, q: Queries) -> torch.Tensor:
        """:meth:`_radiance` without a graph, in chunks of queries (bounds the memory of the
        grid's gathered corners at paper size: 2^19 right-side queries, a 256² camera)."""
        rows = max(1, _CHUNK // (thetas.reshape(-1, self.dim).shape[0] * self.levels * 8))
        parts = []
        with torch.no_grad():
            for start in range(0, q.p.shape[0], rows):
                part = slice(start, start + rows)
                sub = replace(q, p=q.p[part], d=q.d[part], n=q.n[part], albedo=q.albedo[part])
                parts.append(self._radiance(thetas, sub))
        return torch.cat(parts, -2) if parts else self._radiance(thetas, q)

    # ---------------------------------------------------------------- capabilities
    def residual(self, theta: torch.Tensor, key: int,
                 detach: Sequence[bool] = (False,)) -> Residual:
        """LHS and independent RHS estimates at the points of ``key``; see the module doc."""
        if theta.ndim != 1 or theta.shape[0] != self.dim:
            raise UsageError(f"radiosity.residual takes one parameter vector of shape "
                             f"[{self.dim}], got {tuple(theta.shape)}.")
        if len(detach) < 1:
            raise UsageError("radiosity.residual: detach needs at least one entry "
                             "(one per right-side estimate).")
        samples = self._samples(key, len(detach))
        lhs = samples.lhs.combine(self._radiance(theta, samples.lhs))
        rhs = []
        for queries, off in zip(samples.rhs, detach):
            with torch.no_grad() if off else contextlib.nullcontext():
                rhs.append(queries.combine(self._radiance(theta, queries)))
        return Residual(lhs, tuple(rhs), tuple(samples.directions))

    def _relative(self, thetas: torch.Tensor, key: int, radiance) -> torch.Tensor:
        """Mean relative squared residual of each row of ``thetas`` on the samples of ``key``."""
        samples = self._samples(key, 1)
        lhs = samples.lhs.combine(radiance(thetas, samples.lhs))
        rhs = samples.rhs[0].combine(radiance(thetas, samples.rhs[0]))
        rel = (lhs - rhs) ** 2 / (lhs.detach() ** 2 + EPS)
        return rel.mean(dim=(-2, -1))

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        return self._relative(thetas, key, self._radiance_no_grad)

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            thetas = thetas.detach().requires_grad_(True)
            values = self._relative(thetas, key, self._radiance)
            (grads,) = torch.autograd.grad(values.sum(), thetas)
        return values.detach(), grads

    # ------------------------------------------------------------------ evaluation
    def image(self, theta: torch.Tensor) -> torch.Tensor:
        """The cache rendered from the scene's camera, ``[res, res, 3]``."""
        with torch.no_grad():
            if self._camera_inputs is not None:
                radiance = self._radiance(theta.reshape(-1), self._camera, self._camera_inputs)
            else:
                radiance = self._radiance_no_grad(theta.reshape(-1), self._camera)
            pixels = self._camera.combine(radiance)
        return pixels.reshape(self.res, self.res, 3)

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        return image_metrics(self.image(theta), self.reference_image)

    def sanity(self) -> dict[str, dict[str, float]]:
        """The start, black radiance (L = 0: emission only) and the constant radiance whose
        render has the reference image's mean colour (L = c everywhere, c solved per channel:
        the render is affine in c). Why these: a cache that learned nothing but the overall
        brightness must lose to a trained one. (The ``furnace`` test scene is the exception:
        its exact solution is a constant.)"""
        camera, shape = self._camera, self.reference_image.shape
        queries = camera.p.shape[0]
        black = camera.combine(torch.zeros(queries, 3, device=self.device))
        gain = camera.combine(torch.ones(queries, 3, device=self.device)) - black
        target = self.reference_image.reshape(-1, 3).mean(0)
        c = ((target - black.mean(0)) / gain.mean(0).clamp_min(1e-9)).clamp_min(0.0)
        return {**super().sanity(),
                "black": image_metrics(black.reshape(shape), self.reference_image),
                "constant radiance": image_metrics((black + gain * c).reshape(shape),
                                                   self.reference_image)}

    def reference(self) -> dict[str, float]:
        """A full-gradient cache (the Neural Radiosity baseline): Adam on :meth:`grad` for
        :attr:`REFERENCE_STEPS` steps from θ₀."""
        theta = _anchors.adam_on_grad(self, self.REFERENCE_STEPS, self.REFERENCE_LR,
                                      self.REFERENCE_DECAY)
        return self.evaluate(theta)

    def artifacts(self, theta: torch.Tensor, directory: str) -> list[str]:
        """``cache.png`` (the rendered cache) beside ``reference.png`` (sRGB, clipped)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, img in (("cache", self.image(theta)), ("reference", self.reference_image)):
            path = folder / f"{name}.png"
            self._mi.util.convert_to_bitmap(img.detach().cpu().numpy()).write(str(path))
            paths.append(str(path))
        return paths


def image_metrics(image: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """RelMSE = mean((p − g)² / (g² + ε)), MAPE = mean(|p − g| / (g + ε)), MSE (ε = 0.01)."""
    diff = image - reference
    return {
        "relmse": float((diff**2 / (reference**2 + EPS)).mean()),
        "mape": float((diff.abs() / (reference + EPS)).mean()),
        "mse": float((diff**2).mean()),
    }


@hookimpl
def zgbench_tasks():
    return [Radiosity]
