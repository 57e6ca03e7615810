"""Functional networks over flat parameter vectors, run for a batch of vectors at once.

Zeroth-order training (DeepZero: Chen et al., "DeepZero: Scaling up Zeroth-Order
Optimization for Deep Model Training", ICLR 2024) evaluates one network under many parameter
vectors θ_1..θ_B. Here a network is a sequence of :class:`Layer` s; layer l reads its
parameters from the slice ``[start_l, stop_l)`` of the flat θ (:class:`LayerSlice`) and is a
pure function ``fn(params, x) -> y`` of ONE parameter set and one input that carries its own
sample dimension. ``torch.func.vmap`` lifts each layer to B parameter vectors: PyTorch's
batching rules turn a convolution with B weight sets into one grouped convolution and a
shared weight applied to B inputs into one convolution over B·N samples, so no Python loop
over vectors remains (only a loop over chunks of vectors, which bounds memory).

A layer's input and output may be a tensor or a tuple of tensors (a residual block split in
two passes ``(pre-activation, shortcut input)`` between its halves).

The same structure serves DeepZero's feature reuse: :meth:`Network.trace` records every
layer's input at one θ; :meth:`Network.forward` with ``start=l`` restarts from a recorded
input of layer l, and with ``share=True`` a layer whose parameters agree in every row runs
once with unbatched parameters. Nothing here is specific to classification: a task adds its
own loss on the outputs.

Builders for the networks the tasks use: :func:`small_cnn` and :func:`resnet_cifar`
(He et al. 2016, CIFAR ResNet with option-A shortcuts; depth 20 has 0.27M parameters).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.func import vmap

Params = dict[str, torch.Tensor]


class LayerSlice(NamedTuple):
    """Where one layer's parameters live in the flat θ: ``theta[start:stop]``."""

    name: str
    start: int
    stop: int


@dataclass(frozen=True)
class Layer:
    """One stage of a network: named parameter shapes, a pure function and an initialiser.

    ``fn(params, x)`` gets one parameter set (tensors of the declared shapes) and one input
    with its leading sample dimension; it must be vmap-compatible (no in-place updates of its
    arguments, no data-dependent Python control flow). ``init(params, generator)`` fills
    ``params`` (views into θ) in place.
    """

    name: str
    shapes: dict[str, tuple[int, ...]]
    fn: Callable[[Params, Any], Any]
    init: Callable[[Params, torch.Generator], None]

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())


class Network:
    """A sequence of layers over one flat parameter vector of length :attr:`dim`."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = tuple(layers)
        slices, offset = [], 0
        for layer in self.layers:
            slices.append(LayerSlice(layer.name, offset, offset + layer.size))
            offset += layer.size
        self.slices = tuple(slices)
        self.dim = offset

    def __len__(self) -> int:
        return len(self.layers)

    def initial(self, generator: torch.Generator) -> torch.Tensor:
        """A freshly initialised θ (float32, on the generator's device)."""
        theta = torch.zeros(self.dim, device=generator.device)
        with torch.no_grad():
            for index, layer in enumerate(self.layers):
                layer.init(self.unflatten(theta, index), generator)
        return theta

    def unflatten(self, theta: torch.Tensor, index: int) -> Params:
        """Layer ``index``'s parameters from ``theta`` ``[..., dim]``, shaped ``[..., *shape]``."""
        lead = theta.shape[:-1]
        offset = self.slices[index].start
        params = {}
        for name, shape in self.layers[index].shapes.items():
            size = math.prod(shape)
            params[name] = theta[..., offset:offset + size].reshape(*lead, *shape)
            offset += size
        return params

    def trace(self, theta: torch.Tensor, x: Any) -> tuple[Any, list[Any]]:
        """Run one θ ``[dim]`` on input ``x``; return the output and every layer's input
        (``inputs[l]`` is what layer l received; ``inputs[0]`` is ``x``)."""
        inputs = []
        for index, layer in enumerate(self.layers):
            inputs.append(x)
            x = layer.fn(self.unflatten(theta, index), x)
        return x, inputs

    def forward(self, thetas: torch.Tensor, x: Any, *, start: int = 0, batched: bool = False,
                share: bool = False, chunk: int | None = None) -> torch.Tensor:
        """Outputs ``[B, ...]`` of B parameter vectors ``thetas`` ``[B, dim]``, from layer
        ``start`` on, with ``x`` the input of that layer: shared by all rows, or one per row
        (leading dimension B) if ``batched``. Rows run in chunks of at most ``chunk``.

        With ``share``, a layer whose parameters are equal in every row of a chunk runs with
        unbatched parameters (one convolution over all rows' samples instead of a grouped one),
        and layers before the first differing one run once: the feature-reuse path. Without
        it every row runs every layer, as a black box would.
        """
        rows = thetas.shape[0]
        size = rows if not chunk else max(int(chunk), 1)
        outputs = []
        for lo in range(0, rows, size):
            part = thetas[lo:lo + size]
            xs = _rows(x, lo, lo + size) if batched else x
            outputs.append(self._run(part, xs, start, batched, share))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _run(self, thetas: torch.Tensor, x: Any, start: int, x_batched: bool,
             share: bool) -> torch.Tensor:
        rows = thetas.shape[0]
        for index in range(start, len(self.layers)):
            lo, hi = self.slices[index].start, self.slices[index].stop
            if rows == 1 or (share and _uniform(thetas[:, lo:hi])):
                params, p_batched = self.unflatten(thetas[0], index), False
            else:
                params, p_batched = self.unflatten(thetas, index), True
            x = _apply(self.layers[index].fn, params, x, p_batched, x_batched)
            x_batched = x_batched or p_batched
        if not x_batched:
            x = x.unsqueeze(0).expand(rows, *x.shape)
        return x


def _apply(fn: Callable, params: Params, x: Any, p_batched: bool, x_batched: bool) -> Any:
    """``fn`` on one parameter set and input, or vmapped over whichever is batched."""
    if not (p_batched or x_batched):
        return fn(params, x)
    return vmap(fn, in_dims=(0 if p_batched else None, 0 if x_batched else None))(params, x)


def _uniform(block: torch.Tensor) -> bool:
    return bool((block == block[:1]).all())


def _rows(x: Any, lo: int, hi: int) -> Any:
    if isinstance(x, tuple):
        return tuple(t[lo:hi] for t in x)
    return x[lo:hi]


# ------------------------------------------------------------------------------ layers
def init_params(params: Params, generator: torch.Generator, scheme: str = "torch") -> None:
    """Fill a layer's parameters in place. Weights: ``"torch"`` is PyTorch's default for
    nn.Conv2d / nn.Linear (Kaiming-uniform, a = √5), ``"he"`` is He-normal (fan-in, ReLU
    gain) as the CIFAR ResNet reference code uses. Biases: PyTorch's uniform(±1/√fan_in).
    Norm scales 1, shifts 0."""
    fan_in = None
    for name, tensor in params.items():
        if name.startswith("weight"):
            if scheme == "he":
                torch.nn.init.kaiming_normal_(tensor, mode="fan_in", nonlinearity="relu",
                                              generator=generator)
            else:
                torch.nn.init.kaiming_uniform_(tensor, a=math.sqrt(5), generator=generator)
            fan_in = math.prod(tensor.shape[1:])
        elif name.startswith("bias"):
            bound = 1.0 / math.sqrt(fan_in or tensor.numel())
            tensor.uniform_(-bound, bound, generator=generator)
        elif name.startswith("gamma"):
            tensor.fill_(1.0)
        elif name.startswith("beta"):
            tensor.zero_()


HE = functools.partial(init_params, scheme="he")


def batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Batch normalisation with the statistics of the batch at hand (no running averages:
    they would be state outside θ, and they would differ between the B vectors)."""
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)


def conv(name: str, cin: int, cout: int, *, kernel: int = 3, stride: int = 1,
         bias: bool = True, norm: bool = False, relu: bool = True, pool: int = 1,
         init: Callable[[Params, torch.Generator], None] = init_params) -> Layer:
    """Convolution (same padding), optional batch norm, max pooling and ReLU."""
    shapes = {"weight": (cout, cin, kernel, kernel)}
    if bias:
        shapes["bias"] = (cout,)
    if norm:
        shapes.update(gamma=(cout,), beta=(cout,))

    def fn(p: Params, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, p["weight"], p.get("bias"), stride=stride, padding=kernel // 2)
        if norm:
            y = batch_norm(y, p["gamma"], p["beta"])
        if pool > 1:  # before the ReLU (they commute): the ReLU then touches 1/pool² as much
            y = F.max_pool2d(y, pool)
        return F.relu(y) if relu else y

    return Layer(name, shapes, fn, init)


def linear(name: str, fin: int, fout: int, *, average: bool = False,
           init: Callable[[Params, torch.Generator], None] = init_params) -> Layer:
    """Fully connected layer on the flattened input (or its spatial mean, if ``average``)."""

    def fn(p: Params, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(-2, -1)) if average else x.flatten(1)
        return F.linear(x, p["weight"], p["bias"])

    return Layer(name, {"weight": (fout, fin), "bias": (fout,)}, fn, init)


def basic_block(name: str, cin: int, cout: int, stride: int) -> list[Layer]:
    """A CIFAR ResNet basic block as two layers, so a perturbation of the second
    convolution restarts there: ``x -> (relu(bn(conv(x))), x) -> relu(bn(conv(h)) + sc(x))``.
    The shortcut is option A of He et al.: identity, or subsampling with zero channels."""
    pad = (cout - cin) // 2

    def first(p: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.conv2d(x, p["weight"], stride=stride, padding=1)
        return F.relu(batch_norm(h, p["gamma"], p["beta"])), x

    def second(p: Params, hx: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h, x = hx
        y = batch_norm(F.conv2d(h, p["weight"], padding=1), p["gamma"], p["beta"])
        if stride != 1 or cin != cout:
            x = F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, pad, cout - cin - pad))
        return F.relu(y + x)

    norm = {"gamma": (cout,), "beta": (cout,)}
    return [Layer(f"{name}.a", {"weight": (cout, cin, 3, 3), **norm}, first, HE),
            Layer(f"{name}.b", {"weight": (cout, cout, 3, 3), **norm}, second, HE)]


# ------------------------------------------------------------------------------ models
def small_cnn(channels: int, classes: int, image: int, width: int = 8) -> Network:
    """Two conv-maxpool-ReLU stages (``width``, ``2·width`` channels) and a linear head,
    initialised as PyTorch initialises these layers; 1,898 parameters on 8x8 grey images
    with width 8."""
    side = image // 4
    return Network([
        conv("conv1", channels, width, pool=2),
        conv("conv2", width, 2 * width, pool=2),
        linear("fc", 2 * width * side * side, classes),
    ])


def resnet_cifar(channels: int, classes: int, depth: int = 20, width: int = 16) -> Network:
    """CIFAR ResNet of ``depth`` = 6n + 2 (He et al. 2016, option-A shortcuts): a 3x3 stem,
    three stages of n basic blocks (width, 2·width, 4·width channels; stride 2 between
    stages), global average pooling and a linear head. Depth 20: 269,722 parameters."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2, got {depth}")
    n = (depth - 2) // 6
    layers = [conv("stem", channels, width, bias=False, norm=True, init=HE)]
    cin = width
    for stage in range(3):
        cout = width * 2**stage
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            layers += basic_block(f"stage{stage + 1}.{block}", cin, cout, stride)
            cin = cout
    layers.append(linear("fc", cin, classes, average=True, init=HE))
    return Network(layers)
