"""Geometry for the ``mesh-fit`` task: icospheres, target shapes, mesh files, Chamfer distance.

The mesh-fitting problem follows ZeroGrads (Fischer & Ritschel, "ZeroGrads: Learning Local
Surrogates for Non-Differentiable Graphics", SIGGRAPH 2024 / ACM TOG): the unknowns are the
per-vertex offsets of a sphere mesh, seen only through a renderer. The helpers here build the
sphere, the shapes to recover and the geometric error measure; they are torch code on the
task's device, batched where a candidate batch goes through them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from zgbench import UsageError

#: Vertex counts of the icosphere levels 0..6 (10 * 4**level + 2).
LEVEL_VERTS = {10 * 4**level + 2: level for level in range(7)}

#: Target shapes the task generates; each is a radial function of the direction, randomised
#: (rotation, proportions, bumps) by the task seed.
SHAPES = ("blob", "ellipsoid", "cube", "bumpy")


def icosphere(level: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere with ``10 * 4**level + 2`` vertices: ``(verts [N, 3], faces [F, 3])``.

    Faces are wound counter-clockwise seen from outside (outward normals). Hand-written rather
    than taken from trimesh (which the test suite checks it against) so that the default
    renderer needs nothing beyond torch and builds the mesh directly on the task's device.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = torch.tensor(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=torch.float64, device=device)
    faces = torch.tensor(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=torch.long, device=device)
    verts = verts / verts.norm(dim=1, keepdim=True)
    for _ in range(level):
        verts, faces = _subdivide(verts, faces)
    return verts.float(), faces


def _subdivide(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split every triangle in four at its edge midpoints, projected back onto the sphere."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    unique, inverse = torch.unique(edges.sort(dim=1).values, dim=0, return_inverse=True)
    mid = verts[unique].mean(dim=1)
    mid = mid / mid.norm(dim=1, keepdim=True)
    n, f = verts.shape[0], faces.shape[0]
    ab, bc, ca = (inverse[i * f:(i + 1) * f] + n for i in range(3))
    a, b, c = faces.unbind(1)
    new = torch.stack([
        torch.stack([a, ab, ca], 1), torch.stack([b, bc, ab], 1),
        torch.stack([c, ca, bc], 1), torch.stack([ab, bc, ca], 1)], 1).reshape(-1, 3)
    return torch.cat([verts, mid]), new


def level_for(verts: int) -> int:
    """The icosphere level with ``verts`` vertices, or a UsageError listing the valid counts."""
    if verts not in LEVEL_VERTS:
        raise UsageError(f"mesh-fit: verts={verts} is not an icosphere size; choose one of "
                         f"{', '.join(map(str, LEVEL_VERTS))} (d = 3 * verts).")
    return LEVEL_VERTS[verts]


def random_rotation(gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, device=device, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.float()


def shape_radius(shape: str, directions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Radius of the named target shape along unit ``directions [N, 3]`` -> ``[N]``.

    Every shape lies between radii 0.5 and 1.0, inside the unit sphere the cameras frame.
    """
    device = directions.device
    u = directions @ random_rotation(gen, device)

    def uniform(*size, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*size, generator=gen, device=device)

    if shape == "ellipsoid":
        axes = uniform(3, lo=0.5, hi=1.0)
        return 1.0 / (u / axes).norm(dim=1)
    if shape == "cube":  # a superellipsoid |x|^p + |y|^p + |z|^p = s^p: a rounded cube
        power = 6.0
        return 0.8 / (u.abs() ** power).sum(1) ** (1.0 / power)
    if shape == "bumpy":
        lobes = torch.randint(3, 6, (2,), generator=gen, device=device).float()
        theta = torch.acos(u[:, 2].clamp(-1, 1))
        phi = torch.atan2(u[:, 1], u[:, 0])
        return 0.75 + 0.2 * torch.sin(lobes[0] * phi) * torch.sin(lobes[1] * theta)
    if shape == "blob":  # a sphere with a few Gaussian bumps and dents
        centres = torch.nn.functional.normalize(
            torch.randn(6, 3, generator=gen, device=device), dim=1)
        heights = uniform(6, lo=-0.15, hi=0.25)
        widths = uniform(6, lo=0.35, hi=0.7)
        dist2 = (u[:, None, :] - centres[None]).pow(2).sum(-1)
        return (0.7 + (heights * torch.exp(-dist2 / (2 * widths**2))).sum(1)).clamp(0.5, 1.0)
    raise UsageError(f"unknown target shape {shape!r}: choose one of {', '.join(SHAPES)}.")


def load_mesh(path: str | Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a triangle mesh with trimesh, centred and scaled into the unit sphere."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"mesh-fit: mesh file {str(path)!r} does not exist; pass mesh=PATH "
                         "to an .obj/.ply/.stl file, or use target=NAME.")
    import trimesh  # graphics extra; only needed for mesh files

    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:
        raise UsageError(f"mesh-fit: trimesh cannot read {str(path)!r} ({exc}).") from None
    if len(mesh.faces) == 0:
        raise UsageError(f"mesh-fit: {str(path)!r} holds no triangles.")
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long, device=device)
    centre = (verts.max(0).values + verts.min(0).values) / 2
    verts = verts - centre
    return verts / verts.norm(dim=1).max() * 0.9, faces


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals ``[..., F, 3]`` of meshes ``verts [..., N, 3]`` (zero if degenerate)."""
    tri = verts[..., faces, :]
    n = torch.linalg.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def sample_surface(verts: torch.Tensor, faces: torch.Tensor, count: int,
                   gen: torch.Generator) -> torch.Tensor:
    """``count`` points uniformly distributed over the surface area of one mesh ``[N, 3]``."""
    tri = verts[faces]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)
    area = torch.nan_to_num(area, nan=0.0, posinf=0.0)
    if not bool(area.sum() > 0):
        return torch.nan_to_num(verts, nan=1e6, posinf=1e6, neginf=-1e6)[:count]
    pick = torch.multinomial(area, count, replacement=True, generator=gen)
    r1, r2 = torch.rand(2, count, 1, generator=gen, device=verts.device)
    s = r1.sqrt()
    t = tri[pick]
    return (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]


def chamfer(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> float:
    """Symmetric Chamfer distance: mean squared nearest-neighbour distance, both ways."""
    def one_way(x, y):
        return torch.cat([torch.cdist(part, y).min(1).values.pow(2)
                          for part in x.split(chunk)]).mean()
    return float(one_way(a, b) + one_way(b, a))


def edges(faces: torch.Tensor) -> torch.Tensor:
    """The mesh's undirected edges ``[E, 2]`` (each once, smaller index first)."""
    pairs = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return torch.unique(pairs.sort(dim=1).values, dim=0)


def mean_edge_length(verts: torch.Tensor, edge: torch.Tensor) -> float:
    """Mean length of the edges ``[E, 2]`` of one mesh ``verts [N, 3]``."""
    return float((verts[edge[:, 0]] - verts[edge[:, 1]]).norm(dim=1).mean())


def laplacian_matrix(edge: torch.Tensor, count: int) -> torch.Tensor:
    """The uniform graph Laplacian of a mesh with ``count`` vertices and edges ``[E, 2]``, as a
    sparse ``[count, count]`` matrix: L x = each vertex's value minus the mean of its
    neighbours'. Sparse because a matrix product is one call (0.2 ms for 16 meshes of 642
    vertices on one core, against 0.9 ms for the same sum written with ``index_add``)."""
    i, j = edge[:, 0], edge[:, 1]
    ones = torch.ones(i.numel(), device=edge.device)
    degree = torch.zeros(count, device=edge.device).index_add(0, i, ones).index_add(0, j, ones)
    diagonal = torch.arange(count, device=edge.device)
    index = torch.stack([torch.cat([i, j, diagonal]), torch.cat([j, i, diagonal])])
    weight = torch.cat([-1 / degree[i], -1 / degree[j], torch.ones(count, device=edge.device)])
    return torch.sparse_coo_tensor(index, weight, (count, count), check_invariants=True).coalesce()


def laplacian(values: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """:func:`laplacian_matrix` applied to per-vertex ``values [B, N, c]``: ``[B, N, c]``.
    Batched, differentiable in ``values``."""
    B, N, c = values.shape
    flat = values.permute(1, 0, 2).reshape(N, B * c)
    return torch.sparse.mm(matrix.to(values.dtype), flat).reshape(N, B, c).permute(1, 0, 2)
