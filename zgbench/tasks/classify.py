"""``classify``: train an image classifier by forward passes only (DeepZero's CIFAR ZO task).

After Chen et al., "DeepZero: Scaling up Zeroth-Order Optimization for Deep Model Training",
ICLR 2024: θ is the flat weight vector of a network, the loss is the minibatch
cross-entropy, and a zeroth-order optimizer sees only loss values. Test accuracy is the
held-out metric; DeepZero's target is 86.94% for ResNet-20 on CIFAR-10 with sparse CGE.

Data: ``digits`` (scikit-learn's bundled 8x8 digits, 1,797 images, no download; train/test
split drawn from the task seed, ``test_fraction`` held out) or ``cifar10`` read from a local
``cifar-10-batches-py`` folder (official train/test split, as the published numbers use).
Models: ``cnn`` (two conv stages and a linear head, 1,898 parameters on digits) and
``resnet20`` (0.27M parameters, option-A shortcuts). Batch normalisation uses the
statistics of the batch at hand (there is no running average outside θ); ``evaluate`` runs
the test set in fixed chunks of ``eval_batch`` images, in a fixed order.

``loss(thetas[B, d], key)``: ``key`` picks the minibatch (and, with ``augment``, its random
crops and flips); all B vectors run in vmapped forward passes on the task's device.

Capabilities
------------
``grad(thetas, key) -> (loss[B], grad[B, d])``: autograd through the same forward pass.

``layers`` (feature reuse, DeepZero): one method, three forms.

- ``layers()`` -> tuple of ``LayerSlice(name, start, stop)``, the network's layers in forward
  order; their slices ``theta[start:stop]`` tile ``[0, d)``. Costs nothing.
- ``layers(theta[1, d], key)`` -> ``(loss[1], trace)``: the loss at θ on ``key``'s minibatch,
  and an opaque ``trace`` holding every layer's input activations. One evaluation.
- ``layers(thetas[B, d], key, start=l, inputs=trace)`` -> ``loss[B]``: the losses of B
  vectors that equal the traced θ on every layer before ``l`` (checked), computed by
  restarting the forward pass at layer l from the cached input. Equals ``loss(thetas, key)``
  to rounding. B evaluations: charge them with ``problem.call("layers", ..., evals=B)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from zgbench import Budget, ContractError, Param, Task, UsageError, cache_dir, hookimpl
from zgbench import Cost
from zgbench.tasks import _anchors, _cifar, _nets

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
#: Activation memory one forward chunk may take (bytes), when ``chunk=0`` picks the size.
CHUNK_BYTES = 512 * 2**20


@dataclass
class Trace:
    """What ``layers(theta, key)`` returns for restarts: θ, the key, each layer's input and
    the minibatch labels. Optimizers pass it back without looking inside."""

    theta: torch.Tensor
    key: int
    inputs: list[Any]
    labels: torch.Tensor


class Classify(Task):
    """Image classification trained by forward passes: minibatch cross-entropy of a CNN."""

    name = "classify"
    provides = frozenset({"grad", "layers"})
    #: a trace is one forward pass, a restart of B rows B (partial) forward passes
    costs = {"grad": Cost(grads=1), "layers": Cost(evals=1)}
    needs = ("sklearn",)
    extra = "learn"
    metrics = {"accuracy": "max", "test_loss": "min"}
    primary_metric = "accuracy"
    family = "learning"
    default_budget = Budget(evals=100_000, grads=300)
    scale_note = "per layer: the init std of its weights (per-coordinate)"

    dataset = Param("digits", "image data", choices=("digits", "cifar10"))
    data = Param("", f"cifar10: folder holding {CIFAR_FOLDER} (default: in the zgbench cache)")
    model = Param("cnn", "network", choices=("cnn", "resnet20"))
    width = Param(8, "cnn: channels of the first convolution (the second has twice as many)")
    batch = Param(64, "minibatch size of one loss evaluation")
    test_fraction = Param(0.25, "digits: share of the images held out for testing")
    augment = Param(False, "random crops (4-pixel padding) and flips of training minibatches")
    chunk = Param(0, "most parameter vectors per forward pass (0: from a memory bound)")
    eval_batch = Param(1000, "test images per forward pass in evaluate")

    #: Adam steps, learning rate and its decay (x0.3 per third) of :meth:`reference`.
    REFERENCE_STEPS: ClassVar[int] = 300
    REFERENCE_LR: ClassVar[float] = 3e-3
    REFERENCE_DECAY: ClassVar[float] = 0.3
    reference_note = "Adam (lr 3e-3, x0.3 per third) on grad, 300 minibatch steps from θ₀"

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        for name in ("width", "batch", "eval_batch"):
            if params[name] < 1:
                raise UsageError(f"classify: {name} must be at least 1, got {params[name]}.")
        if params["chunk"] < 0:
            raise UsageError(
                f"classify: chunk must be 0 (automatic) or more, got {params['chunk']}.")
        if not 0.0 < params["test_fraction"] < 1.0:
            raise UsageError("classify: test_fraction must lie strictly between 0 and 1, "
                             f"got {params['test_fraction']}.")

    # ------------------------------------------------------------------------ setup
    def setup(self) -> None:
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: same instance everywhere
        if self.dataset == "digits":
            x_train, y_train, x_test, y_test = load_digits(self.test_fraction, gen)
        else:
            x_train, y_train, x_test, y_test = load_cifar10(self.data)
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True)
        self._mean, self._std = mean.to(self.device), std.to(self.device)
        self.x_train = ((x_train - mean) / std).to(self.device)
        self.x_test = ((x_test - mean) / std).to(self.device)
        self.y_train, self.y_test = y_train.to(self.device), y_test.to(self.device)
        if self.batch > len(self.y_train):
            raise UsageError(f"classify: batch={self.batch} exceeds the {len(self.y_train)} "
                             "training images.")
        channels, image = x_train.shape[1], x_train.shape[-1]
        if self.model == "cnn":  # both data sets have ten classes
            self.net = _nets.small_cnn(channels, 10, image, self.width)
        else:
            self.net = _nets.resnet_cifar(channels, 10, depth=20)
        self.dim = self.net.dim
        self.theta0 = self.net.initial(gen).to(self.device)
        self.scale = self.layer_scale()
        self._chunk = self.chunk or self._auto_chunk()

    def layer_scale(self) -> torch.Tensor:
        """The scale ``[dim]``: on each layer's coordinates, the RMS of that layer's largest
        parameter tensor (its weights) at θ₀, i.e. the init's standard deviation (He's
        √(2/fan_in) here). A weight's useful range is a few of those either side of zero, as
        COCO's box is ±5 at scale 1, and it differs between layers by the fan-in (0.05 to
        0.5 in the small CNN), so one absolute σ cannot fit every layer. The layer's biases
        and norm gains share it (their init, 0 and 1, says nothing of their range)."""
        scale = torch.empty_like(self.theta0)
        for index, (_, lo, hi) in enumerate(self.net.slices):
            weights = max(self.net.unflatten(self.theta0, index).values(), key=torch.numel)
            scale[lo:hi] = weights.pow(2).mean().sqrt().clamp_min(1e-6)
        return scale

    def _auto_chunk(self) -> int:
        """Vectors per forward pass so that the largest activation stays under CHUNK_BYTES."""
        out, inputs = self.net.trace(self.theta0, self.x_train[:1])
        largest = max(t.numel() for x in inputs + [out]
                      for t in (x if isinstance(x, tuple) else (x,)))
        return max(CHUNK_BYTES // (4 * largest * self.batch), 1)

    def initial(self) -> torch.Tensor:
        return self.theta0.clone()

    # ------------------------------------------------------------------------ objective
    def minibatch(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels ``key`` picks (without replacement; augmented if asked)."""
        gen = self.generator(key)
        index = torch.randperm(len(self.y_train), generator=gen, device=self.device)[:self.batch]
        images = self.x_train[index]
        if self.augment:
            images = augment(images, gen)
        return images, self.y_train[index]

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        images, labels = self.minibatch(key)
        return _cross_entropy(self.net.forward(thetas, images, chunk=self._chunk), labels)

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.minibatch(key)
        with torch.enable_grad():
            thetas = thetas.detach().requires_grad_(True)
            values = _cross_entropy(self.net.forward(thetas, images, chunk=self._chunk), labels)
            (grads,) = torch.autograd.grad(values.sum(), thetas)
        return values.detach(), grads

    def layers(self, thetas: torch.Tensor | None = None, key: int | None = None, *,
               start: int = 0, inputs: Trace | None = None) -> Any:
        """The ``layers`` capability (see the module docstring for its three forms)."""
        if thetas is None:
            return self.net.slices
        with torch.no_grad():
            if inputs is None:
                return self._trace(thetas, key)
            return self._restart(thetas, key, start, inputs)

    def _trace(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, Trace]:
        if thetas.shape[0] != 1:
            raise ContractError(f"layers(theta, key) traces one vector, got {thetas.shape[0]}")
        images, labels = self.minibatch(key)
        out, inputs = self.net.trace(thetas[0], images)
        return _cross_entropy(out[None], labels), Trace(thetas[0].clone(), key, inputs, labels)

    def _restart(self, thetas: torch.Tensor, key: int, start: int, trace: Trace) -> torch.Tensor:
        if key != trace.key:
            raise ContractError("layers restart: key differs from the traced key")
        if not 0 <= start < len(self.net):
            raise ContractError(f"layers restart: start={start} is not a layer index "
                                f"(0..{len(self.net) - 1})")
        head = self.net.slices[start].start
        if not bool((thetas[:, :head] == trace.theta[:head]).all()):
            raise ContractError(f"layers restart at layer {start}: rows differ from the traced "
                                "θ before that layer")
        out = self.net.forward(thetas, trace.inputs[start], start=start, share=True,
                               chunk=self._chunk)
        return _cross_entropy(out, trace.labels)

    # ------------------------------------------------------------------------ anchors
    def sanity(self) -> dict[str, dict[str, float]]:
        """The start and a constant class: logits fixed at the training set's log class
        frequencies (the best constant for cross-entropy; its argmax is the majority class).
        Accuracy ranks it at the majority class's share of the test set, about 0.1 here."""
        counts = torch.bincount(self.y_train, minlength=10).double()
        prior = counts / counts.sum()
        majority = int(counts.argmax())
        constant = {"accuracy": float((self.y_test == majority).double().mean()),
                    "test_loss": float(-prior.clamp_min(1e-12).log()[self.y_test].mean())}
        return {**super().sanity(), "constant class": constant}

    def reference(self) -> dict[str, float]:
        """First-order training: Adam on :meth:`grad` for :attr:`REFERENCE_STEPS` minibatch
        steps from θ₀ (what the ``adam`` optimizer does with that many gradients)."""
        theta = _anchors.adam_on_grad(self, self.REFERENCE_STEPS, self.REFERENCE_LR,
                                      self.REFERENCE_DECAY)
        return self.evaluate(theta)

    # ------------------------------------------------------------------------ evaluation
    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for lo in range(0, len(self.y_test), self.eval_batch):
                images = self.x_test[lo:lo + self.eval_batch]
                labels = self.y_test[lo:lo + self.eval_batch]
                logits = self.net.forward(theta.reshape(1, -1), images)[0]
                total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(1) == labels).sum())
        n = len(self.y_test)
        return {"accuracy": correct / n, "test_loss": total_loss / n}


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each row: logits ``[B, N, C]``, labels ``[N]`` -> ``[B]``."""
    rows = logits.shape[0]
    return F.cross_entropy(logits.transpose(1, 2), labels.expand(rows, -1),
                           reduction="none").mean(1)


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation: random crops of the zero-padded image and random
    horizontal flips, drawn from ``gen`` (vectorised gathers, one per batch)."""
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=device)
    flip = torch.rand(n, 1, generator=gen, device=device) < 0.5
    cols = torch.arange(w, device=device)[None]
    cols = torch.where(flip, w - 1 - cols, cols) + dx
    rows = torch.arange(h, device=device)[None] + dy
    batch = torch.arange(n, device=device)[:, None, None, None]
    chans = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


# ------------------------------------------------------------------------------ data
def load_digits(test_fraction: float, gen: torch.Generator):
    """scikit-learn's 8x8 digits in [0, 1], split at random by ``gen``."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=gen)
    n_test = max(int(round(test_fraction * len(labels))), 1)
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def load_cifar10(data: str):
    """CIFAR-10 from a ``cifar-10-batches-py`` folder, as float images in [0, 1]."""
    folder = find_cifar10(data)
    arrays = _read_cifar10(str(folder))
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in arrays)
    return x_train.float() / 255.0, y_train.long(), x_test.float() / 255.0, y_test.long()


def find_cifar10(data: str) -> Path:
    """The ``cifar-10-batches-py`` folder given by ``data`` (itself or its parent; the
    zgbench cache if empty), or a UsageError saying where to get it."""
    root = Path(data).expanduser() if data else cache_dir()
    for folder in (root, root / CIFAR_FOLDER):
        if all((folder / name).is_file() for name in CIFAR_FILES):
            return folder
    raise UsageError(
        f"classify[dataset=cifar10]: no {CIFAR_FOLDER} folder at {root} (need "
        f"{', '.join(CIFAR_FILES)}). Download {CIFAR_URL}, extract it (tar xzf) and pass "
        f"data=/path/to/{CIFAR_FOLDER}, or extract it into {cache_dir()}.")


@functools.lru_cache(maxsize=2)
def _read_cifar10(folder: str) -> tuple[np.ndarray, ...]:
    """The five training batches and the test batch (pickled dicts with ``data``
    ``[n, 3072]`` uint8, channel-major rows, and ``labels``), cached per process. Read by
    :mod:`zgbench.tasks._cifar`, which builds numpy arrays only: a planted file runs nothing."""
    parts = [_cifar.read_batch(Path(folder) / name) for name in CIFAR_FILES]
    x_train = np.concatenate([x for x, _ in parts[:-1]])
    y_train = np.concatenate([y for _, y in parts[:-1]])
    return x_train, y_train, parts[-1][0], parts[-1][1]


@hookimpl
def zgbench_tasks():
    return [Classify]
