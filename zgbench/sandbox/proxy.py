"""The optimizer's side of an isolated run: a :class:`~zgbench.problem.Problem` with no task
behind it, whose metered calls go down a socket to the trusted worker.

It is a ``Problem`` subclass (``isinstance`` checks and the helper methods that need no task,
``step``, ``step_parts``, ``remaining``, ``affordable_steps``, are the same code) built without
a task: what it knows is the run's public description (dimension, device, dtype, scale,
budget) and the counters the trusted side returns with every answer. Counting, budget cuts,
checkpoints and the best loss happen on the trusted side only; a fork of the optimizer's
process shares the socket, so its calls are charged to the same run.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Any

import numpy as np
import torch

from zgbench.budget import Budget, BudgetExhausted
from zgbench.errors import ContractError, UsageError
from zgbench.meter import TaskError, gradient_limit
from zgbench.problem import Problem, _numpy_dtype
from zgbench.sandbox import wire
from zgbench.task import Cost

#: Exceptions the trusted side may raise into the optimizer, by name (others arrive as
#: :class:`RemoteError`): the same types an in-process optimizer could catch.
ERRORS: dict[str, type[Exception]] = {
    "BudgetExhausted": BudgetExhausted, "ContractError": ContractError, "TaskError": TaskError,
    "UsageError": UsageError, "ValueError": ValueError, "TypeError": TypeError,
}


class RemoteError(RuntimeError):
    """An error of the trusted side that is none of :data:`ERRORS`."""


class ProxyProblem(Problem):
    """A :class:`Problem` whose task is in another process (see the module docstring)."""

    def __init__(self, sock: socket.socket, info: dict[str, Any]) -> None:  # noqa: D107
        # deliberately no super().__init__: there is no task and no ledger here
        self._sock, self._lock = sock, threading.Lock()
        self._budget = Budget.from_dict(info["budget"])
        self._dim = int(info["dim"])
        self._device = torch.device(info["device"])
        self._dtype = wire.DTYPES[info["dtype"]][1]
        self._np_dtype = _numpy_dtype(self._dtype)
        self._provides = frozenset(info["provides"])
        self._name = info["name"]
        self._grad_limit = gradient_limit(self._budget)
        self._costs = {str(name): Cost(int(e), int(g), per)
                       for name, (e, g, per) in info["costs"].items()}
        self._scale = info["scale"].to(self._device)
        self._uniform_scale = info["uniform_scale"]
        self._keys = random.Random()
        state = info["keys"]
        self._keys.setstate((state[0], tuple(state[1]), state[2]))
        self._evals = self._grads = self._steps = 0
        self._seconds, self._clock = 0.0, time.perf_counter()
        self._marks, self._on_progress = [], None

    # ------------------------------------------------------------------- the wire
    def _ask(self, op: str, *args: Any) -> Any:
        with self._lock:  # one call on the socket at a time: threads of one optimizer share it
            wire.send(self._sock, [op, list(args)])
            doc, blobs = wire.receive(self._sock)
        answer = wire.decode(doc, blobs, device=self._device)
        value, error, counters = answer
        self._evals, self._grads, self._steps, self._seconds = counters
        self._clock = time.perf_counter()
        if error is not None:
            kind, message = error
            raise ERRORS.get(kind, RemoteError)(message)
        return value

    # ------------------------------------------------------------- read-only views
    @property
    def seconds(self) -> float:
        """Charged time as the trusted side last said, plus the time since."""
        return self._seconds + (time.perf_counter() - self._clock)

    @property
    def task_seconds(self) -> float:
        return self._ask("task_seconds")

    @property
    def trajectory(self) -> tuple[dict[str, Any], ...]:
        return tuple(self._ask("trajectory"))

    @property
    def best_loss(self) -> float:
        return self._ask("best_loss")

    def recommendation(self) -> torch.Tensor:
        return self._ask("recommendation")

    # -------------------------------------------------------------- metered calls
    def initial(self) -> torch.Tensor:
        return self._ask("initial")

    def loss(self, thetas: torch.Tensor | np.ndarray, key: int | None = None, *,
             whole: bool = False) -> torch.Tensor:
        key = self.new_key() if key is None else key
        return self._ask("loss", thetas, key, bool(whole))

    def grad(self, thetas: torch.Tensor, key: int | None = None, *,
             whole: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        self._require("grad")
        key = self.new_key() if key is None else key
        values, grads = self._ask("grad", thetas, key, bool(whole))
        return values, grads

    def call(self, capability: str, *args: Any, evals: int = 0, grads: int = 0,
             **kwargs: Any) -> Any:
        return self._ask("call", capability, list(args), kwargs, evals, grads)

    def report(self, theta: torch.Tensor | np.ndarray) -> None:
        self._ask("report", theta)

    # --------------------------------------------------------------- harness side
    def start(self) -> None:
        raise ContractError("the run's clock is started by the harness")

    def finish(self) -> None:
        raise ContractError("the run is finished by the harness")

