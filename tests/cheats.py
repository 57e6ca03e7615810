"""Optimizers that cheat, as a plugin author would try it (issue "Integrity"), and a few that
misbehave otherwise (exit, abort, hang). Used by tests/test_integrity.py through a test plugin;
an installed copy is not needed: the in-process executor runs them."""

from __future__ import annotations

import gc
import os
import sys
import time

import torch

from zgbench import Optimizer, hookimpl
from zgbench.budget import BudgetExhausted


def _task_behind(problem):
    """The task instance behind ``problem`` by the shortest private route there is: a bound
    method's ``__self__`` and a private attribute (what ``problem._task`` used to be)."""
    task = getattr(problem, "_task", None)
    if task is not None:
        return task
    for value in vars(problem).values():
        owner = getattr(value, "__self__", None)
        if owner is not None and hasattr(owner, "_task"):
            return owner._task
    raise LookupError("no task behind the problem")


class DirectTask(Optimizer):
    """Evaluates through the task instance itself, 100 times its budget."""

    name = "cheat-direct"

    def run(self, problem):
        task = _task_behind(problem)
        batch = problem.initial().repeat(1000, 1)
        for _ in range(100):
            task.loss(batch, 0)


class SetEvals(Optimizer):
    """Resets the evaluation counter: the public attribute, then the private one."""

    name = "cheat-set-evals"

    def run(self, problem):
        batch = problem.initial().repeat(10, 1)
        try:
            problem.evals = 0
        except AttributeError:
            pass
        for _ in range(2000):
            problem.loss(batch)
            problem._evals = 0  # the counter behind the read-only property


class FakeTrajectory(Optimizer):
    """Appends a checkpoint claiming a perfect result, through every handle it finds."""

    name = "cheat-fake-trajectory"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        fake = {"evals": 1, "grads": 0, "steps": 1, "seconds": 0.0, "task_seconds": 0.0,
                "optimizer_seconds": 0.0, "best_loss": 0.0, "current_loss": 0.0,
                "metrics": {"gap": 0.0, "loss": 0.0}}
        try:
            problem.trajectory.append(fake)
        except AttributeError:
            pass
        for entry in problem.trajectory:  # copies: editing them changes nothing
            entry["metrics"]["gap"] = 0.0
        return {"gap": 0.0}  # a return value is ignored too


class ClockReset(Optimizer):
    """Sets the problem's clock back after every call to escape a --seconds budget."""

    name = "cheat-clock"

    def run(self, problem):
        batch = problem.initial()[None]
        while True:
            problem.loss(batch)
            problem._t0 = time.perf_counter()


class GcFinder(Optimizer):
    """Finds the task through the garbage collector and reports its hidden optimum."""

    name = "cheat-gc"

    def run(self, problem):
        from zgbench.tasks.synthetic import Sphere  # here: --isolate hides task code

        for obj in gc.get_objects():
            if isinstance(obj, Sphere) and obj.dim == problem.dim:
                problem.report(obj.x_star.clone())
                return


class Spinner(Optimizer):
    """Catches BudgetExhausted and loops without calling the problem again."""

    name = "spinner"

    def run(self, problem):
        try:
            while True:
                problem.loss(problem.initial()[None])
        except BudgetExhausted:
            pass
        while True:
            try:
                time.sleep(0.01)
            except Exception:
                pass


class Deaf(Optimizer):
    """Ignores SIGALRM (the in-process watchdog) and sleeps: only a kill ends it."""

    name = "deaf"

    def run(self, problem):
        import signal

        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)


class Exiter(Optimizer):
    """Calls sys.exit in the middle of its run."""

    name = "exiter"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        sys.exit(0)


class Interrupter(Optimizer):
    """Raises KeyboardInterrupt itself (no Ctrl-C was pressed)."""

    name = "interrupter"

    def run(self, problem):
        raise KeyboardInterrupt


class Aborter(Optimizer):
    """Kills its process (os.abort: SIGABRT)."""

    name = "aborter"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        os.abort()


class Hog(Optimizer):
    """Allocates memory until something stops it."""

    name = "hog"

    def run(self, problem):
        hoard = []
        while True:
            hoard.append(torch.ones(64 * 2**20, dtype=torch.uint8))  # 64 MiB a step


CHEATS = [DirectTask, SetEvals, FakeTrajectory, ClockReset, GcFinder]
MISBEHAVING = [Spinner, Deaf, Exiter, Interrupter, Aborter, Hog]


@hookimpl
def zgbench_optimizers():
    return CHEATS + MISBEHAVING
