"""The trusted side of an isolated run: the task, the ledger and the problem stay here; the
optimizer runs in a child process (:mod:`zgbench.sandbox.child`) and reaches the problem
through a socket carrying plain data (:mod:`zgbench.sandbox.wire`).

:func:`work` is what a pool worker runs for each run under ``--isolate``: it loads the task's
plugin and the built-ins, never the optimizer's plugin, and hands
:func:`zgbench.harness.execute` a registry whose optimizer entry is a :class:`RemoteOptimizer`
class, so the harness runs, audits and records the run exactly as in-process. The optimizer's
process (its process group, its PID namespace under bwrap) is killed when ``run`` returns.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import types
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zgbench.errors import UsageError
from zgbench.optimizer import Optimizer, TaskInfo
from zgbench.plugins import Entry, Registry
from zgbench.problem import Problem
from zgbench.sandbox import bwrap, wire

#: Seconds the trusted side waits for the optimizer's process to be built (imports included);
#: outside the run's --timeout, which starts after it (the driver's kill waits that much more).
START_TIMEOUT = 120.0


class SandboxViolation(Exception):
    """The optimizer's process broke the protocol (a malformed or unknown message)."""


class OptimizerFailed(Exception):
    """The optimizer raised in its own process; the message is its traceback there."""


# --------------------------------------------------------------------- what crosses, where
def describe(entry: Entry) -> dict[str, Any]:
    """What a worker needs to know of an optimizer without importing it: plain data from the
    driver's registry (where to import it from in the optimizer's process, the record's
    fields). Raises UsageError for a class that no fresh process can import."""
    cls = entry.cls
    origin = getattr(cls, "_origin", None)  # a stand-in of the catalog (zgbench.sandbox.catalog)
    if origin is not None:
        return {"name": cls.name, "plugin": entry.plugin, "version": entry.version,
                "requires": sorted(cls.requires), **origin}
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__ or path is None:
        raise UsageError(
            f"optimizer {cls.name!r} ({cls.__module__}.{cls.__qualname__}) cannot run under "
            "--isolate: its process imports the optimizer's class by module and name, and "
            "this class is defined where no other process can import it. Define it at the "
            "top level of a module (an installed plugin, or a plugin module on sys.path).")
    return {"name": cls.name, "plugin": entry.plugin, "version": entry.version,
            "requires": sorted(cls.requires), "module": cls.__module__,
            "qualname": cls.__qualname__, "file": str(Path(path).resolve())}


@dataclass(frozen=True)
class Settings:
    """How a worker runs isolated runs: the sandbox mode, the folders the optimizer must not
    see, and the optimizers' descriptions (:func:`describe`) by name."""

    mode: str
    hide: tuple[str, ...]
    optimizers: dict[str, dict[str, Any]]
    #: each task's plugin name and, for a plugin module on sys.path, its module name
    tasks: dict[str, tuple[str, str | None]]


def settings(mode: str, runs: Sequence[Any], registry: Registry, results: Path,
             importable: Any) -> Settings:
    """The :class:`Settings` of ``runs`` (driver side). Hidden from the optimizer: the
    results folder, zgbench's cache, the built-in tasks' source and each plugin task's
    package (an optimizer has no business importing the task it is scored on; an
    optimizer's own package stays visible). ``importable(plugin)``: the module name of a
    plugin module on ``sys.path``, else None."""
    import zgbench.tasks
    from zgbench import cache

    optimizers = {run.optimizer.name: describe(registry.optimizer(run.optimizer.name))
                  for run in runs}
    own = {Path(meta["file"]).parent for meta in optimizers.values()}
    hide = [str(results), str(cache.root()), str(Path(zgbench.tasks.__file__).parent),
            *(p for p in os.environ.get(bwrap.HIDE_ENV, "").split(os.pathsep) if p)]
    tasks = {}
    for run in runs:
        entry = registry.task(run.task.name)
        tasks[run.task.name] = (entry.plugin, importable(entry.plugin))
        module = sys.modules.get(entry.cls.__module__)
        path = Path(getattr(module, "__file__", None) or ".").resolve()
        if path.name == "__init__.py" and path.parent not in own:
            hide.append(str(path.parent))
    return Settings(mode, tuple(dict.fromkeys(hide)), optimizers, tasks)


# ------------------------------------------------------------------------------ the worker
_LIVE: weakref.WeakSet = weakref.WeakSet()


def work(run, blocked: Sequence[str], threads: int | None, timeout: float | None,
         modules: Sequence[str], settings: Settings):
    """Execute one run with its optimizer in a sandboxed process; the record and its
    pictures' bytes, as :func:`zgbench.executors.work`. Loads the built-in plugins and the
    task's plugin only (``modules``: plugin modules the driver loaded; the task's is
    imported, the others are not)."""
    from zgbench import plugins
    from zgbench.executors import _import
    from zgbench.harness import execute

    if threads:
        torch.set_num_threads(threads)
    _become_subreaper()
    meta = settings.optimizers[run.optimizer.name]
    threads = torch.get_num_threads()
    seed = run.seeds()["optimizer"]
    # started first: the optimizer's process imports torch while this one loads the task's
    # plugin, and its start is not charged to the run's --timeout (it is not the plugin's)
    box = Sandbox(build_settings(meta, seed, run.optimizer.kwargs, threads), settings)
    plugin, module = settings.tasks[run.task.name]
    extra = [_import(module)] if module and module in modules else []
    registry = plugins.load(blocked=tuple(blocked) + tuple(_entry_points(plugin)),
                            extra_plugins=extra)
    try:
        box.ready()
    except (OptimizerFailed, SandboxViolation):
        pass  # raised again when execute() builds the optimizer: the run's record says it
    isolated = IsolatedRegistry(registry, meta, settings, threads, box)
    try:
        with tempfile.TemporaryDirectory(prefix="zgbench-run-") as scratch:
            record = execute(run, isolated, Path(scratch), timeout=timeout)
            files = {rel: (Path(scratch) / rel).read_bytes() for rel in record.artifacts}
    finally:
        for box in list(_LIVE):
            box.close()
    return record, files


def _entry_points(keep: str | None) -> list[str]:
    """Names of installed plugins other than ``keep``: the trusted worker does not load
    them (an optimizer's plugin runs in the optimizer's process only)."""
    import importlib.metadata

    from zgbench import hookspecs

    return [ep.name for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)
            if ep.name != keep]


class IsolatedRegistry:
    """A registry whose tasks are real and whose optimizer is remote: what
    :func:`zgbench.harness.execute` looks components up in for an isolated run."""

    def __init__(self, registry: Registry, meta: dict[str, Any], settings: Settings,
                 threads: int, box: Sandbox | None = None) -> None:
        self._registry, self.blocked, self.manager = registry, registry.blocked, registry.manager
        self._entry = Entry(remote_class(meta, settings, threads, box), meta["plugin"],
                            meta["version"])

    def task(self, name: str) -> Entry:
        return self._registry.task(name)

    def optimizer(self, name: str) -> Entry:
        if name != self._entry.cls.name:
            raise UsageError(f"unknown optimizer {name!r} in this isolated run")
        return self._entry


def build_settings(meta: dict[str, Any], seed: int, kwargs: dict[str, Any],
                   threads: int) -> dict[str, Any]:
    """What the optimizer's process builds the optimizer from (sent pickled, trusted to
    untrusted)."""
    return dict(meta, seed=int(seed), kwargs=dict(kwargs), threads=threads, path=list(sys.path),
                torch_seed=int(seed))


def remote_class(meta: dict[str, Any], settings: Settings, threads: int,
                 box: Sandbox | None = None) -> type[Optimizer]:
    """An :class:`Optimizer` class standing for the optimizer ``meta`` describes: its name,
    ``requires`` and source file (so the record's code fingerprint is the real one; the file
    is hashed, not run), and instances that run it in a sandboxed process."""
    module = types.ModuleType(f"zgbench.sandbox.remote.{meta['module']}")
    module.__file__ = meta["file"]
    sys.modules[module.__name__] = module
    return type(meta["qualname"].rpartition(".")[2], (RemoteOptimizer,), {
        "name": meta["name"], "requires": frozenset(meta["requires"]),
        "__module__": module.__name__, "_meta": meta, "_settings": settings,
        "_threads": threads, "_started": [box] if box is not None else []})


class RemoteOptimizer(Optimizer):
    """The trusted side's stand-in for an optimizer running in a sandboxed process."""

    _meta: dict[str, Any] = {}
    _settings: Settings | None = None
    _threads = 1

    _started: list[Sandbox] = []

    def __init__(self, *, seed: int = 0, **params: Any) -> None:  # noqa: D107
        self.seed = int(seed)  # the parameters are the real class's: checked over there
        build = build_settings(self._meta, self.seed, params, self._threads)
        started = self._started.pop() if self._started else None
        if started is not None and started.build == build:
            self._box = started
        else:  # built again, or with other settings than the one started ahead
            if started is not None:
                started.close()
            self._box = Sandbox(build, self._settings)
        self._box.ready()

    def skip(self, task: TaskInfo) -> str | None:
        reason = self._box.skip(task)
        if reason:
            self._box.close()
        return reason

    def run(self, problem: Problem) -> None:
        try:
            self._box.run(problem)
        finally:
            self._box.close()


# ----------------------------------------------------------------------------- the process
class Sandbox:
    """One optimizer process and the trusted end of its socket."""

    def __init__(self, build: dict[str, Any], settings: Settings) -> None:
        import pickle

        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        gpu = settings.mode == "bwrap" and torch.cuda.is_available()
        argv = [sys.executable, "-m", "zgbench.sandbox.child", str(theirs.fileno())]
        if settings.mode == "bwrap":
            argv = bwrap.wrap(argv, settings.hide, gpu=gpu)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(build["threads"])}
        for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
            if name in os.environ:
                env[name] = os.environ[name]
        self._process = subprocess.Popen(
            argv, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent if settings.mode != "bwrap"
            else None)
        theirs.close()
        self._closed, self._bwrap = False, settings.mode == "bwrap"
        _LIVE.add(self)
        self.build, self._failure, self._built = build, None, False
        wire.send(self._sock, {"build": np.frombuffer(pickle.dumps(build), dtype=np.uint8)})

    def ready(self) -> None:
        """Wait until the optimizer is built in its process (once); raise why not (again, on
        each call: the first may come before the run's record exists)."""
        if not self._built and self._failure is None:
            try:
                self._expect("built", timeout=START_TIMEOUT)
                self._built = True
            except (OptimizerFailed, SandboxViolation) as exc:
                self._failure = exc
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))

    # ------------------------------------------------------------------ the steps
    def skip(self, task: TaskInfo) -> str | None:
        wire.send(self._sock, {"skip": [task.name, sorted(task.provides), _plain_params(
            task.params)]})
        (reason,) = self._expect("skipped", timeout=START_TIMEOUT)
        if reason is not None and type(reason) is not str:
            raise SandboxViolation(f"skip() answered {reason!r}, not a reason or null")
        return reason

    def run(self, problem: Problem) -> None:
        """Serve the optimizer's calls on ``problem`` until its ``run`` ends."""
        self._sock.settimeout(None)
        wire.send(self._sock, {"run": public_view(problem)})
        try:
            op, args = serve(self._sock, problem)
        except EOFError:
            self._died()
        except SandboxViolation:
            if self._process.poll() is not None:  # it broke off a message as it died
                self._died()
            raise
        return self._ended(op, args, problem)

    # ---------------------------------------------------------------- the endings
    def _ended(self, op: str, args: list[Any], problem: Problem) -> None:
        if op == "done":
            return
        if op == "failed" and len(args) == 1 and type(args[0]) is str:
            raise OptimizerFailed("the optimizer raised (in its sandboxed process):\n" + args[0])
        if op == "exit" and len(args) == 2 and args[0] == "SystemExit":
            raise SystemExit(args[1] if type(args[1]) in (int, str) else None)
        if op == "exit" and len(args) == 2 and args[0] == "KeyboardInterrupt":
            raise KeyboardInterrupt
        raise _violation(problem, f"the optimizer's process ended with a malformed {op!r}")

    def _died(self) -> None:
        try:
            code = self._process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if self._bwrap and code is not None and code > 128:  # bwrap says 128 + signal
            code = 128 - code
        raise OptimizerFailed(f"the optimizer's process {_exit_words(code)}")

    def _expect(self, what: str, timeout: float) -> list[Any]:
        self._sock.settimeout(timeout)
        try:
            message = self._receive(None, None)
        except TimeoutError:
            raise OptimizerFailed(f"the optimizer's process sent nothing in {timeout:g} s")
        except (EOFError, ConnectionError, wire.WireError) as exc:
            if isinstance(exc, EOFError) or self._process.poll() is not None:
                self._died()
            raise SandboxViolation(f"the optimizer's process sent a malformed message ({exc})")
        if (type(message) is not list or len(message) != 2 or type(message[1]) is not list):
            raise SandboxViolation(f"the optimizer's process answered {str(message)[:80]!r}")
        if message[0] == "failed" and message[1] and type(message[1][0]) is str:
            raise OptimizerFailed("building the optimizer failed (in its sandboxed process):\n"
                                  + message[1][0])
        if message[0] != what:
            raise SandboxViolation(f"expected {what!r} from the optimizer's process, got "
                                   f"{str(message[0])[:40]!r}")
        return message[1]

    def _receive(self, device: torch.device | None, handles: wire.Handles | None) -> Any:
        doc, blobs = wire.receive(self._sock)
        return wire.decode(doc, blobs, handles, device)

    def close(self) -> None:
        """Kill the optimizer's process group (and so, under bwrap, its PID namespace) and
        close the socket: nothing the optimizer started outlives its run."""
        if self._closed:
            return
        self._closed = True
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._process.kill()
        except OSError:
            pass
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        _kill_escaped()
        self._sock.close()


def public_view(problem: Problem) -> dict[str, Any]:
    """What the optimizer's :class:`~zgbench.sandbox.proxy.ProxyProblem` is built from: the
    run's public description, and the state of the problem's key generator (so that its
    ``new_key`` draws the keys the in-process problem draws)."""
    return {"budget": problem.budget.as_dict(), "dim": problem.dim,
            "device": str(problem.device), "dtype": wire._TORCH_NAMES[problem.dtype],
            "provides": sorted(problem.provides), "name": problem._name,
            "scale": problem.scale, "uniform_scale": problem._uniform_scale,
            "costs": {name: [c.evals, c.grads, c.per] for name, c in problem.costs.items()},
            "keys": _key_state(problem)}


#: Messages that end a run.
END = frozenset({"done", "failed", "exit"})


def serve(sock: socket.socket, problem: Problem) -> tuple[str, list[Any]]:
    """Answer the metered calls arriving on ``sock`` with ``problem`` until a message that
    ends the run; return it. A malformed message flags the run's ledger and raises
    :class:`SandboxViolation`; EOFError if the other side is gone."""
    handles = wire.Handles()
    server = Server(problem, handles)
    while True:
        try:
            doc, blobs = wire.receive(sock)
            message = wire.decode(doc, blobs, handles, problem.device)
        except wire.WireError as exc:
            raise _violation(problem, f"the optimizer's process sent a malformed message "
                                      f"({exc})") from None
        op, args = _op(message, problem)
        if op in END:
            return op, args
        wire.send(sock, server(op, args), handles)


class Server:
    """Answers one metered call on the real problem: ``[value, error, counters]``."""

    def __init__(self, problem: Problem, handles: wire.Handles) -> None:
        self.problem, self.handles = problem, handles

    def __call__(self, op: str, args: list[Any]) -> list[Any]:
        problem = self.problem
        try:
            value = _CALLS[op](problem, *args)
            error = None
        except Exception as exc:  # into the optimizer, as in-process (BudgetExhausted, ...)
            value, error = None, [type(exc).__name__, str(exc)]
        seconds = problem.seconds
        return [value, error, [problem.evals, problem.grads, problem.steps, seconds]]


def _key(key: Any) -> int | None:
    if key is not None and type(key) is not int:
        from zgbench.errors import ContractError

        raise ContractError(f"a key is an int (problem.new_key()), got {type(key).__name__}")
    return key


def _call(problem: Problem, capability: Any, args: Any, kwargs: Any, evals: Any,
          grads: Any) -> Any:
    if (type(capability) is not str or type(args) is not list or type(kwargs) is not dict
            or type(evals) is not int or type(grads) is not int):
        raise SandboxViolation("a malformed capability call")
    return problem.call(capability, *args, evals=evals, grads=grads, **kwargs)


def _whole(whole: Any) -> bool:
    if type(whole) is not bool:
        raise SandboxViolation(f"whole={whole!r} is not a bool")
    return whole


_CALLS = {
    "loss": lambda p, thetas, key, whole: p.loss(thetas, _key(key), whole=_whole(whole)),
    "grad": lambda p, thetas, key, whole: p.grad(thetas, _key(key), whole=_whole(whole)),
    "call": _call,
    "report": lambda p, theta: p.report(theta),
    "initial": lambda p: p.initial(),
    "best_loss": lambda p: p.best_loss,
    "recommendation": lambda p: p.recommendation(),
    "trajectory": lambda p: list(p.trajectory),
    "task_seconds": lambda p: p.task_seconds,
}
_ARITY = {"loss": 3, "grad": 3, "call": 5, "report": 1, "initial": 0, "best_loss": 0,
          "recommendation": 0, "trajectory": 0, "task_seconds": 0}


def _op(message: Any, problem: Problem) -> tuple[str, list[Any]]:
    """``message`` as ``(op, args)`` if it is a known call of the right arity, else the run
    is violated."""
    if (type(message) is list and len(message) == 2 and type(message[0]) is str
            and type(message[1]) is list):
        op, args = message
        if op in END or (op in _ARITY and len(args) == _ARITY[op]):
            return op, args
    raise _violation(problem, f"the optimizer's process sent an unknown request "
                              f"{str(message)[:80]!r}")


def _violation(problem: Problem, reason: str) -> SandboxViolation:
    """Note ``reason`` in the run's ledger (the run ends ``violated``) and return the error
    that ends it."""
    ledger = getattr(problem._ledger_report, "__self__", None)
    if ledger is not None:
        ledger.flag(reason)
    return SandboxViolation(reason)


def _key_state(problem: Problem) -> list[Any]:
    version, state, gauss = problem._keys.getstate()
    return [version, list(state), gauss]


def _plain_params(params: Any) -> dict[str, Any]:
    """A task instance's parameters as plain data (a value that is not is sent as text)."""
    out = {}
    for name, value in dict(params).items():
        try:
            wire.encode(value)
            out[str(name)] = value
        except wire.WireError:
            out[str(name)] = str(value)
    return out


def _become_subreaper() -> None:
    """Make this worker the reaper of its orphaned descendants (Linux's
    PR_SET_CHILD_SUBREAPER): a fork of the optimizer that leaves its process group and loses
    its parent becomes this process's child, where :func:`_kill_escaped` finds it."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _kill_escaped() -> None:
    """Kill (and reap) this worker's children in another session than its own: what is left
    of an optimizer's process tree after its group was killed (its forks that called
    ``setsid``, reparented here). The task's own helper processes share this session."""
    ours = os.getsid(0)
    for _ in range(100):  # each kill may reparent that process's children here
        escaped = [pid for pid in _children() if _session(pid) not in (ours, None)]
        if not escaped:
            return
        for pid in escaped:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError, PermissionError):
                pass


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[1] == me:  # field 4: the parent's pid
                out.append(int(entry.name))
    return out


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _die_with_parent() -> None:
    """In the child, before exec (process separation without bwrap): SIGKILL when the
    trusted worker dies (Linux's PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_words(code: int | None) -> str:
    if code is None:
        return "did not exit after closing its connection"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = {"SIGKILL": " (killed: out of memory, or by the system)",
                "SIGABRT": " (os.abort() or a failed C assertion)",
                "SIGSEGV": " (a segmentation fault in native code)"}.get(name, "")
        return f"was killed by signal {name}{hint}"
    return f"exited with status {code} before its run ended (os._exit?)"
