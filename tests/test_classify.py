"""The classify task: batched forward equals a loop, the layers contract, autograd, data.

Small sizes: digits with the small CNN (and ResNet-20 on 8x8 digits, where its forward pass
is cheap), and a CIFAR-10 folder written here in the original pickle format.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from zgbench import specs
from zgbench.errors import ContractError, UsageError
from zgbench.tasks import _nets
from zgbench.tasks.classify import Classify, augment
from zgbench.testing import check_anchors, run_once

pytest.importorskip("sklearn")




@pytest.fixture(scope="module")
def cnn():
    return Classify(seed=3, batch=32)


@pytest.fixture(scope="module")
def resnet():
    return Classify(seed=3, batch=16, model="resnet20")


def perturbed(task, rows, scale=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return task.initial() + scale * torch.randn(rows, task.dim, generator=gen)


def test_sizes(cnn, resnet):
    assert cnn.dim == 1898  # a few thousand parameters
    assert _nets.resnet_cifar(3, 10).dim == 269_722  # ResNet-20 on CIFAR-10: 0.27M
    assert resnet.dim == 269_722 - 2 * 16 * 9  # one input channel instead of three
    assert cnn.x_train.shape == (1348, 1, 8, 8) and cnn.x_test.shape == (449, 1, 8, 8)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_batched_loss_equals_loop(name, request):
    task = request.getfixturevalue(name)
    thetas = perturbed(task, 5)
    batched = task.loss(thetas, key=11)
    looped = torch.stack([task.loss(t[None], key=11)[0] for t in thetas])
    assert batched.shape == (5,)
    assert torch.allclose(batched, looped, rtol=1e-5, atol=1e-6)
    task._chunk, chunk = 2, task._chunk  # chunked forward passes give the same numbers
    try:
        assert torch.allclose(task.loss(thetas, key=11), batched, rtol=1e-5, atol=1e-6)
    finally:
        task._chunk = chunk


def test_key_fixes_the_minibatch(cnn):
    thetas = perturbed(cnn, 3)
    assert torch.equal(cnn.loss(thetas, 5), cnn.loss(thetas, 5))
    assert not torch.equal(cnn.loss(thetas, 5), cnn.loss(thetas, 6))
    images, labels = cnn.minibatch(5)
    assert images.shape == (32, 1, 8, 8) and len(set(labels.tolist())) > 1


def test_instance_depends_on_seed_only():
    a, b, c = Classify(seed=1), Classify(seed=1), Classify(seed=2)
    assert torch.equal(a.initial(), b.initial()) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.initial(), c.initial()) and not torch.equal(a.y_test, c.y_test)


def test_grad_is_autograd_of_loss(cnn):
    thetas = perturbed(cnn, 2)
    values, grads = cnn.grad(thetas, key=4)
    assert torch.allclose(values, cnn.loss(thetas, 4), atol=1e-6)
    assert grads.shape == (2, cnn.dim)
    _, single = cnn.grad(thetas[1:], key=4)
    assert torch.allclose(grads[1], single[0], atol=1e-6)
    # a central difference along the gradient matches its squared norm
    direction = grads[0] / grads[0].norm()
    eps = 1e-2
    slope = (cnn.loss((thetas[0] + eps * direction)[None], 4)
             - cnn.loss((thetas[0] - eps * direction)[None], 4)) / (2 * eps)
    assert float(slope) == pytest.approx(float(grads[0].norm()), rel=0.05)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_layers_contract(name, request):
    task = request.getfixturevalue(name)
    slices = task.layers()
    assert [s.start for s in slices[1:]] == [s.stop for s in slices[:-1]]
    assert slices[0].start == 0 and slices[-1].stop == task.dim
    theta = perturbed(task, 1)[0]
    base, trace = task.layers(theta[None], 9)
    assert torch.allclose(base, task.loss(theta[None], 9), atol=1e-6)
    gen = torch.Generator().manual_seed(1)
    for index, (_, lo, hi) in enumerate(slices):
        rows = theta.repeat(3, 1)
        # perturb layer `index` and everything after it: the restart must not rely on the
        # later layers being equal
        rows[:, lo:] += 0.05 * torch.randn(3, task.dim - lo, generator=gen)
        restarted = task.layers(rows, 9, start=index, inputs=trace)
        assert torch.allclose(restarted, task.loss(rows, 9), rtol=1e-5, atol=1e-6), slices[index]
    rows = theta.repeat(2, 1)
    rows[1, 0] += 1.0
    with pytest.raises(ContractError, match="differ from the traced"):
        task.layers(rows, 9, start=1, inputs=trace)
    with pytest.raises(ContractError, match="key differs"):
        task.layers(rows[:1], 10, start=1, inputs=trace)


def test_evaluate_starts_near_chance(cnn):
    metrics = cnn.evaluate(cnn.initial())
    assert set(metrics) == {"accuracy", "test_loss"}
    assert 0.0 <= metrics["accuracy"] < 0.3 and metrics["test_loss"] > 1.5


def test_adam_first_order_reaches_90_percent():
    record = run_once("classify[batch=32]", "adam", grads=300)
    assert record["status"] == "ok", record["error"]
    assert record["final"]["metrics"]["accuracy"] > 0.9


def test_bad_parameters(registry):
    with pytest.raises(UsageError, match="batch"):
        specs.resolve_task(registry, "classify[batch=0]")
    with pytest.raises(UsageError, match="test_fraction"):
        specs.resolve_task(registry, "classify[test_fraction=1.5]")
    with pytest.raises(UsageError, match="dataset"):
        specs.resolve_task(registry, "classify[dataset=mnist]")


# ------------------------------------------------------------------------------ CIFAR-10
def write_cifar10(root, per_batch=6, seed=0):
    """A cifar-10-batches-py folder in the original format: Python-2-style pickles of dicts
    with bytes keys, ``data`` uint8 [n, 3072] (all red, then green, then blue, row-major)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for name in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, handle, protocol=2)
    return folder, written


def test_cifar10_reader(tmp_path):
    folder, written = write_cifar10(tmp_path)
    for data in (str(folder), str(tmp_path)):  # the folder itself or its parent
        task = Classify(dataset="cifar10", data=data, batch=8, seed=0)
        assert task.x_train.shape == (30, 3, 32, 32) and task.x_test.shape == (6, 3, 32, 32)
    first, labels = written["data_batch_1"]
    assert task.y_train[:6].tolist() == labels
    assert task.y_test.tolist() == written["test_batch"][1]
    # undo the normalisation: pixel (channel 1, row 2, column 5) of the first image
    raw = task.x_train * task._std + task._mean
    assert float(raw[0, 1, 2, 5]) * 255 == pytest.approx(first[0, 1024 + 2 * 32 + 5], abs=1e-3)
    values = task.loss(perturbed(task, 2), key=0)
    assert values.shape == (2,) and torch.isfinite(values).all()


def test_cifar10_missing_or_broken(tmp_path):
    with pytest.raises(UsageError, match="cifar-10-python.tar.gz"):
        Classify(dataset="cifar10", data=str(tmp_path / "nowhere"))
    folder, _ = write_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(UsageError, match="not a CIFAR-10 batch"):
        Classify(dataset="cifar10", data=str(folder))


def test_augment_crops_and_flips():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    out = augment(images, torch.Generator().manual_seed(0), pad=0)  # flips only
    for image, result in zip(images, out):
        assert torch.equal(result, image) or torch.equal(result, image.flip(-1))
    a = augment(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape
    assert torch.equal(a, augment(images, torch.Generator().manual_seed(1)))


def test_network_restart_shares_layers():
    """The feature-reuse forward pass gives the plain forward pass's outputs."""
    net = _nets.small_cnn(1, 10, 8, width=4)
    theta = net.initial(torch.Generator().manual_seed(0))
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    rows = theta.repeat(4, 1)
    rows[:, net.slices[1].start] += torch.arange(4.0)
    _, inputs = net.trace(theta, x)
    shared = net.forward(rows, inputs[1], start=1, share=True)
    assert torch.allclose(shared, net.forward(rows, x), atol=1e-6)
    # one input per row (batched=True), chunked
    xs = torch.randn(4, 5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    looped = torch.stack([net.trace(r, xi)[0] for r, xi in zip(rows, xs)])
    assert torch.allclose(net.forward(rows, xs, batched=True, chunk=3), looped, atol=1e-6)


def test_constant_class_and_start_score_worse_than_the_adam_reference():
    """Issue 22's ordering at the quick suite's size: a constant class (the training prior)
    and the start sit near chance, the first-order reference far above."""
    sanity, reference = check_anchors(Classify(seed=3, width=4, batch=32))
    assert set(sanity) == {"start", "constant class"}
    assert sanity["constant class"]["accuracy"] < 0.2 and reference["accuracy"] > 0.7
