"""A soft (differentiable) rasterizer in the style of SoftRas: ``mesh-fit``'s ``grad``.

Liu, Li, Chen & Li, "Soft Rasterizer: A Differentiable Renderer for Image-based 3D Reasoning"
(ICCV 2019). It renders the same meshes, cameras and shading as the hard rasterizer of
:mod:`zgbench.tasks._raster`, with the two discrete steps made smooth:

- **coverage**: a front-facing triangle j covers pixel p with D_j(p) = φ_j sigmoid(d_j(p) / σ),
  d_j(p) the signed distance in pixels from the pixel centre to the triangle's boundary
  (positive inside) and φ_j its facing weight (its screen area up to :data:`FULL_AREA`, so
  a face turning edge-on fades out instead of vanishing); a silhouette edge moves the image
  continuously. The pixel's opacity is α(p) = min(1, Σ_j D_j(p)) rather than SoftRas's
  1 − Π_j (1 − D_j(p)): two faces sharing an edge have D_1 + D_2 = 1 across it, so the inside
  of a mesh stays opaque where the product would darken every inner edge to 3/4;
- **visibility**: instead of the z-buffer's nearest face, the colours of the faces near p are
  blended with weights ∝ D_j(p) · exp(−z_j(p) / γ) (z_j: the face's camera depth at p, from
  its barycentric coordinates clamped to the triangle), so the nearest face dominates and a
  face that comes to the front takes over smoothly.

Back faces are left out (a closed mesh hides them; the hard renderer shows them only where a
mesh folds over, and keeping them, measured, let Adam fold the mesh where the two renderers
disagree). The image is α · (blended colour), composited over the black background of the
hard renders; as σ, γ → 0 it tends to the hard image of a mesh without folds. Face colours are
:func:`_raster.face_colours`, the hard renderer's flat shading.

Work is per (triangle, pixel) pair within ``margin`` pixels of the triangle's bounding box
(the pairs are enumerated without gradient, like the hard rasterizer's fragments); beyond the
margin D < 1e-3 and the pair is dropped. ``margin=None`` keeps every pixel for every
triangle: the loss is then smooth wherever no pixel sits on a corner of the distance
function, which the gradient test uses.

Hand-written because the maintained differentiable rasterizers (PyTorch3D, nvdiffrast,
Kaolin) each need their own CUDA build and none runs on a plain CPU torch install; this one is
~100 lines of batched torch, on any device, in float32 or float64.
"""

from __future__ import annotations

import math

import torch

from zgbench.tasks._raster import NEAR, Cameras, face_colours, project

#: Edge softness σ in pixels: D falls to 1e-3 about 7 σ outside a triangle. The soft edges
#: of the foreshortened faces along a silhouette add up outside it (the soft silhouette's area
#: exceeds the hard one's by ~16% at σ 0.5 px, ~4% at 0.2, ~2% at 0.1 on a 162-vertex sphere
#: at 48 px), which biases Adam towards shrinking: measured at verts=42, the reference's Chamfer
#: was 0.0046 at σ 0.5, 0.0010 at 0.2, 0.0016 at 0.1 (seed 0).
SIGMA = 0.2
#: Depth softness γ in world units (the scene is ~2 units deep): a face 0.1 behind another
#: gets e^-2 of its weight, the far side of the object (~1 unit behind) e^-20.
GAMMA = 0.05
#: Screen area (pixels²) from which a front face counts fully (see :func:`_facing`).
FULL_AREA = 0.25


def soft_render(verts: torch.Tensor, faces: torch.Tensor, cams: Cameras, shading: str,
                sigma: float = SIGMA, gamma: float = GAMMA,
                margin: float | None = 7.0) -> torch.Tensor:
    """Soft images ``[B, V, C, H, W]`` of meshes ``verts [B, N, 3]``, differentiable in verts.

    ``margin``: how far outside its bounding box a triangle may cover pixels, in units of σ
    (7: D < 1e-3 beyond); None: every pixel of the image.
    """
    B, V, H, W = verts.shape[0], len(cams), cams.height, cams.width
    screen, z = project(verts, cams)  # [B, V, N, 2], [B, V, N]
    corners = torch.cat([screen, z[..., None]], -1)[:, :, faces]  # [B, V, F, 3, 3]
    F = faces.shape[0]
    colour = face_colours(verts, faces, shading)  # [B, F, C]
    facing = _facing(corners.reshape(-1, 3, 3))  # [B*V*F] in [0, 1]
    tri, pixel_x, pixel_y = _pairs(corners.detach(), facing.detach() > 0, H, W,
                                   None if margin is None else margin * sigma)
    c = corners.reshape(-1, 3, 3).index_select(0, tri)  # [P, corner, (x, y, z)]
    px, py = pixel_x.to(c.dtype) + 0.5, pixel_y.to(c.dtype) + 0.5
    # Edge i runs from corner i+1 to corner i+2; e_i(p) / area is corner i's barycentric.
    # Oriented so that the inside is positive whatever the winding.
    a, b = c[:, [1, 2, 0]], c[:, [2, 0, 1]]
    ex, ey = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    edge = ey * (px[:, None] - a[..., 0]) - ex * (py[:, None] - a[..., 1])  # [P, 3]
    edge = edge * torch.where(edge.sum(1, keepdim=True) < 0, -1.0, 1.0)  # back faces too
    # Distance to the nearest point of the triangle's boundary (the segments, not their lines,
    # which would leak coverage along their extensions), positive inside.
    length2 = ex * ex + ey * ey + 1e-12
    along = (((px[:, None] - a[..., 0]) * ex + (py[:, None] - a[..., 1]) * ey) / length2)
    along = along.clamp(0, 1)
    gap2 = ((px[:, None] - a[..., 0] - along * ex) ** 2
            + (py[:, None] - a[..., 1] - along * ey) ** 2).amin(1)
    inside = (edge >= 0).all(1)
    distance = torch.where(inside, 1.0, -1.0) * torch.sqrt(gap2 + 1e-12)
    bary = edge.clamp(min=0)
    bary = bary / bary.sum(1, keepdim=True).clamp(min=1e-12)
    depth = 1 / (bary / c[..., 2]).sum(1)
    pixel = (tri // F) * (H * W) + pixel_y * W + pixel_x  # image index = b * V + v
    image = _blend(pixel, distance / sigma, facing.index_select(0, tri), depth / gamma,
                   colour.repeat_interleave(V, 0).reshape(B * V * F, -1).index_select(0, tri),
                   B * V * H * W)
    return image.reshape(B, V, H, W, -1).permute(0, 1, 4, 2, 3)


def _facing(corners: torch.Tensor) -> torch.Tensor:
    """How much each projected triangle ``[T, corner, (x, y, z)]`` faces the camera, in
    [0, 1]: its (front-facing) screen area over :data:`FULL_AREA`, clipped. Back faces get 0
    and drop out; a face turning edge-on fades out instead of vanishing in one step."""
    x, y = corners[..., 0], corners[..., 1]
    twice = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    return (-twice / (2 * FULL_AREA)).clamp(0, 1).nan_to_num(0.0)


def _blend(pixel: torch.Tensor, logit: torch.Tensor, facing: torch.Tensor,
           depth: torch.Tensor, colour: torch.Tensor, pixels: int) -> torch.Tensor:
    """Per pixel ``[pixels, C]``: α · Σ_j w_j colour_j with coverage D_j = facing_j ·
    sigmoid(logit_j), α = min(1, Σ_j D_j) and w_j ∝ D_j exp(−depth_j).

    α sums the coverages instead of SoftRas's 1 − Π(1 − D_j): two front faces sharing an edge
    have D_1 + D_2 = 1 across it (sigmoid(d) + sigmoid(−d)), so a mesh's inside stays opaque,
    where the product would darken every pixel within a few σ of an inner edge to 3/4."""
    zeros = torch.zeros(pixels, dtype=logit.dtype, device=logit.device)
    cover = facing * torch.sigmoid(logit)
    alpha = zeros.index_add(0, pixel, cover).clamp(max=1)
    score = torch.log(facing) + torch.nn.functional.logsigmoid(logit) - depth
    top = torch.full_like(zeros, -math.inf)
    top = top.scatter_reduce(0, pixel, score.detach(), reduce="amax", include_self=True)
    weight = torch.exp(score - top.index_select(0, pixel))
    total = zeros.index_add(0, pixel, weight)
    mixed = torch.zeros(pixels, colour.shape[1], dtype=logit.dtype, device=logit.device)
    mixed = mixed.index_add(0, pixel, weight[:, None] * colour)
    return alpha[:, None] * mixed / total.clamp(min=1e-30)[:, None]


@torch.no_grad()
def _pairs(corners: torch.Tensor, front: torch.Tensor, H: int, W: int, margin: float | None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(triangle, pixel) pairs to evaluate: flat triangle index into ``[B*V*F]``, pixel x, y.

    Back faces (``front`` false), triangles crossing the near plane and ones not finite are
    dropped (the hard renderer drops the last two; back faces of a closed mesh are hidden);
    the others pair with every pixel centre within ``margin`` of their bounding box.
    """
    flat = corners.reshape(-1, 3, 3)
    keep = front & torch.isfinite(flat).all(2).all(1) & (flat[:, :, 2] > NEAR).all(1)
    if margin is None:
        lo = torch.zeros(flat.shape[0], 2, dtype=torch.long, device=flat.device)
        hi = torch.tensor([W - 1, H - 1], device=flat.device).expand_as(lo)
    else:
        safe = torch.where(keep[:, None, None], flat, 0.0)
        lo = torch.ceil(safe[..., :2].amin(1) - margin - 0.5).long()
        hi = torch.floor(safe[..., :2].amax(1) + margin - 0.5).long()
        lo = torch.maximum(lo, torch.zeros_like(lo))
        hi = torch.minimum(hi, torch.tensor([W - 1, H - 1], device=flat.device))
    size = (hi - lo + 1).clamp(min=0)
    count = torch.where(keep, size[:, 0] * size[:, 1], 0)
    tri = torch.repeat_interleave(torch.arange(count.numel(), device=flat.device), count)
    rank = torch.arange(tri.numel(), device=flat.device) - (count.cumsum(0) - count)[tri]
    width = size[:, 0].index_select(0, tri).clamp(min=1)
    x = lo[:, 0].index_select(0, tri) + rank % width
    y = lo[:, 1].index_select(0, tri) + rank // width
    return tri, x, y
