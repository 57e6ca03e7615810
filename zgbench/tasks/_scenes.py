"""Scenes of the ``radiosity`` task and everything Mitsuba does for it.

Hadadan, Chen and Zwicker, "Neural Radiosity", SIGGRAPH Asia 2021; Cho and Cho, "Fast and
Accurate Neural Rendering Using Semi-Gradients", 2024. The network (torch) holds the
*scattered* radiance L_θ(x, ω) (emission excluded, as in Hadadan et al.'s code); the rendering
equation it must satisfy is L_θ = T(E + L_θ). Mitsuba 3 does all the light transport that does
not depend on θ:

- training points: a non-delta shape chosen with probability ∝ area, a uniform point on it,
  ω uniform on the front hemisphere (the sphere for two-sided BSDFs). Emitters that also
  reflect (the Cornell box's light has a diffuse BSDF) are included, as in Hadadan et al.'s
  code: the right side and the camera query the network there too;
- the right side at each point, M times: one emitter sample with MIS (next-event estimation)
  plus one BSDF sample, traced through delta (mirror, glass) surfaces for up to
  :data:`MAX_DELTA` bounces; its emitter hit is MIS-weighted, and the network is then queried
  at the hit, weighted by the BSDF throughput;
- the camera: first non-delta hit of each pixel sample (emission plus a network query).

Each of these comes back as :class:`Queries`: θ-independent radiance ``known`` per output row
plus network queries (inputs and weights) that add ``weight · L_θ(query)`` to a row. Random
numbers come from torch (the caller's generator), so a task's ``key`` fixes everything.

Scenes are built in code from Mitsuba dictionaries (plus ``mi.cornell_box()``); each has a
camera, and :func:`reference` renders it with Mitsuba's path tracer at high spp once and caches
the image on disk under a hash of the scene and settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

from zgbench import atomic_write, cache_dir, cache_key

#: delta (mirror/glass) bounces followed after a BSDF sample or a camera ray
MAX_DELTA = 6
#: most path-tracer samples in one render pass (bounds memory of the wavefront)
_PASS_SAMPLES = 2**20
#: bump when a scene definition changes: cached references of older versions are not reused
SCENE_VERSION = 1
#: uniforms per right-side sample: 2 emitter + 3 BSDF + 3 per delta bounce
RHS_UNIFORMS = 5 + 3 * MAX_DELTA


# ------------------------------------------------------------------------------ scenes
def _sensor(mi: ModuleType, res: int, origin=(0.0, 0.0, 3.9), target=(0.0, 0.0, 0.0),
            up=(0.0, 1.0, 0.0), fov: float = 39.3077) -> dict[str, Any]:
    """A perspective camera with a square film and a box filter (one pixel per sample, so the
    cache render and the reference integrate the same pixel footprint)."""
    return {
        "type": "perspective",
        "fov": fov,
        "fov_axis": "smaller",
        "to_world": mi.ScalarTransform4f().look_at(origin=origin, target=target, up=up),
        "film": {"type": "hdrfilm", "width": res, "height": res, "rfilter": {"type": "box"},
                 "pixel_format": "rgb", "component_format": "float32"},
        "sampler": {"type": "independent", "sample_count": 16},
    }


_PATH = {"type": "path", "max_depth": -1}  # all bounces: the fixed point L = E + T L


def cornell_box(mi: ModuleType, res: int) -> dict[str, Any]:
    """Mitsuba's Cornell box: diffuse, direct light dominates; the easy case."""
    scene = mi.cornell_box()
    scene["sensor"] = _sensor(mi, res)
    scene["integrator"] = dict(_PATH)
    return scene


def glossy(mi: ModuleType, res: int) -> dict[str, Any]:
    """The Cornell box with rough-conductor back wall and boxes: glossy inter-reflections."""
    scene = cornell_box(mi, res)
    scene["aluminium"] = {"type": "roughconductor", "material": "Al", "alpha": 0.25}
    scene["gold"] = {"type": "roughconductor", "material": "Au", "alpha": 0.2}
    scene["copper"] = {"type": "roughconductor", "material": "Cu", "alpha": 0.3}
    scene["back"]["bsdf"] = {"type": "ref", "id": "aluminium"}
    scene["small-box"]["bsdf"] = {"type": "ref", "id": "gold"}
    scene["large-box"]["bsdf"] = {"type": "ref", "id": "copper"}
    return scene


def hidden_light(mi: ModuleType, res: int) -> dict[str, Any]:
    """A lamp facing the ceiling on top of a shelf that hides it from the room: everything the
    camera sees is lit indirectly. A mirror on the back wall adds a delta surface."""
    T = mi.ScalarTransform4f
    scene = cornell_box(mi, res)
    del scene["light"]
    scene["shelf"] = {"type": "cube", "bsdf": {"type": "ref", "id": "white"},
                      "to_world": T().translate([0.0, 0.2, -0.3]).scale([0.4, 0.04, 0.35])}
    scene["lamp"] = {
        "type": "rectangle",
        "to_world": T().translate([0.0, 0.245, -0.3]).rotate([1, 0, 0], -90).scale([0.3, 0.25, 1]),
        "bsdf": {"type": "ref", "id": "white"},
        "emitter": {"type": "area", "radiance": {"type": "rgb", "value": [40.0, 34.0, 26.0]}},
    }
    scene["mirror"] = {
        "type": "rectangle",
        "to_world": T().translate([-0.55, -0.5, -0.99]).scale([0.35, 0.4, 1]),
        "bsdf": {"type": "conductor", "material": "Ag"},
    }
    return scene


def furnace(mi: ModuleType, res: int) -> dict[str, Any]:
    """Inside a closed sphere that emits radiance 1 everywhere with diffuse albedo ½: the exact
    solution is L = E / (1 − ρ) = 2 everywhere, scattered radiance L − E = 1 (for tests)."""
    return {
        "type": "scene",
        "sensor": _sensor(mi, res, origin=(0.0, 0.0, 0.0), target=(0.0, 0.0, -1.0), fov=60.0),
        "integrator": dict(_PATH),
        "shell": {
            "type": "sphere", "radius": 1.0, "flip_normals": True,
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.5, 0.5, 0.5]}},
            "emitter": {"type": "area", "radiance": {"type": "rgb", "value": [1.0, 1.0, 1.0]}},
        },
    }


SCENES: dict[str, Callable[[ModuleType, int], dict[str, Any]]] = {
    "cornell-box": cornell_box,
    "glossy": glossy,
    "hidden-light": hidden_light,
    "furnace": furnace,
}


# --------------------------------------------------------------------------- reference
def reference(mi: ModuleType, scene: Any, name: str, res: int, spp: int) -> np.ndarray:
    """The path-traced reference image ``[res, res, 3]`` (float32), cached on disk.

    The cache key covers the scene, its version, the resolution, spp and the Mitsuba version;
    the variant is left out on purpose: a reference prepared on a GPU serves the CPU too.
    """
    settings = {"scene": name, "version": SCENE_VERSION, "res": res, "spp": spp,
                "integrator": _PATH, "mitsuba": mi.__version__}
    path = cache_dir("radiosity") / f"{name}-{res}px-{spp}spp-{cache_key(settings)}.npy"
    if path.exists():
        return np.load(path)
    per_pass = max(1, min(spp, _PASS_SAMPLES // (res * res)))
    passes = math.ceil(spp / per_pass)
    total = np.zeros((res, res, 3), dtype=np.float64)
    for i in range(passes):  # an opaque seed: one compiled kernel for every pass
        total += np.asarray(mi.render(scene, spp=per_pass, seed=mi.UInt32(i)), dtype=np.float64)
    image = (total / passes).astype(np.float32)
    atomic_write(path, lambda f: np.save(f, image), binary=True)
    return image


# ------------------------------------------------------------------------------ tracing
@dataclass
class Queries:
    """θ-independent light transport for ``rows`` outputs, and the network queries to add.

    output[r] = known[r] + Σ_{k: index[k] = r} weight[k] · L_θ(p[k], d[k], n[k], albedo[k])
    """

    known: torch.Tensor   # [rows, 3]
    index: torch.Tensor   # [K] output row of each query
    weight: torch.Tensor  # [K, 3]
    p: torch.Tensor       # [K, 3] world position
    d: torch.Tensor       # [K, 3] direction of the radiance (away from the surface)
    n: torch.Tensor       # [K, 3] shading normal, on the side of d
    albedo: torch.Tensor  # [K, 3] diffuse reflectance (Mitsuba's estimate)

    @property
    def rows(self) -> int:
        return self.known.shape[0]

    def combine(self, radiance: torch.Tensor) -> torch.Tensor:
        """Outputs ``[..., rows, 3]`` from network values ``[..., K, 3]`` at the queries."""
        added = self.weight * radiance
        zeros = torch.zeros(added.shape[:-2] + self.known.shape, dtype=added.dtype,
                            device=added.device)
        return self.known + zeros.index_add(-2, self.index, added)


class Tracer:
    """Mitsuba-side sampling and tracing on one loaded scene; torch tensors in and out."""

    def __init__(self, mi: ModuleType, scene: Any, device: torch.device) -> None:
        import drjit as dr

        self.mi, self.dr, self.scene, self.device = mi, dr, scene, device
        shapes = scene.shapes()
        flags = [int(s.bsdf().flags()) if s.bsdf() is not None else 0 for s in shapes]
        delta, smooth = int(mi.BSDFFlags.Delta), int(mi.BSDFFlags.Smooth)
        self.has_delta = any(f & delta and not f & smooth for f in flags)
        # training points: shapes with a non-delta BSDF, chosen with probability ∝ area. Mitsuba
        # orders a loaded scene's shapes differently from load to load (it merges meshes in
        # parallel), so they are sorted here: equal keys give equal points in every process.
        # (Emitter sampling is Mitsuba's; every scene here has a single emitter.)
        valid = [s for s, f in zip(shapes, flags) if f & smooth]
        valid.sort(key=lambda s: (s.id(), round(float(s.surface_area()[0]), 4), str(s)))
        areas = torch.tensor([float(s.surface_area()[0]) for s in valid], dtype=torch.float64)
        self.shapes = mi.ShapePtr(valid)
        self.shape_cdf = areas.cumsum(0) / areas.sum()
        bbox = scene.bbox()
        self.bbox = (torch.tensor(list(bbox.min), dtype=torch.float32, device=device),
                     torch.tensor(list(bbox.max), dtype=torch.float32, device=device))

    # -- conversions
    def _f(self, t: torch.Tensor):
        """A torch tensor on the task's device -> mi.Float (same device: no host round trip).
        On CUDA, torch's queued work must finish before Dr.Jit reads the memory."""
        t = t.to(self.device, torch.float32).contiguous()
        if t.is_cuda:
            torch.cuda.synchronize(t.device)
        return self.mi.Float(t)

    def _p2(self, t: torch.Tensor):
        return self.mi.Point2f(self._f(t[:, 0]), self._f(t[:, 1]))

    def _torch(self, v) -> torch.Tensor:
        """A 3-vector drjit array -> [K, 3] float32 tensor on the task's device (a copy)."""
        out = v.torch()
        out = out.T if out.ndim == 2 else out[:, None]
        return out.to(device=self.device, dtype=torch.float32).contiguous().clone()

    # -- sampling
    def sample_points(self, u: torch.Tensor):
        """Training points and directions from uniforms ``u[N, 5]``: (si, queries at them)."""
        mi, dr = self.mi, self.dr
        pick = torch.searchsorted(self.shape_cdf, u[:, 0].double().cpu(), right=True)
        pick = pick.clamp(max=self.shape_cdf.shape[0] - 1).to(torch.int32)
        shape = dr.gather(mi.ShapePtr, self.shapes, mi.UInt32(pick.numpy()))
        ps = shape.sample_position(0.0, self._p2(u[:, 1:3]))
        si = mi.SurfaceInteraction3f(ps, dr.zeros(mi.Color0f))
        si.shape = shape
        si.t = dr.zeros(mi.Float, u.shape[0])  # a valid interaction at distance 0
        two_sided = mi.has_flag(shape.bsdf().flags(), mi.BSDFFlags.BackSide)
        d2 = self._p2(u[:, 3:5])
        si.wi = dr.select(two_sided, mi.warp.square_to_uniform_sphere(d2),
                          mi.warp.square_to_uniform_hemisphere(d2))
        active = mi.Bool(True)
        return si, self._queries(si, active, mi.Color3f(1.0), mi.Color3f(0.0), 1)

    def right_side(self, si_x, u: torch.Tensor, m: int) -> tuple[Queries, torch.Tensor]:
        """One M-sample estimate of T(E + L_θ) at each point of ``si_x`` from ``u[N·M, R]``:
        its queries and the sampled incident directions ``[N·M, 3]`` (world space)."""
        mi, dr = self.mi, self.dr
        lanes = u.shape[0]
        si = dr.gather(type(si_x), si_x, dr.arange(mi.UInt32, lanes) // m)
        bsdf, ctx = si.bsdf(), mi.BSDFContext()
        # emitter sampling with MIS (power heuristic)
        ds, em_weight = self.scene.sample_emitter_direction(si, self._p2(u[:, 0:2]), True)
        f, pdf = bsdf.eval_pdf(ctx, si, si.to_local(ds.d))
        from mitsuba.ad.integrators.common import mis_weight

        nee = em_weight * f * dr.select(ds.delta, 1.0, mis_weight(ds.pdf, pdf))
        # one BSDF sample, traced through delta surfaces
        bs, throughput = bsdf.sample(ctx, si, self._f(u[:, 2]), self._p2(u[:, 3:5]))
        alive = dr.any(throughput != 0.0)
        ray = si.spawn_ray(si.to_world(bs.wo))
        directions = mi.Vector3f(ray.d)
        hit, throughput, through_delta, ok = self._trace(ray, throughput, u[:, 5:], alive)
        sharp = mi.has_flag(bs.sampled_type, mi.BSDFFlags.Delta) | through_delta
        em_pdf = self.scene.pdf_emitter_direction(si, mi.DirectionSample3f(self.scene, hit, si),
                                                  alive & ~sharp)
        emitted = hit.emitter(self.scene, alive).eval(hit, alive)
        known = nee + throughput * emitted * dr.select(sharp, 1.0, mis_weight(bs.pdf, em_pdf))
        queries = self._queries(hit, alive & ok, throughput, known, m)
        return queries, self._torch(directions)

    def camera(self, res: int, spp: int) -> Queries:
        """First non-delta hit of ``spp`` stratified samples per pixel (rows = pixels,
        row-major from the top left, as Mitsuba's film)."""
        mi = self.mi
        side = max(1, int(round(math.sqrt(spp))))
        offsets = (torch.arange(side, dtype=torch.float64) + 0.5) / side
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        iy, ix = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
        x = (ix[..., None] + ox.reshape(-1)) / res
        y = (iy[..., None] + oy.reshape(-1)) / res
        film = torch.stack([x.reshape(-1), y.reshape(-1)], 1).float().to(self.device)
        sensor = self.scene.sensors()[0]
        ray, _ = sensor.sample_ray(0.0, 0.5, self._p2(film), mi.Point2f(0.5, 0.5))
        # delta bounces (glass) may need random choices: fixed ones, the image is deterministic
        gen = torch.Generator().manual_seed(0)
        u = torch.rand(film.shape[0], 3 * MAX_DELTA, generator=gen).to(self.device)
        alive = mi.Bool(True)
        hit, throughput, _, ok = self._trace(ray, mi.Color3f(1.0), u, alive)
        known = throughput * hit.emitter(self.scene).eval(hit)
        return self._queries(hit, ok, throughput, known, side * side)

    # -- helpers
    def _trace(self, ray, throughput, u: torch.Tensor, active):
        """Intersect ``ray``; while the hit is a delta surface, sample it and go on.

        Returns (hit, throughput, went through a delta surface, hit is usable)."""
        mi, dr = self.mi, self.dr
        hit = self.scene.ray_intersect(ray, active)
        through = mi.Bool(False)
        if not self.has_delta:
            return hit, throughput, through, mi.Bool(True)
        ctx = mi.BSDFContext()
        for k in range(MAX_DELTA):
            bsdf = hit.bsdf()
            flags = bsdf.flags()
            sharp = (active & hit.is_valid() & mi.has_flag(flags, mi.BSDFFlags.Delta)
                     & ~mi.has_flag(flags, mi.BSDFFlags.Smooth))
            bs, weight = bsdf.sample(ctx, hit, self._f(u[:, 3 * k]),
                                     self._p2(u[:, 3 * k + 1:3 * k + 3]), sharp)
            throughput = dr.select(sharp, throughput * weight, throughput)
            nxt = hit.spawn_ray(hit.to_world(bs.wo))
            hit = dr.select(sharp, self.scene.ray_intersect(nxt, sharp), hit)
            through |= sharp
        flags = hit.bsdf().flags()
        stuck = (hit.is_valid() & mi.has_flag(flags, mi.BSDFFlags.Delta)
                 & ~mi.has_flag(flags, mi.BSDFFlags.Smooth))
        return hit, dr.select(stuck, 0.0, throughput), through, ~stuck

    def _queries(self, si, active, weight, known, per_row: int) -> Queries:
        """Network queries at ``si`` (where ``active``, valid and front-facing) feeding row
        ``lane // per_row`` with ``weight / per_row``; ``known`` is averaged per row."""
        mi, dr = self.mi, self.dr
        bsdf = si.bsdf()
        two_sided = mi.has_flag(bsdf.flags(), mi.BSDFFlags.BackSide)
        front = mi.Frame3f.cos_theta(si.wi) > 0
        query = active & si.is_valid() & (front | two_sided) & dr.any(weight != 0.0)
        d = si.to_world(si.wi)
        n = si.sh_frame.n
        n = dr.select(dr.dot(n, d) < 0, -n, n)
        albedo = bsdf.eval_diffuse_reflectance(si, query)
        zero = dr.zeros(mi.Color3f, dr.width(si.p))  # broadcast constants to every lane
        arrays = [si.p, d, n, albedo, weight + zero, known + zero, query | False]
        dr.eval(*arrays)
        dr.sync_thread()  # the kernel must be done before torch reads its output (CUDA)
        p, d, n, albedo, weight, known = (self._torch(a) for a in arrays[:6])
        mask = arrays[6].torch().to(self.device).bool()
        lanes = mask.shape[0]
        index = torch.nonzero(mask).squeeze(1)
        known = known.reshape(lanes // per_row, per_row, 3).mean(1)
        return Queries(known=known, index=index // per_row, weight=weight[index] / per_row,
                       p=p[index], d=d[index], n=n[index], albedo=albedo[index])
