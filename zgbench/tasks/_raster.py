"""A hard z-buffer rasterizer, batched over meshes and views: a compiled kernel on the CPU,
tensor ops on CUDA (or anywhere torch runs).

The renderer of the ``mesh-fit`` task, a problem of the kind ZeroGrads (Fischer & Ritschel,
"ZeroGrads: Learning Local Surrogates for Non-Differentiable Graphics", SIGGRAPH 2024 /
ACM TOG) optimizes: graphics parameters seen through a renderer without gradients. One sample
at each pixel centre, no anti-aliasing, no soft blending, so the image is piecewise constant
in the silhouette and its loss has no useful autodiff gradient.

Hand-written because the libraries that rasterize in torch (PyTorch3D, nvdiffrast, Kaolin)
are differentiable renderers with CUDA builds of their own, and no well-kept hard CPU
rasterizer batches B meshes in one call; the benchmark needs a plain, hard one that runs
anywhere torch does and renders B meshes x V views in one pass.

Two implementations of one rule, chosen by :func:`rasterize` (``backend=``):

- ``numba`` (CPU tensors, the default there): :mod:`zgbench.tasks._raster_cpu`, a compiled
  kernel that projects each (mesh, view) image and rasterizes it in one thread, triangle by
  triangle (bounding box clipped to the image, the three edge functions per scanline, a
  z-test per pixel), the images spread over numba's threads (as many as torch's); a second
  kernel shades the covered pixels. Its cost is the triangles, their scanlines and their
  pixels, a few tens of nanoseconds each, where the tensor path pays ~40 torch ops per
  fragment. It repeats the tensor path's float operations in the same order, so both give
  identical fragments (the tests check it).
- ``torch`` (CUDA tensors, or forced): tensor ops only, no loop over candidates or views. The
  triangles of every (mesh, view) pair are projected and culled (no pixel centre in the
  bounding box, behind the near plane, not finite); each remaining triangle is expanded into
  its scanlines (``repeat_interleave``), each scanline's covered span is cut from the three
  edge half-planes, and the spans are expanded into fragments. 1/z is affine in screen space,
  so each fragment's depth is exact. A fragment's 64-bit key is ``(float32 bits of its depth
  << face_bits) | face`` (positive floats order like their bit patterns);
  ``scatter_reduce(amin)`` into the image keeps the nearest one, ties going to the lower face
  id, so the result is deterministic and the face id and depth are read back from the winning
  key. Large batches are cut into chunks of at most :data:`MAX_FRAGMENTS` scanline pixels to
  bound memory.

Either way work is proportional to the triangles, their scanlines and their covered pixels,
never to pixels x triangles, and the nearest fragment wins with ties to the lower face id.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zgbench.tasks._meshes import face_normals

NEAR, FAR = 0.05, 100.0
#: World-space lights of the ``lambert`` shading: (direction towards the light, intensity).
LIGHTS = (((1.0, 1.5, 1.0), 0.7), ((-1.0, -0.5, -1.0), 0.3))
AMBIENT = 0.15
SHADINGS = ("lambert", "normals", "silhouette")
#: Scanlines x image width handled at once (bounds peak memory).
MAX_FRAGMENTS = 1 << 23


@dataclass(frozen=True)
class Cameras:
    """V pinhole cameras looking at the origin; image ``height x width``, ``fov`` along x."""

    eye: torch.Tensor  # [V, 3] camera positions
    rotation: torch.Tensor  # [V, 3, 3] rows: right, up, forward (world -> camera)
    fov: float
    width: int
    height: int

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return self.width / 2 / math.tan(math.radians(self.fov) / 2)

    def __len__(self) -> int:
        return self.eye.shape[0]


def look_at(eye: torch.Tensor, fov: float, width: int, height: int) -> Cameras:
    """Cameras at ``eye [V, 3]`` looking at the origin with +y up (as Mitsuba's look_at)."""
    forward = torch.nn.functional.normalize(-eye, dim=1)
    up = torch.tensor([0.0, 1.0, 0.0], device=eye.device).expand_as(forward)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=1)
    true_up = torch.linalg.cross(right, forward)
    return Cameras(eye, torch.stack([right, true_up, forward], 1), fov, width, height)


def orbit(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, distance: float) -> torch.Tensor:
    """Camera positions on a sphere of radius ``distance`` (azimuth about +y, elevation up)."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return distance * torch.stack(
        [torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], 1)


@dataclass
class Fragments:
    """Per pixel of each (mesh, view): the visible face (-1 for background) and its depth."""

    face: torch.Tensor  # [B, V, H, W] long
    depth: torch.Tensor  # [B, V, H, W] camera-space z, inf for background

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def project(verts: torch.Tensor, cams: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen coordinates ``[B, V, N, 2]`` (pixels, y down) and depths ``[B, V, N]``.

    Written as explicit products and sums (no einsum / BLAS, whose summation order is its
    own) so that the compiled CPU kernel, which projects inside itself, repeats it bit for bit.
    """
    d = verts[:, None] - cams.eye.to(verts.dtype)[None, :, None, :]  # [B, V, N, 3]
    rot = cams.rotation.to(verts.dtype)[None, :, None]  # [1, V, 1, 3 rows, 3]
    x, y, z = (d[..., 0] * rot[..., k, 0] + d[..., 1] * rot[..., k, 1]
               + d[..., 2] * rot[..., k, 2] for k in range(3))
    f = cams.focal
    sx = cams.width / 2 + f * x / z
    sy = cams.height / 2 - f * y / z
    return torch.stack([sx, sy], -1), z


#: Rasterizer implementations: ``auto`` picks ``numba`` for CPU tensors when numba imported,
#: else ``torch`` (the tensor-op path, the one CUDA tensors always take).
BACKENDS = ("auto", "numba", "torch")


def rasterize(verts: torch.Tensor, faces: torch.Tensor, cams: Cameras,
              backend: str = "auto") -> Fragments:
    """Rasterize meshes ``verts [B, N, 3]`` sharing ``faces [F, 3]`` into every camera.

    ``backend`` (one of :data:`BACKENDS`) forces an implementation; both give the same
    fragments, so the tests compare them on the CPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; use one of {BACKENDS}")
    fits = _numba_fits(verts)
    if backend == "numba" and not fits:
        raise ValueError("the numba rasterizer takes float CPU tensors (and needs numba)")
    if backend == "numba" or (backend == "auto" and fits):
        return _rasterize_numba(verts, faces, cams)
    screen, z = project(verts, cams)
    corners = torch.cat([screen, z[..., None]], -1)  # [B, V, N, (x, y, z)]
    return _rasterize_torch(corners, faces, cams, verts.dtype)


def _numba_fits(verts: torch.Tensor) -> bool:
    """CPU tensors of a float type go to the compiled kernel, when numba is there."""
    return (verts.device.type == "cpu" and verts.dtype in (torch.float32, torch.float64)
            and _cpu_kernels() is not None)


@functools.lru_cache(maxsize=None)
def _cpu_kernels():
    """:mod:`zgbench.tasks._raster_cpu`, imported on first use, or None if numba fails to
    import (a broken install): then everything rasterizes on the torch path, more slowly."""
    try:
        return importlib.import_module("zgbench.tasks._raster_cpu")
    except Exception as exc:  # ImportError, or numba refusing this numpy: fall back
        warnings.warn(f"numba is unavailable ({exc}); mesh rasterization falls back to the "
                      "slower torch path", RuntimeWarning, stacklevel=2)
        return None


def _rasterize_numba(verts: torch.Tensor, faces: torch.Tensor, cams: Cameras) -> Fragments:
    """The compiled CPU kernel (:mod:`zgbench.tasks._raster_cpu`): projects and rasterizes
    each (mesh, view) image in one thread."""
    B, V, H, W = verts.shape[0], len(cams), cams.height, cams.width
    # numba's threads follow torch's: `zgbench run --threads N` (default 1) and the
    # executors' per-worker share set torch's count as the CPU budget of a run, so the
    # kernel must not spread over more cores than that (N workers x all cores oversubscribes).
    face, depth = _cpu_kernels().rasterize(
        _array(verts), _array(faces.long()), _array(cams.eye), _array(cams.rotation),
        cams.focal, H, W, NEAR, FAR, torch.get_num_threads())
    depth = torch.from_numpy(depth).view(B, V, H, W)
    return Fragments(torch.from_numpy(face).view(B, V, H, W),
                     depth if verts.dtype == torch.float32 else depth.to(verts.dtype))


def _array(tensor: torch.Tensor):
    """A C-contiguous numpy view (or copy) of a CPU tensor, detached from autograd."""
    return tensor.detach().contiguous().numpy()


def _rasterize_torch(corners: torch.Tensor, faces: torch.Tensor, cams: Cameras,
                     dtype: torch.dtype) -> Fragments:
    """The tensor-op path: any device, work proportional to triangles, scanlines, pixels."""
    B, V = corners.shape[:2]
    F, H, W = faces.shape[0], cams.height, cams.width
    corners = corners.index_select(2, faces.reshape(-1))
    corners = corners.reshape(-1, 3, 3)  # [T = B*V*F, corner, (x, y, z)]
    face_bits = max(int(F - 1).bit_length(), 1)
    empty = torch.iinfo(torch.long).max
    zbuf = torch.full((B * V * H * W,), empty, dtype=torch.long, device=corners.device)
    # Cull first (cheap): triangles whose bounding box holds no pixel centre, that cross the
    # near plane or are not finite. On fine meshes most triangles hold no pixel centre.
    c0, c1, c2 = corners.unbind(1)
    low = torch.minimum(torch.minimum(c0, c1), c2)
    lo = torch.ceil(low[:, :2] - 0.5)
    hi = torch.floor(torch.maximum(torch.maximum(c0, c1), c2)[:, :2] - 0.5)
    keep = ((hi[:, 0] >= lo[:, 0].clamp(min=0)) & (lo[:, 0] <= W - 1)
            & (hi[:, 1] >= lo[:, 1].clamp(min=0)) & (lo[:, 1] <= H - 1) & (low[:, 2] > NEAR))
    keep = (keep & torch.isfinite(corners).all(2).all(1)).nonzero().squeeze(1)
    corners = corners.index_select(0, keep)
    first = lo[:, 1].index_select(0, keep).clamp(min=0)
    last = hi[:, 1].index_select(0, keep).clamp(max=H - 1)
    edges, area = _edges(corners)
    good = area.abs() > 1e-9  # also drops NaN
    rows = torch.where(good, last - first + 1, 0.0).long()
    # 1/z is affine in screen space: 1/z(x, y) = 1/z_0 + slope . (x - x_0, y - y_0), taken
    # relative to corner 0 so that thin triangles do not lose it to cancellation.
    slope = (edges[..., :2] / (area[:, None, None] * corners[:, :, 2:])).sum(1)
    plane = torch.cat([slope, corners[:, 0, :2], 1 / corners[:, 0, 2:]], 1)  # [T, 5]
    edges = edges * torch.sign(area)[:, None, None]  # inside <=> every edge function >= 0
    image, face = keep // F, keep % F
    for part in _chunks(rows, MAX_FRAGMENTS // max(W, 1)):
        _scan(part, rows, first, edges, plane, image * (H * W), face, zbuf, W, face_bits)
    zbuf = zbuf.view(B, V, H, W)
    hit = zbuf != empty
    face_map = torch.where(hit, zbuf & ((1 << face_bits) - 1), -1)
    # The key's high bits are the IEEE-754 bits of the (positive) float32 depth: read it back.
    depth = (zbuf >> face_bits).to(torch.int32).view(torch.float32).to(dtype)
    return Fragments(face_map, depth.masked_fill(~hit, math.inf))


def _edges(corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge functions ``[T, 3, 3]`` (a, b, c per edge: a x + b y + c) and signed areas ``[T]``.

    Edge i runs from corner i+1 to corner i+2, so e_i(p) / area is the barycentric weight of
    corner i, and the three weights sum to one.
    """
    x, y = corners[..., 0], corners[..., 1]
    after = torch.tensor([1, 2, 0], device=corners.device)
    xa, ya = x.index_select(1, after), y.index_select(1, after)
    xb, yb = xa.index_select(1, after), ya.index_select(1, after)
    a, b = ya - yb, xb - xa
    c = -(a * xa + b * ya)
    area = a[:, 0] * x[:, 0] + b[:, 0] * y[:, 0] + c[:, 0]
    return torch.stack([a, b, c], -1), area


def _chunks(rows: torch.Tensor, limit: int):
    """Consecutive triangle ranges whose scanline rows add up to at most ``limit`` each."""
    total = rows.cumsum(0)
    start = 0
    while start < rows.numel():
        base = total[start - 1] if start else 0
        stop = max(int(torch.searchsorted(total, base + limit, right=True)), start + 1)
        yield start, stop
        start = stop


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with ``counts``: the item of every output slot and its rank within the item."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = counts.cumsum(0) - counts
    return owner, torch.arange(owner.numel(), device=counts.device) - starts.index_select(0, owner)


def _scan(part, rows, first, edges, plane, base, face, zbuf, W, face_bits) -> None:
    """Scan-convert triangles ``part = (start, stop)``: rows, then x-spans, then z-test."""
    start, stop = part
    owner, rank = _expand(rows[start:stop])
    if owner.numel() == 0:
        return
    tri = owner + start
    y = first.index_select(0, tri) + rank  # pixel row of each scanline
    e = edges.index_select(0, tri)  # [R, 3, 3]
    a = e[..., 0]
    rest = e[..., 1] * (y[:, None] + 0.5) + e[..., 2]  # edge function: a x + rest >= 0
    bound = -rest / a
    low = torch.where(a > 0, bound, -math.inf).amax(1)
    high = torch.where(a < 0, bound, math.inf).amin(1)
    blocked = ((a == 0) & (rest < 0)).any(1)
    x0 = torch.ceil(low - 0.5 - 1e-4).clamp(min=0)
    x1 = torch.floor(high - 0.5 + 1e-4).clamp(max=W - 1)
    span = torch.where(blocked, 0.0, (x1 - x0 + 1).clamp(min=0)).long()
    # Per scanline: 1/z at its first pixel and its slope, the pixel index of its first pixel.
    p = plane.index_select(0, tri)
    inv_z0 = p[:, 4] + p[:, 0] * (x0 + 0.5 - p[:, 2]) + p[:, 1] * (y + 0.5 - p[:, 3])
    pixel0 = base.index_select(0, tri) + y.long() * W + x0.long()
    row, dx = _expand(span)
    if row.numel() == 0:
        return
    inv_z = inv_z0.index_select(0, row) + p[:, 0].index_select(0, row) * dx
    depth = (1.0 / inv_z).float().nan_to_num(nan=FAR).clamp(NEAR, FAR)
    faces = face.index_select(0, tri.index_select(0, row))
    key = (depth.view(torch.int32).long() << face_bits) | faces
    zbuf.scatter_reduce_(0, pixel0.index_select(0, row) + dx, key, reduce="amin")


def shade(verts: torch.Tensor, faces: torch.Tensor, frags: Fragments, shading: str) -> torch.Tensor:
    """Images ``[B, V, C, H, W]`` from fragments: C = 3 for ``normals``, else 1.

    ``silhouette``: 1 on the mesh. ``normals``: world-space face normal mapped to (n + 1) / 2.
    ``lambert``: flat-shaded diffuse grey under :data:`LIGHTS` plus :data:`AMBIENT`.
    Background is 0 in every mode. CPU tensors are shaded by the compiled kernel, which
    computes the colours of the faces the pixels show (the torch path computes all B x F of
    them, then gathers): the same colours up to float rounding.
    """
    if shading not in SHADINGS:
        raise ValueError(f"unknown shading {shading!r}")
    if _numba_fits(verts) and frags.face.device.type == "cpu":
        return _shade_numba(verts, faces, frags, shading)
    return _shade_torch(verts, faces, frags, shading)


@functools.lru_cache(maxsize=None)
def _light_table() -> np.ndarray:
    """:data:`LIGHTS` as ``[L, 4]`` float32 (unit direction towards the light, intensity),
    the directions normalized as ``_shade_torch`` does; built once, not per render."""
    return torch.stack([torch.cat([torch.nn.functional.normalize(
        torch.tensor(direction), dim=0), torch.tensor([power])])
        for direction, power in LIGHTS]).numpy()


def _shade_numba(verts: torch.Tensor, faces: torch.Tensor, frags: Fragments,
                 shading: str) -> torch.Tensor:
    """The compiled shading kernel, one thread per image (threads as in `_rasterize_numba`)."""
    B, V, H, W = frags.face.shape
    images = _cpu_kernels().shade(
        _array(verts), _array(faces.long()), _array(frags.face.reshape(B * V, H * W)), V,
        shading, _light_table(), AMBIENT, torch.get_num_threads())
    return torch.from_numpy(images).view(B, V, -1, H, W)


def _shade_torch(verts: torch.Tensor, faces: torch.Tensor, frags: Fragments,
                 shading: str) -> torch.Tensor:
    """Tensor-op shading (any device): every face's colour, gathered by the face map."""
    mask = frags.mask
    if shading == "silhouette":
        return mask[:, :, None].to(verts.dtype)
    colour = face_colours(verts, faces, shading)
    B, V, H, W = frags.face.shape
    index = frags.face.clamp(min=0).reshape(B, -1, 1).expand(-1, -1, colour.shape[-1])
    pixels = torch.gather(colour, 1, index).reshape(B, V, H, W, -1)
    pixels = torch.where(mask[..., None], pixels, 0.0)
    return pixels.permute(0, 1, 4, 2, 3).contiguous()


def face_colours(verts: torch.Tensor, faces: torch.Tensor, shading: str) -> torch.Tensor:
    """Flat colour ``[B, F, C]`` of every face (differentiable in ``verts``): 1 for
    ``silhouette``, (n + 1) / 2 for ``normals``, :data:`AMBIENT` plus the :data:`LIGHTS`'
    clamped cosines for ``lambert``. The torch shading path and the soft rasterizer use it."""
    normals = face_normals(verts, faces)  # [B, F, 3]
    if shading == "silhouette":
        return torch.ones_like(normals[..., :1])
    if shading == "normals":
        return (normals + 1) / 2
    colour = torch.full_like(normals[..., :1], AMBIENT)
    for direction, power in LIGHTS:
        d = torch.nn.functional.normalize(
            torch.tensor(direction, device=verts.device, dtype=verts.dtype), dim=0)
        colour = colour + power * (normals @ d).clamp(min=0)[..., None]
    return colour


def render(verts: torch.Tensor, faces: torch.Tensor, cams: Cameras, shading: str) -> torch.Tensor:
    """Rasterize and shade meshes ``[B, N, 3]`` from every camera: ``[B, V, C, H, W]``."""
    return shade(verts, faces, rasterize(verts, faces, cams), shading)


# ----------------------------------------------------------------------------- pictures
def save_rows(rows: list[tuple[str, torch.Tensor]], path: str | Path, scale: int = 1) -> str:
    """Write a labelled PNG of ``(label, images [N, C, H, W])`` pairs with values in [0, 1].

    One row per label with its N images side by side (labels on the left); when every label
    has a single image, one column per label instead (labels on top). The graphics tasks'
    ``artifacts`` use it to put target, start, result and error next to each other.
    """
    from PIL import Image, ImageDraw  # Pillow ships with matplotlib, a core dependency

    _, _, h, w = rows[0][1].shape
    h, w = h * scale, w * scale
    single = all(images.shape[0] == 1 for _, images in rows)
    if single:
        sheet = Image.new("RGB", (len(rows) * (w + 4), h + 16), "white")
        draw = ImageDraw.Draw(sheet)
        for c, (label, images) in enumerate(rows):
            draw.text((c * (w + 4) + 2, 2), label, fill="black")
            sheet.paste(_to_pil(images[0], scale), (c * (w + 4), 16))
    else:
        label_w = 8 + 7 * max(len(label) for label, _ in rows)
        count = max(images.shape[0] for _, images in rows)
        sheet = Image.new("RGB", (label_w + count * (w + 2), len(rows) * (h + 2)), "white")
        draw = ImageDraw.Draw(sheet)
        for r, (label, images) in enumerate(rows):
            draw.text((4, r * (h + 2) + h // 2 - 5), label, fill="black")
            for i, image in enumerate(images):
                sheet.paste(_to_pil(image, scale), (label_w + i * (w + 2), r * (h + 2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return str(path)


def _to_pil(image: torch.Tensor, scale: int):
    from PIL import Image

    array = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    tile = Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")
    if scale > 1:
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
    return tile
