"""Tasks that break their contract, as a plugin author might by accident (issue 23.2).

Each behaves like ``sphere`` for its first calls, then its ``loss`` goes wrong: it raises,
returns the wrong shape, a numpy array, an integer tensor or a tensor on another device.
Honest optimizers run on them through the real harness: the run must fail with cause
"task error", never be ``violated``. Used by tests/test_integrity.py as a test plugin."""

from __future__ import annotations

from pathlib import Path

import torch

from zgbench import Param, hookimpl
from zgbench.tasks.synthetic import Sphere

#: Loss calls that work before the fault (so the run has started and the optimizer is mid-way).
HEALTHY_CALLS = 4


class _Faulty(Sphere):
    """``sphere`` whose loss turns bad after :data:`HEALTHY_CALLS` calls: on the optimizer's
    batches only (the metered path), or on every call, the harness's checkpoints included."""

    batches_only = True

    def setup(self) -> None:
        super().setup()
        self.calls = 0

    def loss(self, thetas, key):
        values = super().loss(thetas, key)
        self.calls += 1
        if self.calls <= HEALTHY_CALLS or (len(thetas) == 1 and self.batches_only):
            return values
        return self.fault(values)

    def fault(self, values):
        raise NotImplementedError


class Raises(_Faulty):
    name = "fault-raises"

    def fault(self, values):
        raise RuntimeError("the simulator crashed")


class WrongShape(_Faulty):
    name = "fault-shape"

    def fault(self, values):
        return values[:, None].repeat(1, 2)


class Numpy(_Faulty):
    name = "fault-numpy"

    def fault(self, values):
        return values.numpy()


class Integer(_Faulty):
    name = "fault-dtype"

    def fault(self, values):
        return values.round().to(torch.int64)


class OtherDevice(_Faulty):
    name = "fault-device"

    def fault(self, values):
        return values.to("meta")


class ShortBatch(_Faulty):
    name = "fault-short"
    batches_only = False

    def fault(self, values):
        return values[:-1]


class Labelled(Sphere):
    """A healthy ``sphere`` with free text in its spec, so a label can hold any character
    (``labelled[note=$x$]``), as a file path of ``classify[data=...]`` does."""

    name = "labelled"
    note = Param("", "free text, part of the label")


class Drawing(Sphere):
    """A healthy ``sphere`` that draws a large picture of its result (``result.png``, written
    in chunks as an image library does): on a full disk it is cut off half way."""

    name = "drawing"
    size = Param(2**20, "bytes of the picture", ge=1)

    def artifacts(self, theta, directory):
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "result.png"
        with open(path, "wb") as f:
            for _ in range(0, self.size, 2**16):
                f.write(b"\x89" * 2**16)
                f.flush()
        return [str(path)]


class GradNumpy(Sphere):
    """``sphere`` whose ``grad`` returns numpy gradients (its loss is healthy)."""

    name = "fault-grad"

    def grad(self, thetas, key):
        values, grads = super().grad(thetas, key)
        return values, grads.numpy()


FAULTS = [Raises, WrongShape, Numpy, Integer, OtherDevice, ShortBatch, GradNumpy]


@hookimpl
def zgbench_tasks():
    return FAULTS + [Labelled, Drawing]
