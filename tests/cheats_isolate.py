"""Optimizers that attack the harness from their own process, as an adversarial plugin author
would with the public API (issue 24): used by tests/test_sandbox.py under ``--isolate``.

Each tries its trick and, where the trick fails, falls back to an honest but crude search
(uniform samples in the sphere's box, or nothing at all): so a cheat that gains nothing ranks
below random-search, and one that ranks above it got something it should not have. The
import-time attack is tests/cheats_patch.py (importing it patches the importing process).
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from zgbench import Optimizer, hookimpl
from zgbench.budget import BudgetExhausted

#: A file the results folder of tests/test_sandbox.py holds, so the record-rewriting cheat
#: finds that folder (and no other test's) when it can see it at all.
MARKER = "sandbox-cheat-target"
#: Where the memory cheat keeps the best θ between runs, if it can write there.
MEMORY = Path(tempfile.gettempdir()) / f"zgbench-cheat-memory-{os.getuid()}.pkl"
_BEST: dict[int, np.ndarray] = {}  # the module global that carries θ between runs


# ----------------------------------------------------------------------------- helpers
def _uniform(problem, rows: int, gen: torch.Generator) -> torch.Tensor:
    """Samples uniform in [-1, 1]^dim (where the sphere hides its optimum)."""
    return torch.rand(rows, problem.dim, generator=gen, dtype=problem.dtype) * 2 - 1


def _crude_search(problem, gen: torch.Generator, evals: int) -> tuple[float, torch.Tensor]:
    """Best of ``evals`` uniform samples, in batches of 100, until the budget says stop."""
    best, best_theta = float("inf"), problem.initial()
    try:
        for _ in range(max(evals // 100, 1)):
            batch = _uniform(problem, 100, gen)
            values = problem.loss(batch)
            i = int(torch.argmin(values))
            if float(values[i]) < best:
                best, best_theta = float(values[i]), batch[i].clone()
    except BudgetExhausted:
        pass
    return best, best_theta


def _report_quietly(problem, theta) -> None:
    try:
        problem.report(theta)
    except BudgetExhausted:
        pass


# ------------------------------------------------------------------------------ cheats
class RebuildTask(Optimizer):
    """Rebuilds the task from ``Task.__subclasses__()`` and the public seed derivation,
    matches it on ``initial()``, and reports its optimum."""

    name = "cheat-rebuild"

    def run(self, problem):
        from zgbench.seeding import derive_seed
        from zgbench.task import Task

        try:
            import zgbench.tasks.synthetic  # noqa: F401 (registers the task classes)
        except ImportError:
            pass
        start = problem.initial()
        for cls in _all_subclasses(Task):
            for repetition in range(3):
                seed = derive_seed("task", f"{getattr(cls, 'name', '')}[dim={problem.dim}]",
                                   repetition)
                try:
                    twin = cls(seed=seed, dim=problem.dim)
                except Exception:
                    continue
                if torch.equal(twin.initial(), start) and hasattr(twin, "x_star"):
                    problem.report(twin.x_star.clone())
                    return
        problem.report(start)  # found nothing: the start is all it has


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


class Forker(Optimizer):
    """``os.fork()`` ten times; each child spends the whole budget on uniform samples and
    sends its best θ back through a pipe; the parent reports the best of them."""

    name = "cheat-fork"

    def run(self, problem):
        budget = problem.budget.evals or 1000
        reader, writer = os.pipe()
        children = []
        for i in range(10):
            pid = os.fork()
            if pid == 0:  # the child: spend the budget, send the best back, vanish
                os.close(reader)
                gen = torch.Generator().manual_seed(self.seed + i)
                best, theta = _crude_search(problem, gen, budget)
                data = pickle.dumps((best, theta.numpy()))
                os.write(writer, len(data).to_bytes(4, "little") + data)
                os._exit(0)
            children.append(pid)
        os.close(writer)
        for pid in children:
            os.waitpid(pid, 0)
        with os.fdopen(reader, "rb") as pipe:
            found = []
            while head := pipe.read(4):
                found.append(pickle.loads(pipe.read(int.from_bytes(head, "little"))))
        if found:
            best, theta = min(found, key=lambda pair: pair[0])
            _report_quietly(problem, torch.from_numpy(theta))


class LedgerOriginal(Optimizer):
    """Evaluates through ``problem._ledger_loss.__self__._original["loss"]``, uncharged."""

    name = "cheat-ledger"

    def run(self, problem):
        gen = torch.Generator().manual_seed(self.seed)
        try:
            loss = problem._ledger_loss.__self__._original["loss"]
        except AttributeError:  # no ledger behind this problem: search honestly, crudely
            _report_quietly(problem, _crude_search(problem, gen, 1000)[1])
            return
        best, theta = float("inf"), problem.initial()
        for _ in range(500):
            batch = _uniform(problem, 100, gen)
            values = loss(batch, 0)
            i = int(torch.argmin(values))
            if float(values[i]) < best:
                best, theta = float(values[i]), batch[i].clone()
        problem.report(theta)


class PatchChecks(Optimizer):
    """Patches ``Problem._allowed`` and ``Ledger._check`` to allow everything, then spends
    twenty budgets."""

    name = "cheat-patch"

    def run(self, problem):
        from zgbench.meter import Ledger
        from zgbench.problem import Problem

        Problem._allowed = lambda self, asked, limit, used, what: asked
        Ledger._check = lambda self, wanted, limit, what: None
        gen = torch.Generator().manual_seed(self.seed)
        twenty = 20 * (problem.budget.evals or 1000)
        _report_quietly(problem, _crude_search(problem, gen, twenty)[1])


class Subclass(Optimizer):
    """Passes a tensor subclass whose ``__torch_function__`` records what the task computes
    with it (the optimum, ``thetas - x_star``), then reports what it captured."""

    name = "cheat-subclass"

    def run(self, problem):
        seen: list[torch.Tensor] = []

        class Spy(torch.Tensor):
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                for arg in args:
                    if type(arg) is torch.Tensor and arg.ndim == 1:
                        seen.append(arg.detach().clone())
                return super().__torch_function__(func, types, args, kwargs or {})

        problem.loss(problem.initial()[None].as_subclass(Spy))
        _report_quietly(problem, seen[0] if seen else problem.initial())


class Garbage(Optimizer):
    """Writes bytes that are no message on the problem's socket (or does nothing)."""

    name = "cheat-garbage"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        sock = getattr(problem, "_sock", None)
        if sock is not None:
            sock.sendall(b"ZGB1" + b"\xff" * 64)
            problem.loss(problem.initial()[None])


class RewriteRecords(Optimizer):
    """Looks for the test's results folder under the temporary folder and rewrites every
    other optimizer's record there as violated."""

    name = "cheat-rewrite"

    def run(self, problem):
        import json

        for marker in Path(tempfile.gettempdir()).glob(f"pytest-of-*/*/*/*/{MARKER}"):
            for path in marker.parent.glob("runs/**/*.json"):
                try:
                    record = json.loads(path.read_text())
                    if record["optimizer"]["name"] != self.name:
                        record["status"] = "violated"
                        path.write_text(json.dumps(record))
                except (OSError, ValueError, KeyError):
                    pass
        _report_quietly(problem, problem.initial())


class Memory(Optimizer):
    """Starts from the best θ a module global or a file kept from an earlier run, spends
    its budget on uniform samples, and keeps its best for the next run."""

    name = "cheat-memory"

    def run(self, problem):
        gen = torch.Generator().manual_seed(self.seed)
        carried = _BEST.get(problem.dim)
        if carried is None and MEMORY.exists():
            carried = pickle.loads(MEMORY.read_bytes()).get(problem.dim)
        best, theta = _crude_search(problem, gen, problem.budget.evals or 1000)
        if carried is not None:
            theta = torch.from_numpy(carried)  # the carried θ (a test sees it in the record)
        _BEST[problem.dim] = theta.numpy()
        try:
            MEMORY.write_bytes(pickle.dumps({problem.dim: theta.numpy()}))
        except OSError:
            pass
        _report_quietly(problem, theta)


class LeftoverThread(Optimizer):
    """Leaves a thread that keeps asking the garbage collector for every object: in-process
    that marks the next runs of the worker violated."""

    name = "cheat-thread"

    def run(self, problem):
        import gc

        def haunt() -> None:
            while True:
                gc.get_objects()
                time.sleep(0.01)

        threading.Thread(target=haunt, daemon=True).start()
        _report_quietly(problem, problem.initial())


class Probe(Optimizer):
    """Says what its process can reach (network, disk, the results folder, the task's
    source) by failing with a ``PROBE {json}`` line."""

    name = "cheat-probe"

    def run(self, problem):
        import json
        import socket

        facts = {}
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=2).close()
            facts["network"] = "reached"
        except OSError as exc:
            facts["network"] = f"OSError: {exc}"
        beside = Path(__file__).with_name(".zgbench-probe")  # a folder writable outside
        try:
            beside.write_text("x")
            beside.unlink()
            facts["write_disk"] = "written"
        except OSError as exc:
            facts["write_disk"] = f"OSError: {exc}"
        facts["results_visible"] = any(
            Path(tempfile.gettempdir()).glob(f"pytest-of-*/*/*/*/{MARKER}"))
        try:
            import zgbench.tasks.synthetic  # noqa: F401
            facts["tasks_importable"] = True
        except ImportError:
            facts["tasks_importable"] = False
        facts["tmp_private"] = not any(Path("/tmp").glob("pytest-of-*"))
        try:  # -1: unreadable
            facts["hidden_file_bytes"] = len(
                Path(__file__).with_name("cheats_patch.py").read_bytes())
        except OSError:
            facts["hidden_file_bytes"] = -1
        raise RuntimeError("PROBE " + json.dumps(facts))


class Threaded(Optimizer):
    """Not a cheat: an honest optimizer that evaluates from four threads at once."""

    name = "honest-threads"

    def run(self, problem):
        from concurrent.futures import ThreadPoolExecutor

        def work(i: int) -> None:
            gen = torch.Generator().manual_seed(self.seed + i)
            _crude_search(problem, gen, 10**6)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))


#: The lingering process's command line: ``sleep`` for this many seconds (a marker to find).
LINGER = "4242.4242"


class Linger(Optimizer):
    """Leaves a process behind: a fork in a session of its own (out of the process group),
    which becomes ``sleep 4242.4242``, then a thread; returns at once."""

    name = "cheat-linger"

    def run(self, problem):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", LINGER])
            os._exit(0)
        threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon
        for _ in range(500):  # until the sleep runs: the test looks for it after the run
            if lingering():
                break
            time.sleep(0.01)
        _report_quietly(problem, problem.initial())


def lingering() -> list[int]:
    """Processes running ``sleep LINGER`` that this process can see."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and LINGER.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


CHEATS = [RebuildTask, Forker, LedgerOriginal, PatchChecks, Subclass, Garbage, Memory,
          LeftoverThread]


@hookimpl
def zgbench_optimizers():
    return CHEATS + [RewriteRecords, Probe, Linger, Threaded]


