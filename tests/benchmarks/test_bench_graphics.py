"""Renders per second of the mesh-fit renderers: batched raster, a Python loop over
candidates, and Mitsuba 3 (llvm_ad_rgb on the CPU).

B = 64 parameter vectors (meshes), one view, 64 x 64 and 128 x 128 pixels, d = 1,926 (642
vertices) and d = 30,726 (10,242 vertices). The raster renders flat Lambert shading with one
sample at each pixel centre; on the CPU that is the compiled numba kernel of
``zgbench.tasks._raster_cpu`` (project, rasterize and z-test each (mesh, view) image in one
thread, images spread over the threads; then a second kernel shades the covered pixels).
``test_raster_batched`` renders the 64 meshes in one call, ``test_raster_loop`` calls
``_raster.render`` once per mesh (B = 1): the difference is the per-call cost (the Python and
torch glue around the kernels, the kernel launch) against the kernel's own work per image,
which is the same in both. On one thread that work dominates (0.15 to 1.4 ms per image
against 25 to 85 us per call, 2 CPUs, December 2026), so batched beats the loop by only
1.1-1.6x; more threads speed up the batch (its images spread over them), not the loop's
single image. Mitsuba renders the same image with its ``direct`` integrator
at 1 sample per pixel (its closest equivalent), one mesh at a time: the vertex buffer is
written, the scene's acceleration structure rebuilt, the image rendered. Renders per second
= B / mean time (also stored as ``extra_info["renders_per_second"]``). Measure with::

    OMP_NUM_THREADS=1 .venv/bin/pytest tests/benchmarks/test_bench_graphics.py \
        --benchmark-enable -p no:cacheprovider

The rasterizer's threads follow torch's, which ``tests/conftest.py`` sets to 1;
``ZGBENCH_BENCH_THREADS=2`` runs the raster benchmarks with 2 torch (and so numba) threads.
With ``--benchmark-disable`` (the default in CI) each function runs once on B = 2 meshes, so
the file stays cheap while still checking that every path renders.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import pytest
import torch

from zgbench.tasks import _meshes, _raster

SIZES = [(64, 642), (64, 10242), (128, 642), (128, 10242)]
IDS = [f"{res}px-d{3 * verts}" for res, verts in SIZES]


@functools.lru_cache(maxsize=None)
def scene(res: int, verts: int, batch: int):
    """``batch`` perturbed icospheres (offsets ~ 0.01) and one camera in front of them."""
    base, faces = _meshes.icosphere(_meshes.level_for(verts))
    gen = torch.Generator().manual_seed(0)
    meshes = 0.8 * base[None] + 0.01 * torch.randn(batch, *base.shape, generator=gen)
    cams = _raster.look_at(_raster.orbit(torch.tensor([30.0]), torch.tensor([20.0]), 3.0),
                           45.0, res, res)
    return meshes, faces, cams


@pytest.fixture(autouse=True)
def bench_threads():
    """``ZGBENCH_BENCH_THREADS`` torch threads (and so rasterizer threads) for each benchmark."""
    threads = int(os.environ.get("ZGBENCH_BENCH_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield threads
    torch.set_num_threads(before)


def batch_size(benchmark) -> int:
    return 2 if benchmark.disabled else 64


def measure(benchmark, fn, batch: int):
    fn()  # warm up (allocator, Mitsuba's kernel compilation) outside the measurement
    result = benchmark.pedantic(fn, rounds=3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["renders_per_second"] = batch / benchmark.stats.stats.mean
    return result


@pytest.mark.parametrize("res,verts", SIZES, ids=IDS)
def test_raster_batched(benchmark, res, verts):
    meshes, faces, cams = scene(res, verts, batch_size(benchmark))
    images = measure(benchmark, lambda: _raster.render(meshes, faces, cams, "lambert"),
                     len(meshes))
    assert images.shape == (len(meshes), 1, 1, res, res) and images.amax() > 0


@pytest.mark.parametrize("res,verts", SIZES, ids=IDS)
def test_raster_loop(benchmark, res, verts):
    meshes, faces, cams = scene(res, verts, batch_size(benchmark))

    def loop():
        return torch.cat([_raster.render(m[None], faces, cams, "lambert") for m in meshes])

    images = measure(benchmark, loop, len(meshes))
    assert torch.equal(images, _raster.render(meshes, faces, cams, "lambert"))


@pytest.mark.skipif(importlib.util.find_spec("mitsuba") is None, reason="needs mitsuba")
@pytest.mark.parametrize("res,verts", SIZES, ids=IDS)
def test_mitsuba(benchmark, res, verts):
    from zgbench.errors import UsageError
    from zgbench.tasks.mesh_fit import MitsubaRenderer

    meshes, faces, cams = scene(res, verts, batch_size(benchmark))
    try:
        renderer = MitsubaRenderer(meshes.shape[1], faces, cams, "lambert", "direct",
                                   torch.device("cpu"))
    except UsageError as exc:  # no libLLVM >= 16
        pytest.skip(str(exc))
    images = measure(benchmark, lambda: renderer.render(meshes, spp=1, seed=0), len(meshes))
    assert images.shape == (len(meshes), 1, 1, res, res) and images.amax() > 0
