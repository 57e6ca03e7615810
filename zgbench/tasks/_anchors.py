"""Shared by the built-in tasks' ``reference()``: a first-order reference run.

``Task.reference`` (issue 22) is what a first-order method reaches on the task's
differentiable version where one exists: here, plain Adam on the task's ``grad`` for a fixed
number of steps from θ₀, with minibatch keys drawn from the task seed, so the reference is a
property of the instance (the same for every optimizer and run facing it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Offset that keeps the reference's loss keys apart from the instance's own seed stream.
KEY_STREAM = 0x5EF_E2E2CE


def adam_on_grad(task, steps: int, lr: float, decay: float = 1.0,
                 grad: Callable[[torch.Tensor, int], torch.Tensor] | None = None
                 ) -> torch.Tensor:
    """θ after ``steps`` Adam steps (learning rate ``lr``, multiplied by ``decay`` after each
    third of the steps) on ``task.grad`` from ``task.initial()``; keys from the task seed.
    ``grad(thetas[1, d], key) -> [1, d]`` replaces ``task.grad`` where the reference follows
    another gradient than the one the task offers (mesh-fit: its soft loss alone, without the
    hard loss ``task.grad`` also renders)."""
    if grad is None:
        grad = lambda thetas, key: task.grad(thetas, key)[1]  # noqa: E731
    gen = torch.Generator().manual_seed((task.seed ^ KEY_STREAM) % 2**63)
    keys = torch.randint(0, 2**62, (steps,), generator=gen).tolist()
    theta = torch.nn.Parameter(task.initial().detach().clone())
    opt = torch.optim.Adam([theta], lr=lr)
    period = max(1, steps // 3)
    schedule = torch.optim.lr_scheduler.StepLR(opt, period, gamma=decay)
    for key in keys:
        theta.grad = grad(theta.detach()[None], int(key))[0].to(theta.dtype)
        opt.step()
        schedule.step()
    return theta.detach()
