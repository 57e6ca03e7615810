"""Graphics tasks: the rasterizer is right, batched equals looped, Mitsuba agrees, the tasks'
losses, relaxation, determinism, errors, pictures and ``zgbench show``."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zgbench import cli, specs
from zgbench.errors import MissingExtra, UsageError
from zgbench.store import ResultStore
from zgbench.tasks import _meshes, _raster
from zgbench.tasks.mesh_fit import MeshFit
from zgbench.tasks.procedural import GRID_CHOICES, HEADER, Procedural, choose
from zgbench.testing import run_once

def small(**params):
    """The smallest mesh-fit instance (d = 126, 32 x 32, 2 + 2 views), with changes."""
    return MeshFit(**{"verts": 42, "res": 32, "views": 2, "heldout": 2, **params})




def mitsuba_or_skip():
    from zgbench.tasks import _mitsuba

    try:
        return _mitsuba.load("cpu", needed_by="test")
    except UsageError as exc:  # MissingExtra is a UsageError too
        pytest.skip(str(exc))


def front_camera(res: int, distance: float = 3.0) -> _raster.Cameras:
    return _raster.look_at(torch.tensor([[0.0, 0.0, distance]]), 45.0, res, res)


# ----------------------------------------------------------------------------- renderer
def test_icosphere_matches_trimesh():
    trimesh = pytest.importorskip("trimesh")
    for level in range(4):
        verts, faces = _meshes.icosphere(level)
        ref = trimesh.creation.icosphere(subdivisions=level)
        assert verts.shape == (10 * 4**level + 2, 3) and faces.shape == ref.faces.shape
        ours = sorted(map(tuple, np.round(verts.numpy(), 5)))
        theirs = sorted(map(tuple, np.round(ref.vertices, 5).astype(np.float32)))
        assert np.allclose(ours, theirs, atol=1e-5)
        mesh = trimesh.Trimesh(verts.numpy(), faces.numpy(), process=False)
        assert mesh.is_watertight and mesh.volume > 0  # closed, outward winding


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("depth", [2.0, 0.3])
def test_square_facing_camera_has_exact_area_depth_and_position(depth, backend):
    # A square of side 0.4 * depth at `depth` in front of the camera, shifted right (+x)
    # and up (+y): its pixel centres are known exactly, and it must appear in the upper
    # right of the image, as in Mitsuba's look_at convention.
    res, cams = 64, front_camera(64)
    half, shift = 0.2 * depth, 0.3 * depth
    corners = torch.tensor([[-half, -half], [half, -half], [half, half], [-half, half]])
    corners = torch.cat([corners + shift, torch.full((4, 1), 3.0 - depth)], 1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags = _raster.rasterize(corners[None], faces, cams, backend)
    f = cams.focal
    left, right = res / 2 + f * (shift - half) / depth, res / 2 + f * (shift + half) / depth
    top, bottom = res / 2 - f * (shift + half) / depth, res / 2 - f * (shift - half) / depth
    columns = [i for i in range(res) if left <= i + 0.5 <= right]
    rows = [j for j in range(res) if top <= j + 0.5 <= bottom]
    expected = torch.zeros(res, res, dtype=torch.bool)
    expected[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1] = True
    assert columns[0] > res // 2 and rows[-1] < res // 2
    assert torch.equal(frags.mask[0, 0], expected)
    assert torch.allclose(frags.depth[0, 0][expected], torch.tensor(depth), rtol=1e-5)
    assert torch.isinf(frags.depth[0, 0][~expected]).all()


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_nearer_face_wins_and_triangles_behind_the_camera_are_dropped(backend):
    cams = front_camera(32)
    quad = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    far, near = (torch.cat([quad * s, torch.full((4, 1), z)], 1) for s, z in ((1, 0.0), (0.5, 1.0)))
    behind = torch.cat([quad, torch.full((4, 1), 4.0)], 1)  # z = 4: behind the camera at z = 3
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    verts = torch.cat([far, near, behind])[None]
    all_faces = torch.cat([faces, faces + 4, faces + 8])
    frags = _raster.rasterize(verts, all_faces, cams, backend)
    centre = frags.face[0, 0, 16, 16]
    assert centre in (2, 3) and frags.depth[0, 0, 16, 16] == pytest.approx(2.0)
    assert (frags.face < 4).all()  # the quad behind the camera never shows


def test_sphere_silhouette_area_and_depth():
    radius, distance, res = 0.8, 3.0, 128
    verts, faces = _meshes.icosphere(4)
    cams = front_camera(res, distance)
    frags = _raster.rasterize(verts[None] * radius, faces, cams)
    # The silhouette of a sphere is a disc of angular radius asin(r / D).
    disc = cams.focal * math.tan(math.asin(radius / distance))
    area = float(frags.mask.sum())
    assert area == pytest.approx(math.pi * disc**2, rel=0.02)
    centre = frags.depth[0, 0, res // 2 - 1:res // 2 + 1, res // 2 - 1:res // 2 + 1]
    assert torch.allclose(centre, torch.tensor(distance - radius), atol=5e-3)


def awkward_meshes(level: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` randomly bumped icospheres with what a rasterizer must survive: zero-area
    triangles (a vertex moved onto a neighbour), a vertex far out, and in the last mesh a
    NaN vertex."""
    base, faces = _meshes.icosphere(level)
    gen = torch.Generator().manual_seed(seed)
    verts = base[None] * (0.8 + 0.15 * torch.rand(batch, base.shape[0], 1, generator=gen))
    verts = verts + 0.03 * torch.randn(verts.shape, generator=gen)
    for a, b, c in faces[:3].tolist():
        verts[:, a] = verts[:, b]  # faces around edge (a, b) collapse to zero area
        verts[:, c] = (verts[:, a] + 2 * verts[:, c]) / 3
    verts[:, faces[5, 0]] = torch.tensor([40.0, -30.0, 25.0])
    verts[-1, faces[7, 1]] = float("nan")
    return verts, faces


def awkward_cameras(res: int) -> _raster.Cameras:
    """Views from afar, from close by, and from inside the mesh (triangles behind the camera
    and across the near plane); the last one off-centre and not square."""
    eye = torch.tensor([[0.3, 0.5, 3.0], [-1.2, 0.4, 0.9], [0.2, -0.1, 0.4], [2.0, 1.0, -1.5]])
    cams = _raster.look_at(eye, 45.0, res, res)
    return _raster.Cameras(cams.eye, cams.rotation, 50.0, res, res * 3 // 4)


@pytest.mark.parametrize("level,res", [(1, 32), (4, 48)])
def test_numba_rasterizer_equals_torch_rasterizer(level, res):
    # The compiled kernel repeats the torch path's float operations in the same order
    # (IEEE-754 +, -, *, /, ceil and floor round the same way everywhere, and neither side
    # fuses multiply-adds), so the fragments are identical: no tolerance, not even on ties
    # and edges. A failure here means the two implementations' arithmetic diverged.
    verts, faces = awkward_meshes(level, batch=3, seed=level)
    cams = awkward_cameras(res)
    fast = _raster.rasterize(verts, faces, cams, "numba")
    slow = _raster.rasterize(verts, faces, cams, "torch")
    assert fast.face.shape == (3, 4, res * 3 // 4, res) and fast.face.dtype == torch.long
    assert fast.mask.float().mean() > 0.2  # most views see the mesh
    assert torch.equal(fast.face, slow.face)
    assert torch.equal(fast.depth, slow.depth)
    assert torch.isinf(fast.depth[~fast.mask]).all()
    assert (fast.depth[fast.mask] >= _raster.NEAR).all()
    # Shading: the kernel colours each covered pixel from its face normal, the torch path
    # colours every face and gathers (its norm and dot products sum in their own order);
    # the same formulas, rounded differently: a few ulps, 10 on the face with a far vertex,
    # whose cross product cancels large coordinates.
    for shading in _raster.SHADINGS:
        fast_image = _raster.shade(verts, faces, fast, shading)
        slow_image = _raster._shade_torch(verts, faces, fast, shading)
        assert torch.allclose(fast_image, slow_image, rtol=0, atol=1e-5), shading


def test_numba_rasterizer_is_deterministic_across_thread_counts():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    verts, faces = awkward_meshes(2, batch=5, seed=9)
    cams = awkward_cameras(40)
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)  # the kernel's thread count follows torch's
        try:
            frags = _raster.rasterize(verts, faces, cams)
            runs.append((frags, _raster.render(verts, faces, cams, "lambert")))
        finally:
            torch.set_num_threads(1)
    for frags, image in runs[1:]:
        assert torch.equal(frags.face, runs[0][0].face)
        assert torch.equal(frags.depth, runs[0][0].depth)
        assert torch.equal(image, runs[0][1])


def test_rasterizer_falls_back_to_torch_without_numba(monkeypatch):
    import sys

    verts, faces = awkward_meshes(1, batch=2, seed=3)
    cams = awkward_cameras(24)
    expected = _raster.render(verts, faces, cams, "normals")
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now fails
    monkeypatch.delitem(sys.modules, "zgbench.tasks._raster_cpu", raising=False)
    _raster._cpu_kernels.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="numba is unavailable"):
            image = _raster.render(verts, faces, cams, "normals")
        assert _raster._cpu_kernels() is None
        with pytest.raises(ValueError, match="numba rasterizer"):
            _raster.rasterize(verts, faces, cams, "numba")
    finally:
        _raster._cpu_kernels.cache_clear()
    assert torch.allclose(image, expected, rtol=0, atol=1e-5)  # as in the test above
    with pytest.raises(ValueError, match="backend"):
        _raster.rasterize(verts, faces, cams, "opengl")


def test_batched_render_equals_loop_over_candidates():
    task = small(views=3, seed=1)
    gen = torch.Generator().manual_seed(0)
    thetas = torch.cat([task.target_theta[None], 0.05 * torch.randn(4, task.dim, generator=gen)])
    for shading in _raster.SHADINGS:
        verts = task.mesh_vertices(thetas)
        batched = _raster.render(verts, task.faces, task.cameras["train"], shading)
        looped = torch.cat([_raster.render(verts[i:i + 1], task.faces, task.cameras["train"],
                                           shading) for i in range(len(thetas))])
        assert batched.shape == (5, 3, 3 if shading == "normals" else 1, 32, 32)
        assert torch.equal(batched, looped)


def test_raster_and_mitsuba_silhouettes_agree():
    mitsuba_or_skip()
    for target in ("blob", "cube"):
        raster = small(target=target, shading="silhouette", res=48, seed=2)
        mitsuba = small(target=target, shading="silhouette", res=48, seed=2,
                          renderer="mitsuba")
        gen = torch.Generator().manual_seed(1)
        thetas = torch.stack([raster.initial(), raster.target_theta,
                              raster.target_theta + 0.05 * torch.randn(raster.dim, generator=gen)])
        for split in ("train", "heldout"):
            a = raster.render(thetas, split) > 0
            b = mitsuba.render(thetas, split) > 0
            iou = (a & b).sum((-1, -2, -3)).float() / (a | b).sum((-1, -2, -3)).float()
            assert (iou > 0.95).all(), iou


def test_mitsuba_lambert_renders_and_is_deterministic():
    mitsuba_or_skip()
    task = small(renderer="mitsuba", spp=2, ref_spp=8, seed=3, smooth=0.0)
    thetas = torch.stack([task.initial() + 0.3 * task.base.reshape(-1), task.target_theta])
    first, again = task.loss(thetas, key=7), task.loss(thetas, key=7)
    assert torch.equal(first, again)
    assert first[1] < first[0]  # Monte Carlo noise at the target, a real error off it
    assert task.target_images["train"].amax() > 0.3


# ------------------------------------------------------------------------------ mesh-fit
@pytest.mark.parametrize("shading", _raster.SHADINGS)
def test_mesh_fit_loss_zero_at_target_positive_away(shading):
    task = small(shading=shading, seed=4, smooth=0.0)
    gen = torch.Generator().manual_seed(2)
    away = task.target_theta + 0.05 * torch.randn(task.dim, generator=gen)
    loss = task.loss(torch.stack([task.target_theta, away, task.initial()]), key=0)
    assert loss[0] == 0 and (loss[1:] > 0).all()
    at_target = task.evaluate(task.target_theta)
    assert at_target["image_mse"] == 0 and at_target["image_relmse"] == 0
    assert at_target["chamfer"] < 1e-6
    start = task.evaluate(task.initial())
    assert start["image_mse"] > 1e-3 and start["chamfer"] > 1e-3


def test_mesh_fit_regularizer_is_the_offsets_laplacian():
    # 0 at the start, small for a uniform scale (the sphere's own Laplacian), large on a
    # spike; added to the image error with weight `smooth`.
    plain, regular = small(seed=3, smooth=0.0), small(seed=3, smooth=2.0)
    start = plain.initial()
    scaled = start + 0.1 * plain.base.reshape(-1)
    spike = start.clone()
    spike[:3] += 0.2
    thetas = torch.stack([start, scaled, spike])
    rough = plain.roughness(thetas)
    assert rough[0] == 0 and 0 < rough[1] < 0.2 * rough[2]
    assert torch.allclose(regular.loss(thetas, 0), plain.loss(thetas, 0) + 2.0 * rough)


def test_mesh_fit_start_sits_at_the_targets_mean_radius():
    # The target lies partly inside and partly outside the start (no favoured direction).
    for seed in range(3):
        task = small(seed=seed)
        start = task.mesh_vertices(task.initial()[None])[0].norm(dim=1)
        target = task.target_verts.norm(dim=1)
        inside = float((target < start).float().mean())
        assert 0.2 < inside < 0.8


def test_mesh_fit_is_deterministic_and_seeded():
    a, b, c = small(seed=5), small(seed=5), small(seed=6)
    assert torch.equal(a.target_theta, b.target_theta)
    assert not torch.equal(a.target_theta, c.target_theta)
    thetas = torch.randn(3, a.dim, generator=torch.Generator().manual_seed(0)) * 0.05
    assert torch.equal(a.loss(thetas, 1), b.loss(thetas, 1))
    assert a.evaluate(thetas[0]) == b.evaluate(thetas[0])
    assert a.dim == 3 * 42 and MeshFit(verts=642, res=16, views=1).dim == 1926


def test_mesh_fit_survives_wild_parameters():
    task = small()
    wild = torch.stack([torch.full((task.dim,), float("nan")), 1e4 * torch.ones(task.dim),
                        torch.randn(task.dim) * 5])
    loss = task.loss(wild, key=0)
    assert loss.shape == (3,) and torch.isfinite(loss).all()


def test_mesh_fit_reads_a_mesh_file(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    path = tmp_path / "box.obj"
    trimesh.creation.box(extents=(1.0, 0.6, 0.8)).export(path)
    task = small(mesh=str(path))
    assert task.target_theta is None and task.target_images["train"].amax() > 0
    assert task.loss(task.initial()[None], 0)[0] > 0
    assert set(task.evaluate(task.initial())) == {"image_mse", "image_relmse", "chamfer"}


def test_mesh_fit_bad_parameters_say_what_to_do(registry, tmp_path):
    with pytest.raises(UsageError, match="642"):
        specs.resolve_task(registry, "mesh-fit[verts=100]")
    with pytest.raises(UsageError, match="does not exist"):
        specs.resolve_task(registry, f"mesh-fit[mesh={tmp_path / 'missing.obj'}]")
    with pytest.raises(UsageError, match="res"):
        specs.resolve_task(registry, "mesh-fit[res=2]")


def test_mitsuba_renderer_names_the_extra_when_missing(registry, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mitsuba" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"zgbench\[graphics\]"):
        specs.resolve_task(registry, "mesh-fit[renderer=mitsuba]")
    from zgbench.tasks import _mitsuba

    with pytest.raises(MissingExtra, match=r"zgbench\[graphics\]"):
        _mitsuba.load("cpu", needed_by="mesh-fit")
    spec = specs.resolve_task(registry, "mesh-fit[verts=42,res=16,views=1]")  # raster: fine
    assert MeshFit(**spec.kwargs).loss(torch.zeros(1, 126), 0).shape == (1,)


# ---------------------------------------------------------------------------- procedural
def test_procedural_loss_zero_at_target_positive_away():
    task = Procedural(res=16, seed=1)
    gen = torch.Generator().manual_seed(0)
    away = task.target_theta + 0.05 * torch.randn(task.dim, generator=gen)
    loss = task.loss(torch.stack([task.target_theta, away, task.initial()]), key=0)
    assert loss[0] == 0 and (loss[1:] > 0).all()
    assert task.evaluate(task.target_theta) == {"image_mse": 0.0, "image_relmse": 0.0,
                                                "param_error": 0.0}
    start = task.evaluate(task.initial())
    assert start["image_mse"] > 0 and start["param_error"] > 0
    assert task.dim == HEADER + 8 * 4


def test_procedural_discrete_relaxation_and_layout_seed():
    assert choose(torch.tensor([-1.0, 0.0, 0.49, 0.5, 0.99, 1.0, 7.0]), 2).tolist() == [
        0, 0, 0, 1, 1, 1, 1]
    task = Procedural(res=32, seed=2)
    base = task.target_theta.clone()
    base[5] = 0.9  # visible jitter, so the layout seed matters

    def image(index, value):
        theta = base.clone()
        theta[index] = value
        return task.render(theta[None], 32)[0]

    # Inside one bin of a discrete coordinate nothing changes; across a bin edge it jumps.
    width = 1 / GRID_CHOICES
    assert torch.equal(image(3, 0.2 * width), image(3, 0.8 * width))
    assert not torch.equal(image(3, 0.8 * width), image(3, 1.2 * width))
    assert not torch.equal(image(6, 0.0), image(6, 0.99))  # another seed, another layout
    # Colour is continuous: a small step changes pixel values by about the step.
    step = (image(0, base[0] + 0.01) - image(0, base[0])).abs().amax()
    assert 0 < step <= 0.0101


def test_procedural_batched_equals_loop_and_is_deterministic():
    task, again = Procedural(res=16, seed=3), Procedural(res=16, seed=3)
    thetas = torch.rand(6, task.dim, generator=torch.Generator().manual_seed(0))
    batched = task.render(thetas, 16)
    looped = torch.cat([task.render(t[None], 16) for t in thetas])
    assert torch.equal(batched, looped)
    assert torch.equal(task.target_theta, again.target_theta)
    assert torch.equal(task.loss(thetas, 0), again.loss(thetas, 9))
    assert not torch.equal(task.target_theta, Procedural(res=16, seed=4).target_theta)


# --------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("task", ["mesh-fit[verts=42,res=24,views=2,heldout=1]",
                                  "procedural[res=16,eval_scale=2]"])
@pytest.mark.parametrize("optimizer", ["random-search[sigma=0.02]", "cge"])
def test_optimizers_reduce_the_loss_on_the_smallest_instance(task, optimizer, registry):
    record = run_once(task, optimizer, evals=400, registry=registry)
    assert record["status"] == "ok", record["error"]
    first, last = record["trajectory"][0], record["trajectory"][-1]
    assert last["evals"] == 400
    assert last["best_loss"] < 0.98 * first["current_loss"]


# ------------------------------------------------------------------------ pictures, show
def test_artifacts_and_show_contact_sheets(tmp_path, registry):
    results = tmp_path / "results"
    for task in ("mesh-fit[verts=42,res=16,views=1,heldout=2]", "procedural[res=16,eval_scale=2]"):
        for seed in (0, 1):
            record = run_once(task, "random-search[sigma=0.02]", evals=40, seed=seed,
                              registry=registry, results=results)
            ResultStore(results).put(record)
            names = sorted(Path(p).name for p in record["artifacts"])
            # θ stored by the harness, the target alone as the reference
            assert names == ["fit.png", "recommendation.npy", "reference.png"]
    out = tmp_path / "pictures"
    assert cli.main(["show", str(results), "-o", str(out)]) == 0
    sheets = sorted(p.name for p in out.glob("*.png"))
    assert len(sheets) == 2 and sheets[0].startswith("mesh-fit")
    assert all(Image.open(out / name).size[0] > 200 for name in sheets)
    # Drawn again from the stored θ: the task is rebuilt from its record (same target), so
    # the picture is the stored one, pixel for pixel.
    again = tmp_path / "again"
    assert cli.main(["show", str(results), "-o", str(again), "--tasks", "procedural",
                     "--render"]) == 0
    assert [p.name for p in again.glob("*.png")] == [sheets[1]]
    redrawn = sorted((again / "runs").glob("*/fit.png"))
    assert len(redrawn) == 2
    for path in redrawn:
        stored = results / "artifacts" / path.parent.name / "fit.png"
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(stored)))
    # --set changes the task for the drawing: at twice the resolution the same θ and target
    # are drawn with finer pixels, a different picture.
    bigger = tmp_path / "bigger"
    assert cli.main(["show", str(results), "-o", str(bigger), "--tasks",
                     "procedural[res=16,eval_scale=2]", "--render", "--set", "res=32"]) == 0
    path = next((bigger / "runs").glob("*/fit.png"))
    stored = results / "artifacts" / path.parent.name / "fit.png"
    assert not np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(stored)))


def test_show_explains_bad_input(tmp_path, capsys):
    def error():
        return " ".join(capsys.readouterr().err.split())

    assert cli.main(["show", str(tmp_path)]) == 2
    assert "is not a results folder" in error()
    (tmp_path / "runs").mkdir()
    assert cli.main(["show", str(tmp_path)]) == 2
    assert "has a picture" in error()
    assert cli.main(["show", str(tmp_path), "--set", "res=3"]) == 2
    assert "use it with --render" in error()
    assert cli.main(["show", str(tmp_path), "--tasks", "mesh-fit[verts=5]"]) == 2
    assert "verts=5" in error()
    assert cli.main(["show", str(tmp_path), "--tasks", "mesh-fitt"]) == 2
    assert "Did you mean 'mesh-fit'" in error()
