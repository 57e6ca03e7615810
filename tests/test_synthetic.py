"""Synthetic tasks: known optima, correct gradients, batched equals looped, determinism."""

import pytest
import torch

from zgbench.tasks.synthetic import Cliff, Rastrigin, Rosenbrock, Sphere, Step
from zgbench.tasks.toys import SplineToy
from zgbench.testing import check_anchors

ALL = [Sphere, Rosenbrock, Rastrigin, Step, Cliff]


@pytest.mark.parametrize("cls", ALL)
def test_optimum_and_metrics(cls):
    task = cls(dim=5, seed=3)
    at_opt = task.evaluate(task.x_star)
    assert at_opt["gap"] == pytest.approx(0.0, abs=1e-9) and at_opt["distance"] == 0.0
    assert task.evaluate(task.initial())["gap"] > 0


@pytest.mark.parametrize("cls", ALL)
def test_batched_equals_loop(cls):
    task = cls(dim=6, seed=1)
    thetas = torch.randn(7, 6, generator=torch.Generator().manual_seed(0)) * 2
    batched = task.loss(thetas, key=5)
    looped = torch.stack([task.loss(t[None], key=5)[0] for t in thetas])
    assert torch.equal(batched, looped)


@pytest.mark.parametrize("cls", [Sphere, Rosenbrock, Rastrigin])
def test_grad_matches_finite_differences(cls):
    task = cls(dim=4, seed=2)
    theta = (task.x_star + 0.3).double()
    task.x_star = task.x_star.double()
    values, grads = task.grad(theta[None], key=0)
    eps = 1e-6
    fd = torch.stack([(task.loss((theta + eps * e)[None], 0) - task.loss((theta - eps * e)[None], 0))[0]
                      / (2 * eps) for e in torch.eye(4, dtype=torch.float64)])
    assert torch.allclose(grads[0], fd, rtol=1e-5, atol=1e-6)


def test_instances_depend_on_seed_only():
    assert torch.equal(Sphere(dim=3, seed=7).x_star, Sphere(dim=3, seed=7).x_star)
    assert not torch.equal(Sphere(dim=3, seed=7).x_star, Sphere(dim=3, seed=8).x_star)


def test_step_has_plateaus_and_cliff_jumps():
    step = Step(dim=2, seed=0)
    z = step.x_star + torch.tensor([0.1, -0.2])
    assert step.loss(z[None], 0) == step.loss((z + 1e-3)[None], 0)
    cliff = Cliff(dim=2, seed=0)
    left = cliff.x_star + torch.tensor([-1e-4, 0.0])
    right = cliff.x_star + torch.tensor([1e-4, 0.0])
    assert float(cliff.loss(left[None], 0) - cliff.loss(right[None], 0)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("cls", ALL)
def test_every_sanity_output_scores_worse_than_the_reference(cls):
    """The start loses to the known optimum (issue 22's ordering) at the quick suite's size."""
    sanity, reference = check_anchors(cls(dim=8, seed=3))
    assert list(sanity) == ["start"] and reference["gap"] == pytest.approx(0.0, abs=1e-9)


def test_spline_toy_reference_is_the_papers_minimiser():
    sanity, reference = check_anchors(SplineToy(seed=0))
    assert reference == {"distance": 0.0, "loss": 0.0}
    assert sanity["start"]["distance"] == pytest.approx(2.9, abs=1e-6)
