"""Graphics tasks against their trivial outputs and their references (issue 22): the sanity
ordering, the soft rasterizer's gradient against central differences, and Adam on the soft
gradient through the real harness."""

from __future__ import annotations

import torch

from zgbench.tasks import _meshes, _raster, _softras
from zgbench.tasks.mesh_fit import MeshFit
from zgbench.tasks.procedural import Procedural
from zgbench.testing import run_once


def worse(task, outputs: dict[str, dict[str, float]], reference: dict[str, float]) -> list:
    """Sanity outputs whose primary metric is not worse than the reference's."""
    metric = task.primary_metric
    better = (lambda a, b: a < b) if task.metrics[metric] == "min" else (lambda a, b: a > b)
    return [name for name, got in outputs.items() if not better(reference[metric], got[metric])]


def test_mesh_fit_sanity_outputs_score_worse_than_the_reference():
    # The quick suite's instance on three seeds, and the task's default images once.
    quick = [MeshFit(verts=42, res=32, views=4, heldout=2, seed=seed) for seed in (0, 1, 2)]
    for task in quick + [MeshFit(verts=42, seed=3)]:
        outputs, reference = task.sanity(), task.reference()
        assert set(outputs) == {"empty image", "best uniform scale", "start"}
        assert set(reference) == set(task.metrics)
        assert worse(task, outputs, reference) == [], (outputs, reference)


def test_procedural_sanity_outputs_score_worse_than_the_reference():
    for seed in (0, 1, 2):
        task = Procedural(res=16, eval_scale=2, seed=seed)
        outputs, reference = task.sanity(), task.reference()
        assert set(outputs) == {"empty scene", "mean colour", "start"}
        assert reference["image_mse"] == 0 and reference["param_error"] == 0
        assert worse(task, outputs, reference) == [], (outputs, reference)
        # The empty scene is worse than the mean colour (the metric sees the picture).
        assert outputs["empty scene"]["image_mse"] > outputs["mean colour"]["image_mse"]


def test_soft_rasterizer_gradient_matches_central_differences():
    # A smooth case: float64, every pixel paired with every triangle (no margin cut-off),
    # a randomly bumped coarse sphere seen from one camera at 16 x 16.
    base, faces = _meshes.icosphere(1)
    gen = torch.Generator().manual_seed(0)
    verts = (base * 0.8 + 0.03 * torch.randn(base.shape, generator=gen)).double()[None]
    cams = _raster.look_at(torch.tensor([[0.4, 0.5, 2.8]]), 45.0, 16, 16)
    target = torch.rand(1, 1, 1, 16, 16, generator=gen, dtype=torch.float64) * 0.5

    def loss(v):
        image = _softras.soft_render(v, faces, cams, "lambert", margin=None)
        return ((image - target) ** 2).mean()

    v = verts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(v), v)
    h = 1e-6
    for _ in range(6):
        direction = torch.randn(verts.shape, generator=gen, dtype=torch.float64)
        numeric = (loss(verts + h * direction) - loss(verts - h * direction)) / (2 * h)
        analytic = (grad * direction).sum()
        assert torch.isclose(analytic, numeric, rtol=1e-4, atol=1e-9), (analytic, numeric)


def test_soft_rasterizer_tends_to_the_hard_one_as_sigma_shrinks():
    task = MeshFit(verts=162, res=48, views=2, heldout=1)
    verts = task.mesh_vertices(task.initial()[None])
    cams = task.cameras["train"]
    area = float(_raster.render(verts, task.faces, cams, "silhouette").sum())
    errors = []
    for sigma in (0.5, 0.1):
        soft = _softras.soft_render(verts, task.faces, cams, "silhouette", sigma=sigma)
        errors.append(abs(float(soft.sum()) - area) / area)
    # The soft edges of the foreshortened faces along the silhouette add up outside it:
    # about 16% more area at sigma 0.5 px, 4% at 0.2 (the default), under 2% at 0.1.
    assert errors[1] < 0.02 and errors[1] < errors[0] / 4
    for shading in _raster.SHADINGS:
        hard = _raster.render(verts, task.faces, cams, shading)
        soft = _softras.soft_render(verts, task.faces, cams, shading, sigma=0.1)
        assert soft.shape == hard.shape and float((soft - hard).abs().mean()) < 0.01


def test_mesh_fit_grad_returns_the_hard_loss_and_a_descent_direction_of_the_soft_one():
    task = MeshFit(verts=42, res=32, views=2, heldout=1, seed=3)
    thetas = torch.stack([task.initial(), task.initial() + 0.02 * task.base.reshape(-1)])
    values, grads = task.grad(thetas, key=0)
    assert torch.allclose(values, task.loss(thetas, 0))
    assert grads.shape == thetas.shape and torch.isfinite(grads).all()
    step = thetas - 1e-3 * task.scale * grads / grads.norm(dim=1, keepdim=True)
    assert (task.soft_loss(step) < task.soft_loss(thetas)).all()


def test_adam_on_the_soft_gradient_improves_on_the_start_through_the_harness(registry):
    record = run_once("mesh-fit[verts=42,res=32,views=2,heldout=2]", "adam",
                      grads=40, registry=registry)
    assert record["status"] == "ok", record["error"]
    start, final = record["trajectory"][0]["metrics"], record["final"]["metrics"]
    assert final["chamfer"] < start["chamfer"]
