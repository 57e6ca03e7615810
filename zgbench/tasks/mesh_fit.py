"""``mesh-fit``: recover a triangle mesh from images through a hard, non-differentiable renderer.

After ZeroGrads (Fischer & Ritschel, "ZeroGrads: Learning Local Surrogates for
Non-Differentiable Graphics", SIGGRAPH 2024 / ACM TOG), which optimizes graphics parameters
through renderers without gradients and claims to scale to ~35k interlinked variables; the
largest level here (10,242 vertices, d = 30,726) is of that size.

The unknowns θ are per-vertex offsets of a unit icosphere (``verts`` = 42, 162, 642, 2562,
10242, ... vertices; d = 3 · verts: 1,926 / 7,686 / 30,726 for the paper-size levels). The
mesh ``sphere + θ`` is rendered from ``views`` training cameras and compared with the target's
renders: loss = mean squared pixel error over views, channels and pixels, plus ``smooth`` x
the Laplacian regularizer (mean |L(θ − θ₀)|² over vertices, L the uniform graph
Laplacian), the usual smoothness term of multi-view mesh reconstruction (issue 22 notes the
ZeroGrads multi-view mesh experiment has one): 0 at the start, small for a uniform scale, and
large on the spikes and folds that black-box steps leave. Measured at
verts=42 (seed 0, Adam on the soft loss, 150 steps, soft edges σ 0.5 px): weight 0 / 0.1 /
1 / 10 gave Chamfer 0.0099 / 0.0023 / 0.0041 / 0.0046, so the default is 0.1. At 32² and 2
views (seeds 0-2, 3,000 evaluations, σ 0.3 x scale) weight 0 / 0.01 / 0.1 gave the reference
0.0149-0.0200 / 0.0059-0.0142 / 0.0038-0.0062 and cma-es 0.0172-0.0193 / 0.0101-0.0212 /
0.0074-0.0121 against starts of 0.0116-0.0197: without it neither beats the start.

θ₀ is the icosphere scaled to the target's mean radius: a unit-sphere start sat outside every
generated target (radii 0.5-1.0), so "shrink", one number, beat most optimizers; now the
target lies partly inside and partly outside the start. ``scale`` (the useful step) is half
the start mesh's mean edge length: 0.3 x scale moves a vertex 0.15 edge lengths (0.023 at
642 vertices, where σ 0.02 was measured good and σ 0.33 flips half the faces).

Targets: a shape generated from the task seed (``target=blob|ellipsoid|cube|bumpy``, a radial
deformation of the same icosphere, so the exact solution θ* exists and the loss is 0 there),
or a mesh file (``mesh=path.obj``, read with trimesh, centred and scaled into the unit sphere).

Renderers (both hard: every pixel value comes from discrete visibility; no anti-aliasing, no
soft rasterization, so autodiff of the loss gives no useful gradient):

- ``renderer=raster`` (default): the batched z-buffer rasterizer of
  :mod:`zgbench.tasks._raster`, one sample at each pixel centre, B meshes × V views in one pass,
  on the task's device (a compiled numba kernel on the CPU, torch tensor ops on CUDA; the same
  images either way).
- ``renderer=mitsuba``: Mitsuba 3 used as a black box (``llvm_ad_rgb`` on the CPU,
  ``cuda_ad_rgb`` on a GPU), one scene whose batch sensor renders all V views at once, looped
  over the B candidates (a black box takes one mesh at a time). ``silhouette`` and ``normals``
  are AOV renders with one sample at the pixel centre (the same images as the rasterizer);
  ``lambert`` runs the ``direct`` or ``path`` integrator with ``spp`` samples per pixel under
  the same lights, seeded by the loss ``key``: Monte Carlo noise, shadows, pixel samples spread
  over the pixel by Mitsuba's sampler. Its target is rendered once at ``ref_spp``.

``grad`` (the differentiable-rendering reference): the hard loss values and the gradient of
the same loss with the hard rasterizer replaced by the SoftRas-style soft rasterizer of
:mod:`zgbench.tasks._softras` (same cameras and flat shading); ``adam`` on it is what a
differentiable-rendering pipeline reaches, and :meth:`MeshFit.reference` runs it.

``evaluate`` (never the training loss):

- ``chamfer`` (primary): symmetric Chamfer distance (mean squared nearest-neighbour distance
  both ways) between area-uniform surface samples of the result and of the target (``verts``
  of them, at least 1,024 and at most 4,096): the shape the method is meant to recover,
  independent of cameras and shading. Chosen because no trivial output comes near it
  (measured, seeds 0-2 at verts=42 and 0-1 at 642): the empty image (collapsed mesh) scores
  0.72-1.05, the best uniform scale 0.011-0.025 (about the start's, which sits at the mean
  radius), the start 0.012-0.025, the soft-Adam reference 0.0009-0.0012 (42) and
  0.0055-0.0068 (642): the widest margin of the candidates. ``image_mse`` (held-out, the
  loss's form) also orders them, with less room at 642 (reference 0.0040-0.0041 against
  the start's 0.0068-0.015); RelMSE = mean((p − g)² / (g² + 0.01)) puts ~99% of its weight
  on background pixels, so an image of a shrunken sphere scores 0.099-0.114 at 642, next to
  the reference's 0.074-0.103.
- ``image_mse``: mean squared pixel error over ``heldout`` cameras that are not training views
  (random directions drawn from the task seed): the appearance, and fits that only match the
  training views (spikes or dents seen from nowhere in the training set).
- ``image_relmse``: the former primary metric, kept for older claims and comparisons.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zgbench import Budget, MissingExtra, Param, Task, UsageError, hookimpl
from zgbench import Cost
from zgbench.tasks import _anchors, _meshes, _raster, _softras

DISTANCE, FOV = 3.0, 45.0
#: Most pixels (candidates × views × H × W) rendered in one rasterizer pass (bounds memory).
PIXELS_PER_PASS = 1 << 22
GRAPHICS_HINT = "pip install 'zgbench[graphics]'"
#: Default weight of the Laplacian regularizer (see ``MeshFit.roughness``; measured below).
LAPLACIAN_WEIGHT = 0.1
#: The reference: Adam steps on the soft loss, and its learning rate in units of ``scale``.
REF_STEPS, REF_LR = 100, 0.2
#: Most pixels (candidates × views × H × W) in one soft-rasterizer pass of ``grad`` (bounds
#: autograd memory: 8 candidates at 4 views of 64², 1 at 8 views of 128²).
SOFT_PIXELS = 1 << 17


def relmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RelMSE per leading index: mean((p − g)² / (g² + 0.01)) over the trailing dimensions."""
    err = (pred - target) ** 2 / (target**2 + 0.01)
    return err.flatten(1).mean(1)


class MeshFit(Task):
    """Mesh fitting (ZeroGrads): icosphere vertex offsets seen through a hard renderer."""

    name = "mesh-fit"
    provides = frozenset({"grad"})
    costs = {"grad": Cost(grads=1)}
    scale_note = "half the start mesh's mean edge length (0.053 at 642 vertices)"
    reference_note = (f"Adam on the soft rasterizer's loss (SoftRas-style, same cameras and "
                      f"shading), {REF_STEPS} steps of {REF_LR} x scale from the start")
    metrics = {"chamfer": "min", "image_mse": "min", "image_relmse": "min"}
    primary_metric = "chamfer"
    family = "graphics"
    default_budget = Budget(evals=20000)

    verts = Param(642, "icosphere vertices (10*4^k+2: 42, 162, 642, 2562, 10242); d = 3*verts")
    target = Param("blob", "target shape drawn from the seed", choices=_meshes.SHAPES)
    mesh = Param("", "mesh file to fit instead of a generated target (read with trimesh)")
    renderer = Param("raster", "renderer", choices=("raster", "mitsuba"))
    shading = Param("lambert", "what the images show", choices=_raster.SHADINGS)
    res = Param(64, "image width and height in pixels")
    views = Param(4, "training views (cameras of the loss)")
    heldout = Param(4, "held-out views (cameras of evaluate)")
    integrator = Param("direct", "Mitsuba integrator for lambert shading",
                       choices=("direct", "path"))
    spp = Param(4, "Mitsuba samples per pixel per loss render (lambert shading)")
    ref_spp = Param(64, "Mitsuba samples per pixel of target and held-out renders (lambert)")
    smooth = Param(LAPLACIAN_WEIGHT, "weight of the Laplacian smoothness term in the loss "
                   "(0: image error only)", ge=0)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        _meshes.level_for(params["verts"])
        for key, low, high in (("res", 8, 4096), ("views", 1, 64), ("heldout", 1, 64),
                               ("spp", 1, 1 << 16), ("ref_spp", 1, 1 << 16)):
            if not low <= params[key] <= high:
                raise UsageError(f"mesh-fit: {key}={params[key]} is out of range; "
                                 f"use {low} <= {key} <= {high}.")
        if params["renderer"] == "mitsuba" and importlib.util.find_spec("mitsuba") is None:
            raise MissingExtra("mesh-fit with renderer=mitsuba needs the extra graphics "
                               f"(Mitsuba 3): {GRAPHICS_HINT}, or use renderer=raster.")
        if params["mesh"]:
            if importlib.util.find_spec("trimesh") is None:
                raise MissingExtra(f"mesh-fit with mesh=PATH needs trimesh: {GRAPHICS_HINT}.")
            if not Path(params["mesh"]).expanduser().is_file():
                raise UsageError(f"mesh-fit: mesh file {params['mesh']!r} does not exist.")

    # ------------------------------------------------------------------------ set-up
    def setup(self) -> None:
        self.check_params(self.params)
        gen = self.generator()
        base, self.faces = _meshes.icosphere(_meshes.level_for(self.verts), self.device)
        self.base = base
        self.dim = base.numel()
        if self.mesh:
            self.target_verts, self.target_faces = _meshes.load_mesh(self.mesh, self.device)
            self.target_theta = None
        else:
            radius = _meshes.shape_radius(self.target, base, gen)
            self.target_verts, self.target_faces = base * radius[:, None], self.faces
            self.target_theta = (self.target_verts - base).reshape(-1)
        self.edges = _meshes.edges(self.faces)
        self.laplace = _meshes.laplacian_matrix(self.edges, base.shape[0])
        self.start = self._start_theta()
        # The useful step: half the start mesh's mean edge length, so that the suite's common
        # sampling sigma of 0.3 x scale moves a vertex by 0.15 edge lengths (0.023 at 642
        # vertices, where sigma 0.02 was measured good and 0.33 flips half the faces).
        self.scale = 0.5 * _meshes.mean_edge_length(self.mesh_vertices(self.start[None])[0],
                                                    self.edges)
        self.cameras = {"train": self._train_cameras(), "heldout": self._heldout_cameras(gen)}
        self._renderers: dict[tuple[str, str], Any] = {}
        target = self.target_verts[None]
        self.target_images = {
            split: self._render(target, split, faces=self.target_faces, reference=True)[0]
            for split in ("train", "heldout")}
        self.points = min(max(self.verts, 1024), 4096)  # Chamfer samples per surface
        self.target_points = _meshes.sample_surface(self.target_verts, self.target_faces,
                                                    self.points, self.generator(self.seed + 1))

    def _start_theta(self) -> torch.Tensor:
        """θ₀: the icosphere scaled to the target's mean radius (its mean distance from the
        centre over area-uniform surface samples). A unit-sphere start sat outside every
        generated target (radii 0.5-1.0), so shrinking, one number, beat most optimizers;
        at the mean radius the target lies partly inside and partly outside the start and
        a uniform scale gains nothing an optimizer must not also find."""
        points = _meshes.sample_surface(self.target_verts, self.target_faces, 4096,
                                        self.generator(self.seed + 2))
        radius = float(points.norm(dim=1).mean())
        return ((radius - 1.0) * self.base).reshape(-1)

    def _train_cameras(self) -> _raster.Cameras:
        """Fixed training views: evenly spaced azimuths, elevations alternating +25° / −15°."""
        k = torch.arange(self.views, device=self.device, dtype=torch.float32)
        azimuth = 30.0 + 360.0 * k / self.views
        elevation = torch.where(k % 2 == 0, 25.0, -15.0)
        eye = _raster.orbit(azimuth, elevation, DISTANCE)
        return _raster.look_at(eye, FOV, self.res, self.res)

    def _heldout_cameras(self, gen: torch.Generator) -> _raster.Cameras:
        """Held-out views: random azimuths and elevations in [−40°, 40°] from the task seed."""
        u = torch.rand(2, self.heldout, generator=gen, device=self.device)
        eye = _raster.orbit(360.0 * u[0], 80.0 * u[1] - 40.0, DISTANCE)
        return _raster.look_at(eye, FOV, self.res, self.res)

    # ------------------------------------------------------------------------ contract
    def initial(self) -> torch.Tensor:
        return self.start.clone()

    def mesh_vertices(self, thetas: torch.Tensor) -> torch.Tensor:
        """Vertices ``[B, verts, 3]`` of the meshes of parameter vectors ``[B, d]``."""
        offsets = thetas.reshape(thetas.shape[0], -1, 3)
        return self.base[None].to(offsets.dtype) + offsets

    def render(self, thetas: torch.Tensor, split: str = "train", key: int = 0,
               reference: bool = False) -> torch.Tensor:
        """Images ``[B, V, C, H, W]`` of the meshes of ``thetas`` from the ``split`` cameras
        (``reference``: Mitsuba at ``ref_spp``, as the target)."""
        return self._render(self.mesh_vertices(thetas), split, key=key, reference=reference)

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        target = self.target_images["train"]
        per_pass = max(PIXELS_PER_PASS // target.numel(), 1)
        image = torch.cat([((self.render(part, "train", key) - target) ** 2).flatten(1).mean(1)
                           for part in thetas.split(per_pass)])
        return image + self.smooth * self.roughness(thetas) if self.smooth else image

    def roughness(self, thetas: torch.Tensor) -> torch.Tensor:
        """The Laplacian regularizer ``[B]``: mean over vertices of |L(θ − θ₀)|², L the
        uniform graph Laplacian (a vertex minus the mean of its neighbours). It penalises
        the offsets from the start (not the positions, whose Laplacian would pull every
        mesh towards shrinking), so it is 0 at the start, small for a uniform scale of it (the
        sphere's own Laplacian) and on the smooth generated targets, and large on spikes and
        folds, the artefacts that black-box steps leave and that the held-out views see."""
        offsets = (thetas - self.start).reshape(thetas.shape[0], -1, 3)
        rough = _meshes.laplacian(offsets, self.laplace).pow(2).sum(-1).mean(-1)
        return rough.nan_to_num(nan=1e6, posinf=1e6)  # a non-finite θ: as rough as can be

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``grad`` capability: the hard loss values ``[B]`` (what :meth:`loss` returns)
        and the gradient ``[B, d]`` of the *soft* loss, the same mean squared error against the
        same target images with the hard rasterizer replaced by the soft one of
        :mod:`zgbench.tasks._softras` (plus the same regularizer): the gradient a
        differentiable-rendering pipeline would follow. The hard loss is piecewise constant
        in the silhouette, so its own autodiff gradient carries no signal. With
        ``renderer=mitsuba`` the soft images are still the rasterizer's flat shading (no
        shadows, no Monte Carlo noise) compared with Mitsuba's target: an approximation."""
        per_pass = max(SOFT_PIXELS // self.target_images["train"][:, 0].numel(), 1)
        grads = torch.cat([self._soft_grad(part) for part in thetas.split(per_pass)])
        return self.loss(thetas, key), grads

    def soft_loss(self, thetas: torch.Tensor) -> torch.Tensor:
        """The soft rasterizer's loss ``[B]`` (differentiable in ``thetas``)."""
        verts = self.mesh_vertices(thetas)
        image = _softras.soft_render(verts, self.faces, self.cameras["train"], self.shading)
        error = (image - self.target_images["train"].to(image.dtype)) ** 2
        return error.flatten(1).mean(1) + self.smooth * self.roughness(thetas)

    def _soft_grad(self, thetas: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            thetas = thetas.detach().requires_grad_(True)
            (grads,) = torch.autograd.grad(self.soft_loss(thetas).sum(), thetas)
        return grads

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        verts = self.mesh_vertices(theta.reshape(1, -1))
        image = self._render(verts, "heldout", reference=True)
        # The target's sampling stream: at θ* the samples coincide and the distance is 0.
        points = _meshes.sample_surface(verts[0], self.faces, self.points,
                                        self.generator(self.seed + 1))
        g = self.target_images["heldout"][None]
        return {
            "image_relmse": float(relmse(image, g)[0]),
            "image_mse": float(((image - g) ** 2).mean()),
            "chamfer": _meshes.chamfer(points, self.target_points),
        }

    def sanity(self) -> dict[str, dict[str, float]]:
        """Trivial outputs the primary metric must rank below :meth:`reference`: the empty
        image (every vertex at the centre: the mesh collapses and renders nothing), the best
        uniform scale of the sphere (θ = (s − 1) · base, s on a grid of radii, the best by the
        primary metric, so the strongest one-number answer) and the start."""
        radii = torch.linspace(0.3, 1.3, 21).tolist()
        scaled = [self.evaluate(((s - 1.0) * self.base).reshape(-1)) for s in radii]
        best = min(scaled, key=lambda m: m[self.primary_metric])
        return {"empty image": self.evaluate(-self.base.reshape(-1)),
                "best uniform scale": best,
                "start": self.evaluate(self.initial())}

    def reference(self) -> dict[str, float]:
        """The differentiable-rendering reference: Adam on :meth:`soft_loss` (the soft
        rasterizer's image error plus the regularizer) from the start, :data:`REF_STEPS`
        steps of :data:`REF_LR` x scale; the held-out metrics of where it ends."""
        theta = _anchors.adam_on_grad(self, REF_STEPS, REF_LR * self.scale,
                                      grad=lambda thetas, key: self._soft_grad(thetas))
        return self.evaluate(theta)

    def artifacts(self, theta: torch.Tensor, directory: str) -> list[str]:
        """``fit.png``: held-out views of target, start, result, |error|; ``reference.png``:
        the target alone (the harness stores θ beside them)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        result = self.render(theta.reshape(1, -1), "heldout", reference=True)[0]
        start = self.render(self.initial()[None], "heldout", reference=True)[0]
        target = self.target_images["heldout"]
        error = (result - target).abs().amax(1, keepdim=True)
        scale = max(1, 96 // self.res)
        png = _raster.save_rows(
            [("target", target), ("start", start), ("result", result), ("|error|", error)],
            folder / "fit.png", scale=scale)
        return [png, _raster.save_rows([("target", target)], folder / "reference.png", scale)]

    # ----------------------------------------------------------------------- renderers
    def _render(self, verts: torch.Tensor, split: str, key: int = 0,
                faces: torch.Tensor | None = None, reference: bool = False) -> torch.Tensor:
        faces = self.faces if faces is None else faces
        cams = self.cameras[split]
        if self.renderer == "raster":
            return _raster.render(verts, faces, cams, self.shading)
        name = "target" if faces is not self.faces else "mesh"
        renderer = self._renderers.get((name, split))
        if renderer is None:
            renderer = MitsubaRenderer(verts.shape[1], faces, cams, self.shading,
                                       self.integrator, self.device)
            self._renderers[(name, split)] = renderer
        spp = self.ref_spp if reference else self.spp
        return renderer.render(verts, spp=spp, seed=0 if reference else key)


class MitsubaRenderer:
    """Mitsuba 3 as a black box: one scene, its batch sensor renders every view at once.

    The meshes of a batch are rendered one after the other (a black-box renderer takes one
    scene at a time): their vertex positions are written into the scene, which rebuilds its
    acceleration structure, and rendered.
    """

    def __init__(self, vertex_count: int, faces: torch.Tensor, cams: _raster.Cameras,
                 shading: str, integrator: str, device: torch.device) -> None:
        from zgbench.tasks import _mitsuba

        mi = _mitsuba.load(str(device), needed_by="mesh-fit with renderer=mitsuba")
        self.mi, self.shading, self.device = mi, shading, device
        self.views, self.width, self.height = len(cams), cams.width, cams.height
        faces_np = faces.detach().cpu().numpy().astype(np.uint32)
        props = mi.Properties()
        props["bsdf"] = mi.load_dict({"type": "diffuse",
                                      "reflectance": {"type": "rgb", "value": 1.0}})
        mesh = mi.Mesh("mesh", vertex_count, faces_np.shape[0], props,
                       has_vertex_normals=False)
        mesh_params = mi.traverse(mesh)
        mesh_params["faces"] = mi.UInt32(faces_np.ravel())
        mesh_params.update()
        scene = {"type": "scene", "mesh": mesh, "sensor": self._sensor(cams)}
        if shading == "lambert":
            scene["integrator"] = {"type": integrator, "hide_emitters": True}
            for i, (direction, power) in enumerate(_raster.LIGHTS):
                scene[f"light{i}"] = {"type": "directional", "direction": [-c for c in direction],
                                      "irradiance": float(power * np.pi)}
            scene["ambient"] = {"type": "constant", "radiance": _raster.AMBIENT}
        else:
            scene["integrator"] = {"type": "aov", "aovs": "dd:depth,nn:geo_normal"}
        self.scene = mi.load_dict(scene)
        self.params = mi.traverse(self.scene)

    def _sensor(self, cams: _raster.Cameras) -> dict[str, Any]:
        T = self.mi.ScalarTransform4f
        sensor: dict[str, Any] = {
            "type": "batch",
            "film": {"type": "hdrfilm", "width": cams.width * len(cams), "height": cams.height,
                     "rfilter": {"type": "box"}, "pixel_format": "rgb"},
            # AOVs: one sample at the pixel centre (hard, like the rasterizer); lambert: the
            # Monte Carlo sampler, reseeded per call.
            "sampler": ({"type": "independent"} if self.shading == "lambert"
                        else {"type": "stratified", "sample_count": 1, "jitter": False}),
        }
        for i, eye in enumerate(cams.eye.detach().cpu().tolist()):
            sensor[f"view{i:03d}"] = {
                "type": "perspective", "fov": cams.fov, "fov_axis": "x",
                "near_clip": _raster.NEAR, "far_clip": _raster.FAR,
                "to_world": T().look_at(origin=eye, target=[0, 0, 0], up=[0, 1, 0])}
        return sensor

    def render(self, verts: torch.Tensor, spp: int, seed: int) -> torch.Tensor:
        """Images ``[B, V, C, H, W]`` of meshes ``verts [B, N, 3]`` (on the task's device)."""
        mi = self.mi
        images = []
        for mesh in verts.detach().float().cpu().numpy():
            self.params["mesh.vertex_positions"] = mi.Float(np.nan_to_num(mesh, nan=1e6).ravel())
            self.params.update()
            if self.shading == "lambert":
                image = mi.render(self.scene, seed=seed % 2**32, spp=spp)
            else:
                image = mi.render(self.scene, seed=0, spp=1)
            images.append(np.array(image))
        return self._convert(torch.from_numpy(np.stack(images)).to(self.device))

    def _convert(self, raw: torch.Tensor) -> torch.Tensor:
        """Mitsuba's ``[B, H, V*W, channels]`` to the rasterizer's ``[B, V, C, H, W]`` images."""
        B = raw.shape[0]
        raw = raw.reshape(B, self.height, self.views, self.width, -1).permute(0, 2, 4, 1, 3)
        if self.shading == "lambert":
            return raw.mean(2, keepdim=True)
        mask = (raw[:, :, :1] > 0).to(raw.dtype)
        if self.shading == "silhouette":
            return mask
        return (raw[:, :, 1:4] + 1) / 2 * mask


@hookimpl
def zgbench_tasks():
    return [MeshFit]
