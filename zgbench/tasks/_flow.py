"""Physics of the ``pde-sol`` task: a buoyant smoke plume in PhiFlow 3, and its corrector.

After Um et al. 2020, "Solver-in-the-Loop: Learning from Differentiable Physics to Interact
with Iterative PDE-Solvers" (NeurIPS), buoyancy-driven flow scenario, as used by DeepZero (Chen
et al., ICLR 2024) for zeroth-order solver-in-the-loop training.

The flow: a closed unit box (walls with zero normal velocity), a circular smoke source near the
floor that adds density at a constant rate, a buoyancy force pushing the velocity up in
proportion to the local density, semi-Lagrangian advection of the velocity, MacCormack
advection of the density, and a pressure projection (conjugate gradient) that makes the
velocity divergence-free. The plume rises, hits the ceiling, rolls up and spreads along it:
nonlinear, resolution-sensitive dynamics whose coarse-grid error (numerical diffusion above
all) a learned correction can reduce. One simulation is fixed by two numbers, the source's x
position and the buoyancy factor; simulations are batched along a PhiFlow batch dimension.

The corrector is a small CNN on the coarse grid: input = density and velocity sampled at cell
centres (3 channels, each divided by a fixed scale), output = a velocity correction at the
cell centres, which PhiFlow resamples to the staggered faces (the density follows the
corrected velocity). Several parameter vectors θ run at once: candidates are a second batch
dimension, and every layer is one grouped convolution with one group per candidate.

Everything here runs on PhiFlow's torch backend (steps jit-compiled with
``phiml.math.jit_compile``; autograd flows through them for first-order references) or on its
NumPy backend (a true black box). The module imports PhiFlow at the top: it is private and
only :mod:`zgbench.tasks.pde_sol` imports it, lazily, so zgbench works without PhiFlow.
"""

from __future__ import annotations

import functools
import math as pymath
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from phi import field, math
from phi.field import CenteredGrid, Field, StaggeredGrid
from phi.geom import Box, Sphere
from phi.math import batch, channel, extrapolation, spatial
from phi.physics import advect, fluid
from phi.torch import TORCH
from phiml.backend import NUMPY, default_backend

#: State arrays, in the order the corrector and the stored trajectories use.
FIELDS = ("density", "vx", "vy")
#: Batch dimension names: candidate parameter vectors, and simulations / start states.
CAND, START = "cand", "start"

State = dict[str, torch.Tensor]
#: The same as PhiML tensors (density, vx, vy): what the jit-compiled steps take and return.
Values = tuple[math.Tensor, math.Tensor, math.Tensor]


@functools.lru_cache(maxsize=None)
def _phiml_device(ref: str) -> Any:
    """PhiML's ComputeDevice for a torch device string, or None."""
    return next((d for d in TORCH.list_devices() if d.ref == ref), None)


@contextmanager
def compute(name: str, device: torch.device) -> Iterator[None]:
    """PhiFlow's ``"torch"`` or ``"numpy"`` backend as the default, allocating on ``device``."""
    chosen = TORCH if name == "torch" else NUMPY
    previous = TORCH.get_default_device()
    if name == "torch":
        found = _phiml_device(f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu")
        if found is not None:
            TORCH.set_default_device(found)
    try:
        with chosen, warnings.catch_warnings():
            # PhiML builds torch CSR matrices, which torch flags as beta on every build, and
            # warns that the closed box's pressure system is singular (known: rank 1 short,
            # consistent right-hand side, CG converges).
            warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
            warnings.filterwarnings("ignore", message="Rank deficiency", category=RuntimeWarning)
            # PhiML's solve report for a large batch (only a message layout, not the solve),
            # and its use of torch.jit.trace, which torch 2.x marks as deprecated
            warnings.filterwarnings("ignore", message=r"pack_dims\(\) default implementation")
            warnings.filterwarnings("ignore", message="`torch.jit", category=DeprecationWarning)
            yield
    finally:
        TORCH.set_default_device(previous)


# ------------------------------------------------------------------------------- physics
@dataclass(frozen=True)
class Plume:
    """One discretisation of the plume: grid, time step, source and pressure solve.

    ``resolution`` cells along each side of the unit box; ``dt`` the step; ``radius`` and
    ``height`` the source disc; ``rate`` the density it adds per unit time. The pressure solve
    is conjugate gradient to ``tolerance`` (relative and absolute), at most ``iterations``
    iterations (0: six per cell along a side; it needs about 3.5); converged batch entries stop
    while the others go on, so batched and one-by-one solves give the same numbers.
    """

    resolution: int
    dt: float
    radius: float = 0.08
    height: float = 0.12
    rate: float = 1.0
    tolerance: float = 1e-4
    iterations: int = 0

    def bounds(self) -> Box:
        return Box(x=1.0, y=1.0)

    def density(self, values: Any = 0.0) -> Field:
        return CenteredGrid(values, extrapolation.ZERO_GRADIENT, bounds=self.bounds(),
                            x=self.resolution, y=self.resolution)

    def velocity(self, values: Any = 0.0) -> Field:
        return StaggeredGrid(values, 0, bounds=self.bounds(), x=self.resolution,
                             y=self.resolution)

    def sources(self, params: torch.Tensor) -> tuple[math.Tensor, math.Tensor]:
        """Source density (values) and buoyancy of each simulation ``params[S, 2]`` (x position,
        buoyancy), batched along ``start``, on the current backend and device."""
        p = wrap(params, (START,), channel(param="x,b"))
        sphere = Sphere(x=p.param["x"], y=self.height, radius=self.radius)
        return field.resample(sphere, to=self._empty[0], soft=True).values, p.param["b"]

    def step(self, s: Field, v: Field, inflow: Field, buoyancy: math.Tensor
             ) -> tuple[Field, Field]:
        """One time step of the uncorrected solver (``inflow``: the source's density)."""
        s = advect.mac_cormack(s, v, self.dt) + self.rate * self.dt * inflow
        force = field.resample(s * math.vec(x=0.0, y=1.0) * buoyancy, to=v)
        v = advect.semi_lagrangian(v, v, self.dt) + self.dt * force
        solve = math.Solve("CG", self.tolerance, self.tolerance,
                           max_iterations=self.iterations or 6 * self.resolution,
                           rank_deficiency=1, suppress=(math.NotConverged,))
        v, _ = fluid.make_incompressible(v, (), solve)
        return s, v

    def downsample(self, s: Field, v: Field, factor: int) -> tuple[Field, Field]:
        """Fields of this (fine) grid averaged down by ``factor`` (a power of two): cell
        means of the density, face means of the velocity (PhiFlow's ``downsample2x``)."""
        while factor > 1:
            s, v = field.downsample2x(s), field.downsample2x(v)
            factor //= 2
        return s, v

    # --------------------------------------------------- arrays <-> values <-> fields
    # PhiFlow rebuilds a staggered grid's face geometry whenever a Field is made (~10-25 ms
    # on a CPU). The jit-compiled steps therefore take and return value tensors and make
    # their Fields inside, which costs only while tracing.
    @functools.cached_property
    def _empty(self) -> tuple[Field, Field]:
        return self.density(), self.velocity()

    def fields(self, density: math.Tensor, vx: math.Tensor, vy: math.Tensor
               ) -> tuple[Field, Field]:
        """Grids with the given values (``vx``, ``vy``: the inner faces' velocities)."""
        s, v = self._empty
        return s.with_values(density), v.with_values(
            math.stack({"x": vx, "y": vy}, math.dual(vector="x,y")))

    @staticmethod
    def values(s: Field, v: Field) -> Values:
        """Inverse of :meth:`fields`."""
        return s.values, v.values.vector.dual["x"], v.values.vector.dual["y"]

    def advance(self, density: math.Tensor, vx: math.Tensor, vy: math.Tensor,
                inflow: math.Tensor, buoyancy: math.Tensor) -> Values:
        """:meth:`step` on value tensors."""
        s, v = self.step(*self.fields(density, vx, vy), self._empty[0].with_values(inflow),
                         buoyancy)
        return self.values(s, v)

    @staticmethod
    def to_arrays(values: Values, dims: tuple[str, ...]) -> State:
        """Value tensors as torch arrays ``density [*dims, X, Y]``, ``vx [*dims, X-1, Y]``,
        ``vy [*dims, X, Y-1]`` (inner faces; the walls' faces are zero)."""
        order = [*dims, "x", "y"]
        return {k: torch.as_tensor(t.native(order)) for k, t in zip(FIELDS, values)}

    @staticmethod
    def from_arrays(state: State, dims: tuple[str, ...]) -> Values:
        """Inverse of :meth:`to_arrays`, on the current backend."""
        return tuple(wrap(state[k], dims, spatial("x,y")) for k in FIELDS)


def wrap(array: torch.Tensor, dims: tuple[str, ...], *more: math.Shape) -> math.Tensor:
    """A torch array as a PhiML tensor with batch ``dims`` first, converted to NumPy when
    NumPy is the current backend."""
    if default_backend() is NUMPY:
        array = array.detach().cpu().numpy()
    return math.tensor(array, *[batch(d) for d in dims], *more)


# ----------------------------------------------------------------------------- corrector
@dataclass(frozen=True)
class Corrector:
    """A CNN of ``layers`` 3x3 convolutions with ``hidden`` channels and tanh between them.

    No biases: with tanh (odd) the network maps a fluid at rest to a zero correction, so it
    cannot smear a constant offset over the mostly empty box (that raised the rollout MAE
    even while the MSE fell). Parameters are one flat vector per candidate, each layer's
    weight ``[out, in, 3, 3]`` in turn. The last layer starts at zero (:meth:`initial`): the
    untrained corrector leaves the solver unchanged.
    """

    hidden: int = 8
    layers: int = 2
    inputs: int = len(FIELDS)
    outputs: int = 2
    kernel: int = 3

    def shapes(self) -> list[tuple[int, int]]:
        """(in, out) channels of each layer."""
        sizes = [self.inputs] + [self.hidden] * (self.layers - 1) + [self.outputs]
        return list(zip(sizes[:-1], sizes[1:]))

    @property
    def dim(self) -> int:
        return sum(i * o * self.kernel ** 2 for i, o in self.shapes())

    def initial(self, gen: torch.Generator) -> torch.Tensor:
        """θ₀: PyTorch's default conv initialisation for hidden layers, zeros for the last."""
        parts = []
        for n, (i, o) in enumerate(self.shapes()):
            w = torch.zeros(o, i, self.kernel, self.kernel)
            if n < self.layers - 1:
                torch.nn.init.kaiming_uniform_(w, a=pymath.sqrt(5), generator=gen)
            parts.append(w.flatten())
        return torch.cat(parts)

    def apply(self, x: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
        """``x[G, N, inputs, X, Y]`` (G candidates, N states), ``thetas[G, dim]`` ->
        ``[G, N, outputs, X, Y]``.

        Each layer is one grouped convolution over all candidates (groups=G, the candidate
        axis folded into the channels), so G networks cost one call.
        """
        g, n, c, nx, ny = x.shape
        h = x.permute(1, 0, 2, 3, 4).reshape(n, g * c, nx, ny)
        offset, k = 0, self.kernel
        for index, (i, o) in enumerate(self.shapes()):
            w = thetas[:, offset:offset + o * i * k * k].reshape(g * o, i, k, k)
            offset += o * i * k * k
            h = F.conv2d(h, w, padding=k // 2, groups=g)
            if index < self.layers - 1:
                h = torch.tanh(h)
        return h.reshape(n, g, self.outputs, nx, ny).permute(1, 0, 2, 3, 4)


def correct(s: Field, v: Field, thetas: math.Tensor, scales: math.Tensor, net: Corrector
            ) -> tuple[Field, Field]:
    """Add the corrector's output to the velocity of a state with batch dims (cand, start).

    The network sees density and centred velocity, each divided by its scale (``scales`` is
    ``(scale=density,velocity)``), and returns a centred velocity correction in the same
    units, which PhiFlow resamples to the faces. The density is never corrected directly:
    it follows the corrected velocity, so no smoke appears where there was none (a density
    output did exactly that and doubled the error in the empty part of the box). ``thetas``
    is ``(cand, param)``.
    """
    centred = v.at_centers().values
    x = math.stack([s.values / scales.scale[0], centred.vector["x"] / scales.scale[1],
                    centred.vector["y"] / scales.scale[1]], channel(c="density,vx,vy"))
    native = x.native([CAND, START, "c", "x", "y"])
    weights = thetas.native([CAND, "param"])
    out = net.apply(torch.as_tensor(native), torch.as_tensor(weights))
    y = wrap(out, (CAND, START), channel(vector="x,y"), spatial("x,y"))
    dv = CenteredGrid(y * scales.scale[1], 0, bounds=v.bounds, resolution=v.resolution)
    return s, v + field.resample(dv, to=v)


# ------------------------------------------------------------------------------ solvers
class Solver:
    """The coarse solver, plain and corrected, on one backend.

    On the torch backend both steps are jit-compiled by PhiML (``torch.jit.trace``; one trace
    per batch shape). :func:`solver` keeps one instance per setting for the whole process, so
    the runs of a suite share the traces.
    """

    def __init__(self, plume: Plume, net: Corrector, name: str) -> None:
        self.plume, self.net, self.name = plume, net, name
        jit = math.jit_compile if name == "torch" else (lambda f: f)
        self.plain = jit(self._plain)
        self.corrected = jit(self._corrected)

    def _plain(self, density: math.Tensor, vx: math.Tensor, vy: math.Tensor,
               inflow: math.Tensor, buoyancy: math.Tensor) -> Values:
        return self.plume.advance(density, vx, vy, inflow, buoyancy)

    def _corrected(self, density: math.Tensor, vx: math.Tensor, vy: math.Tensor,
                   inflow: math.Tensor, buoyancy: math.Tensor, thetas: math.Tensor,
                   scales: math.Tensor) -> Values:
        s, v = self.plume.fields(*self.plume.advance(density, vx, vy, inflow, buoyancy))
        return self.plume.values(*correct(s, v, thetas, scales, self.net))

    def rollout(self, start: State, params: torch.Tensor, steps: int,
                thetas: torch.Tensor | None = None, scales: tuple[float, float] = (1.0, 1.0),
                jit: bool = True) -> list[State]:
        """Roll ``steps`` steps from states ``start`` (arrays ``[N, ...]``) of simulations
        ``params[N, 2]``, corrected by each of ``thetas[G, d]`` after every step.

        Returns one state per step: torch arrays ``[G, N, ...]`` (``[N, ...]`` without
        ``thetas``) on the device of ``start``, differentiable in ``thetas`` on the torch
        backend. ``jit=False`` runs the steps eagerly: better for a one-off call, which would
        spend more time tracing than stepping."""
        device = start["density"].device
        dims: tuple[str, ...] = (START,)
        if thetas is not None:
            dims = (CAND, START)
            start = {k: a.expand(thetas.shape[0], *a.shape).contiguous() for k, a in start.items()}
        out = []
        with compute(self.name, device):
            inflow, buoyancy = self.plume.sources(params)
            extra = () if thetas is None else (wrap(thetas, (CAND,), channel("param")),
                                                 self._scales(scales, device))
            step = (self.plain if jit else self._plain) if thetas is None else (
                self.corrected if jit else self._corrected)
            state = start
            for _ in range(steps):
                # re-wrapped from arrays every step: PhiML tensors coming out of a trace have
                # another internal layout, which would make a second trace
                values = step(*self.plume.from_arrays(state, dims), inflow, buoyancy, *extra)
                state = self.plume.to_arrays(values, dims)
                out.append({k: a.to(device) for k, a in state.items()})
        return out

    def correct(self, state: State, thetas: torch.Tensor, scales: tuple[float, float]
                ) -> State:
        """Only the corrector, no solver step: each of ``thetas[G, d]`` applied to states
        ``[N, ...]``; arrays ``[G, N, ...]``, differentiable in ``thetas`` (torch backend)."""
        device = state["density"].device
        dims = (CAND, START)
        state = {k: a.expand(thetas.shape[0], *a.shape).contiguous() for k, a in state.items()}
        with compute(self.name, device):
            s, v = self.plume.fields(*self.plume.from_arrays(state, dims))
            w = wrap(thetas, (CAND,), channel("param"))
            s, v = correct(s, v, w, self._scales(scales, device), self.net)
            return {k: a.to(device) for k, a in
                    self.plume.to_arrays(self.plume.values(s, v), dims).items()}

    @staticmethod
    def _scales(scales: tuple[float, float], device: torch.device) -> math.Tensor:
        return wrap(torch.tensor(scales, dtype=torch.float32, device=device), (),
                    channel(scale="density,velocity"))


@functools.lru_cache(maxsize=None)
def solver(plume: Plume, net: Corrector, name: str) -> Solver:
    """One :class:`Solver` per setting and backend for the whole process (shared traces)."""
    return Solver(plume, net, name)


def simulate(plume: Plume, params: torch.Tensor, warmup: int, frames: int, factor: int,
             device: torch.device) -> State:
    """Reference trajectories on the fine ``plume`` (same time step as the coarse solver):
    ``warmup`` + ``frames`` steps; every state from step ``warmup`` on is kept, averaged down by
    ``factor`` to the coarse grid: arrays ``[S, frames + 1, ...]`` on the CPU."""
    step = math.jit_compile(plume.advance)
    kept = []
    with compute("torch", device):
        inflow, buoyancy = plume.sources(params.to(device))
        shape = {"density": (plume.resolution,) * 2, "vx": (plume.resolution - 1, plume.resolution),
                 "vy": (plume.resolution, plume.resolution - 1)}
        state = plume.from_arrays({k: torch.zeros(len(params), *n, device=device)
                                   for k, n in shape.items()}, (START,))
        for frame in range(warmup + frames + 1):
            if frame >= warmup:
                s, v = plume.downsample(*plume.fields(*state), factor)
                kept.append(plume.to_arrays(plume.values(s, v), (START,)))
            if frame < warmup + frames:
                state = step(*state, inflow, buoyancy)
    return {k: torch.stack([f[k] for f in kept], 1).float().cpu().contiguous() for k in FIELDS}
