"""A multiresolution grid encoding of 3-D positions, in plain torch (CPU and GPU).

Müller, Evans, Schied and Keller, "Instant Neural Graphics Primitives with a Multiresolution
Hash Encoding", SIGGRAPH 2022: ``L`` levels of feature grids whose resolutions grow
geometrically from ``base_res`` to ``max_res``; a level whose (res + 1)³ vertices fit in the
table is stored densely, a finer one is hashed into ``2**log2_table`` rows with the spatial
hash ``x·1 ⊕ y·2654435761 ⊕ z·805459861``. A point's feature at a level is the trilinear
interpolation of its cell's 8 corner features; the levels are concatenated.

Hand-written because the well-kept implementation (tiny-cuda-nn) is CUDA-only and the
benchmark must run the same network on the CPU; this one is a few tensor ops, works under
``torch.func.vmap`` / ``functional_call`` (the task evaluates many parameter vectors at once),
and all levels are processed in one gather.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_PRIMES = (1, 2654435761, 805459861)


def level_resolutions(levels: int, base_res: int, max_res: int) -> list[int]:
    """Grid resolution of each level: geometric growth from ``base_res`` to ``max_res``."""
    if levels == 1:
        return [base_res]
    growth = math.exp((math.log(max_res) - math.log(base_res)) / (levels - 1))
    return [int(math.floor(base_res * growth**level)) for level in range(levels)]


class GridEncoding(nn.Module):
    """Multiresolution (hash) grid: ``forward(x[P, 3] in [0, 1]) -> [P, levels * features]``."""

    def __init__(self, levels: int = 8, features: int = 2, log2_table: int = 14,
                 base_res: int = 4, max_res: int = 128) -> None:
        super().__init__()
        self.levels, self.features = levels, features
        table = 2**log2_table
        res = level_resolutions(levels, base_res, max_res)
        rows = [min(table, (r + 1) ** 3) for r in res]
        offsets = [0]
        for n in rows[:-1]:
            offsets.append(offsets[-1] + n)
        self.register_buffer("res", torch.tensor(res, dtype=torch.long), persistent=False)
        self.register_buffer("rows", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        # a level is dense when every vertex has its own row (no hashing, no collisions)
        # a level is dense when every vertex has its own row (no hashing, no collisions);
        # resolutions grow, so the dense levels come first
        self.n_dense = sum((r + 1) ** 3 <= table for r in res)
        self.register_buffer("primes", torch.tensor(_PRIMES, dtype=torch.long), persistent=False)
        self.table = nn.Parameter(torch.zeros(sum(rows), features))

    @property
    def out_dim(self) -> int:
        return self.levels * self.features

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Instant-NGP's initialisation: features uniform in ±1e-4."""
        with torch.no_grad():
            self.table.copy_(torch.rand(self.table.shape, generator=generator,
                                        device=self.table.device) * 2e-4 - 1e-4)

    def indices_and_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows ``[P, L, 8]`` (int32) and trilinear weights ``[P, L, 8]`` of ``x``.

        Independent of the parameters, so callers that evaluate many parameter vectors on the
        same points compute them once. Per axis we form the two corner coordinates' terms
        ``[P, L, 3, 2]`` and combine the axes by broadcasting: ``+`` of strided coordinates for
        the dense levels, ``xor`` of prime products for the hashed ones (always the finest).
        The mask of the hash distributes over ``xor``, so it is applied per axis and the
        8-corner work is done in int32 (these few full-size ops dominate the encoding's cost).
        """
        x = x.clamp(0.0, 1.0)
        res = self.res.to(x.dtype)
        scaled = x[:, None, :] * res[None, :, None]                        # [P, L, 3]
        cell = torch.minimum(scaled.floor().long(), (self.res - 1)[None, :, None])
        frac = scaled - cell.to(x.dtype)
        corner = cell[..., None] + torch.arange(2, device=x.device)        # [P, L, 3, 2]
        nd = self.n_dense
        index = torch.empty(x.shape[0], self.levels, 2, 2, 2, dtype=torch.int32,
                            device=x.device)
        if nd:
            side = (self.res[:nd] + 1)[None, :, None]
            dense = corner[:, :nd] * torch.stack([torch.ones_like(side), side, side * side], 2)
            dense[:, :, 0] += self.offsets[None, :nd, None]
            _combine(dense.int(), torch.add, out=index[:, :nd])
        if nd < self.levels:
            mask = (self.rows[nd:] - 1)[None, :, None, None]
            hashed = (corner[:, nd:] * self.primes[None, None, :, None]) & mask
            _combine(hashed.int(), torch.bitwise_xor, out=index[:, nd:])
            index[:, nd:] += self.offsets[None, nd:, None, None, None].int()
        w = _combine(torch.stack([1 - frac, frac], -1), torch.mul)
        return index.reshape(x.shape[0], self.levels, 8), w.reshape(x.shape[0], self.levels, 8)

    def interpolate(self, tables: torch.Tensor, index: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
        """Features ``[B, P, L * F]`` from tables ``[B, rows, F]`` and precomputed rows and
        weights, the B tables stacked into one ``index_select`` (its backward is an
        ``index_add``; on the CPU this is 8x faster than ``embedding_bag``'s sort-based one)."""
        b, rows, f = tables.shape
        p, levels, _ = index.shape
        flat = index.reshape(-1)
        if b > 1:
            shift = torch.arange(b, device=index.device, dtype=index.dtype) * rows
            flat = (flat[None] + shift[:, None]).reshape(-1)
        feats = torch.index_select(tables.reshape(b * rows, f), 0, flat)
        out = (feats.view(b, p, levels, 8, f) * weight[..., None]).sum(3)
        return out.reshape(b, p, levels * f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index, weight = self.indices_and_weights(x)
        return self.interpolate(self.table[None], index, weight)[0]


def _combine(per_axis: torch.Tensor, op, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[P, L, 3, 2]`` per-axis terms -> ``[P, L, 2, 2, 2]`` combined over the 8 corners."""
    xy = op(per_axis[:, :, 0, :, None], per_axis[:, :, 1, None, :])      # [P, L, 2, 2]
    if out is None:
        return op(xy[..., None], per_axis[:, :, 2, None, None, :])
    return op(xy[..., None], per_axis[:, :, 2, None, None, :], out=out)
