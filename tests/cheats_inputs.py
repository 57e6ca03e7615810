"""Cheats through the problem's inputs (issue 24.1, 24.2 and the default-dtype item): an
optimizer that names its own charge, one that hands the task a tensor subclass (or enters a
torch function mode) to watch what the task computes, and one that changes torch's default
dtype for the runs after it. Used by tests/test_integrity.py through a test plugin; the
in-process executor runs them."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from zgbench import Optimizer, hookimpl
from zgbench.budget import BudgetExhausted

#: What the spies saw of the task: tensors of the problem's dimension that they did not
#: hand over themselves (the hidden optimum of a synthetic function, if anything).
CAPTURED: list[torch.Tensor] = []


class CallGrad(Optimizer):
    """Gradient descent through ``problem.call("grad", ...)``, naming no charge, while
    declaring no need of gradients (a "zeroth-order" method): 200 steps."""

    name = "cheat-call-grad"

    def run(self, problem):
        theta = problem.initial()
        for _ in range(200):
            _, grad = problem.call("grad", theta[None], 0)
            theta = theta - 0.1 * grad[0]
            problem.report(theta)


def _captures(args, own: set[int], dim: int) -> None:
    """Keep every tensor of ``dim`` values among ``args`` that is not one of ``own``."""
    for value in args:
        if isinstance(value, (tuple, list)):
            _captures(value, own, dim)
        elif isinstance(value, torch.Tensor) and id(value) not in own and \
                value.numel() == dim and not isinstance(value, Spy):
            with torch._C.DisableTorchFunction():
                CAPTURED.append(value.detach().clone().reshape(-1))


class Spy(torch.Tensor):
    """A tensor that records the operands of every torch function applied to it."""

    dim = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        _captures(list(args) + list((kwargs or {}).values()), set(), cls.dim)
        return super().__torch_function__(func, types, args, kwargs or {})


class Watch(TorchFunctionMode):
    """A torch function mode: sees every torch call while it is on, the task's included."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def __torch_function__(self, func, types, args=(), kwargs=None):
        _captures(list(args) + list((kwargs or {}).values()), set(), self.dim)
        return func(*args, **(kwargs or {}))


class SpyTensor(Optimizer):
    """Hands the task Spy tensors (loss, grad, report, capability arguments) and calls it
    under a torch function mode; reports the optimum if either captured it."""

    name = "cheat-spy"

    def run(self, problem):
        Spy.dim = problem.dim
        start = problem.initial()
        spy = start[None].as_subclass(Spy)
        problem.loss(spy)
        problem.report(start.as_subclass(Spy))  # the checkpoint evaluates the report
        problem.loss(start[None].as_subclass(Spy))  # ... at the next mark
        if "grad" in problem.provides:
            problem.grad(spy)
            problem.call("grad", spy, 0)
        with Watch(problem.dim):
            for _ in range(3):
                problem.loss(start[None])
        candidates = [c for c in CAPTURED if not torch.equal(c, start)]
        problem.report(candidates[-1] if candidates else start)


class DispatchSpy(torch.Tensor):
    """A wrapper subclass with ``__torch_dispatch__``: no switch bypasses it safely."""

    @staticmethod
    def __new__(cls, elem):
        return torch.Tensor._make_wrapper_subclass(cls, elem.shape, dtype=elem.dtype)

    def __init__(self, elem):
        self.elem = elem

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        unwrap = lambda x: x.elem if isinstance(x, DispatchSpy) else x  # noqa: E731
        return func(*[unwrap(a) for a in args], **{k: unwrap(v) for k, v in
                                                   (kwargs or {}).items()})


class DefaultDtype(Optimizer):
    """Leaves torch's default dtype at float64 for whatever runs next (and spends its
    budget on the start)."""

    name = "cheat-dtype"

    def run(self, problem):
        torch.set_default_dtype(torch.float64)
        batch = problem.initial().repeat(10, 1)
        try:
            while True:
                problem.loss(batch)
        except BudgetExhausted:
            pass


CHEATS = [CallGrad, SpyTensor, DefaultDtype]


@hookimpl
def zgbench_optimizers():
    return CHEATS


__all__ = ["CAPTURED", "CHEATS", "DispatchSpy", "Spy", "Watch"]
