"""Executors: where runs execute. The driver alone writes results.

An executor's ``map(runs, registry, results, reporter)`` yields ``(run, record)`` pairs as runs
finish, in any order; :func:`zgbench.harness.run_all` stores each record, so resume and the
summary are the same whatever executes the runs.

- :class:`PoolExecutor` (default of ``zgbench run``: one worker): local worker processes
  (``--workers N``), or one worker per device of a list (``--device cuda:0,cuda:1``), one run
  per slot at a time; each worker is reused across runs, and replaced when it dies.
- :class:`InProcessExecutor` (``--in-process``, for debugging with pdb): one run after the
  other in the driver, with per-run budget progress; a plugin's ``os._exit`` or ``abort()``
  ends the driver there.
- :class:`RayExecutor`: each run is a Ray task (``--executor ray [--address ADDR]``), on a
  cluster or on a local instance bound to the loopback interface.

Workers rebuild the plugin registry themselves (built-in and entry-point plugins, minus the
blocked ones), run :func:`zgbench.harness.execute` into a scratch folder, and send back the
record together with the bytes of the pictures the task wrote, which the driver stores under
the results folder. A worker that dies (segfault, out of memory, lost node) yields a failed
record with its cause (exit status or signal), retried on the next ``zgbench run``, and the
cross product goes on.

Ray: Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ipaddress
import math
import os
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from zgbench import hookspecs, plugins
from zgbench.errors import MissingExtra, UsageError
from zgbench.harness import RunSpec, execute, failure_record
from zgbench.plugins import Registry
from zgbench.store import atomic_write
from zgbench.watchdog import default_timeout

Outcome = tuple[dict[str, Any], dict[str, bytes]]


class InProcessExecutor:
    """Runs one run after the other in this process (shows per-run budget progress): for
    debugging (``--in-process``: breakpoints, pdb) and for tests that look inside a run. A
    plugin's ``os._exit`` or ``abort()`` ends the caller here; the default is a worker."""

    name = "inprocess"

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout  # None: each run's default (zgbench.watchdog.default_timeout)

    def close(self) -> None:
        """Nothing to stop (as :meth:`PoolExecutor.close`, so callers treat both alike)."""

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, runs: Sequence[RunSpec], registry: Registry, results: Path,
            reporter=None, admit: Callable[[RunSpec], bool] | None = None,
            ) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
        for run in runs:
            if admit is not None and not admit(run):
                continue
            if reporter:
                reporter.start_run(run)
            on_progress = reporter.run_progress if reporter else None
            yield run, execute(run, registry, results, on_progress, timeout=self.timeout)


# ----------------------------------------------------------------------------- worker side
@functools.lru_cache(maxsize=4)
def _worker_registry(blocked: tuple[str, ...], modules: tuple[str, ...] = ()) -> Registry:
    return plugins.load(blocked=blocked, extra_plugins=[_import(m) for m in modules])


#: Source files of plugin modules the driver loaded from a path (not importable by name from
#: ``sys.path``), by module name: a local worker loads them from there (set by _worker_main).
_PLUGIN_FILES: dict[str, str] = {}


def _import(name: str):
    """A plugin module by name, or from the file the driver loaded it from."""
    import importlib
    import importlib.util

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name or name not in _PLUGIN_FILES:
            raise
    spec = importlib.util.spec_from_file_location(name, _PLUGIN_FILES[name])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _init_worker(blocked: tuple[str, ...], threads: int | None,
                 modules: tuple[str, ...] = ()) -> None:
    """Worker start: set torch's thread count and load the plugins once per process."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    _worker_registry(tuple(blocked), tuple(modules))


def work(run: RunSpec, blocked: Sequence[str] = (), threads: int | None = None,
         timeout: float | None = None, modules: Sequence[str] = ()) -> Outcome:
    """Execute one run in a worker process; return its record and its pictures' bytes.

    The task writes pictures into a scratch folder (a cluster node may not share the driver's
    disk); their paths in the record are relative, so the driver puts them in the same place
    under its results folder.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    registry = (_worker_registry(tuple(blocked), tuple(modules)) if modules
                else _worker_registry(tuple(blocked)))
    with tempfile.TemporaryDirectory(prefix="zgbench-run-") as scratch:
        record = execute(run, registry, Path(scratch), timeout=timeout)
        files = {rel: (Path(scratch) / rel).read_bytes() for rel in record.artifacts}
    return record, files


# ----------------------------------------------------------------------------- driver side
def worker_plugins(blocked: Sequence[str] = ()) -> set[str]:
    """Names of the plugins a fresh worker process loads: built-ins and entry points."""
    names = {name for name, _ in plugins.builtin_modules()}
    names |= {ep.name for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)}
    return names - set(blocked)


def check_portable(runs: Sequence[RunSpec], registry: Registry) -> tuple[str, ...]:
    """Fail before starting workers if a run needs a plugin they cannot load (one registered
    in this process only, e.g. passed to ``plugins.load(extra_plugins=...)``). A plugin that
    is an importable module (a test plugin on ``sys.path``) is imported by name in the
    workers: its module names are returned."""
    loadable = worker_plugins(registry.blocked)
    modules: list[str] = []
    for run in runs:
        for entry in (registry.task(run.task.name), registry.optimizer(run.optimizer.name)):
            module = _importable(registry, entry.plugin)
            if entry.plugin not in loadable and module:
                modules.append(module)
            elif entry.plugin not in loadable:
                raise UsageError(
                    f"{entry.cls.kind} {entry.cls.name!r} comes from plugin {entry.plugin!r}, "
                    "which is registered in this process only; worker processes load built-in "
                    "and installed plugins (entry-point group 'zgbench'). Install the plugin "
                    "as a distribution, or run it in this process with --in-process.")
    return tuple(dict.fromkeys(modules))


def _importable(registry: Registry, plugin_name: str) -> str | None:
    """The module name of a plugin that is a module a worker can import, else None."""
    plugin = registry.manager.get_plugin(plugin_name)
    name = getattr(plugin, "__name__", None)
    if (isinstance(plugin, type(sys)) and getattr(plugin, "__file__", None)
            and sys.modules.get(name) is plugin):
        return name
    return None


def save_artifacts(results: Path, files: dict[str, bytes]) -> None:
    """Write a worker's pictures under ``results`` (atomically, refusing paths outside it)."""
    root = Path(results).resolve()
    for rel, data in files.items():
        path = (root / rel).resolve()
        if root not in path.parents:
            raise ValueError(f"artifact path {rel!r} leaves the results folder")
        atomic_write(path, lambda f, d=data: f.write(d), binary=True)


def _schedule(runs: Sequence[RunSpec], slots: Sequence[Any], registry: Registry,
              results: Path, submit: Callable[[RunSpec, Any], Any],
              collect: Callable[[list[Any]], list[tuple[Any, Outcome | str]]],
              place: Callable[[RunSpec, Any], RunSpec],
              cancel: Callable[[list[Any]], None] = lambda handles: None,
              admit: Callable[[RunSpec], bool] | None = None,
              ) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Keep one run per slot in flight; yield ``(run, record)`` as runs finish.

    ``submit(run, slot)`` starts a run on a slot and returns its handle; ``collect(handles)``
    waits until at least one handle is done and returns ``(handle, outcome)`` pairs, the
    outcome being the worker's ``(record, files)`` or the text of the error that killed it.
    ``cancel`` gets the handles still in flight when the consumer stops early (Ctrl-C, a
    signal, an error while storing). ``admit(run)`` is asked just before a run starts: False
    skips it. Hand-written rather than ``Executor.map`` because a device is a slot that must
    be handed to exactly one run at a time.
    """
    queue, free = deque(runs), list(slots)
    flight: dict[Any, tuple[RunSpec, Any]] = {}
    try:
        while queue or flight:
            while queue and free:
                run = queue.popleft()
                if admit is not None and not admit(run):
                    continue
                slot = free.pop(0)
                flight[submit(place(run, slot), slot)] = (run, slot)
            if not flight:
                break
            for handle, outcome in collect(list(flight)):
                run, slot = flight.pop(handle)
                free.append(slot)
                if isinstance(outcome, str):
                    record = failure_record(run, registry, outcome)
                else:
                    record, files = outcome
                    save_artifacts(results, files)
                yield run, record
    finally:
        if flight:
            cancel(list(flight))


class PoolExecutor:
    """Local worker processes: ``workers`` of them, or one per device of ``devices``.

    The default of ``zgbench run`` is one such worker (plugin code never runs in the driver):
    a process that runs one run at a time and stays for the next, so that a plugin's
    ``os._exit``, ``abort()``, segfault or signal ends that run only. Its run is recorded as
    failed with the cause (exit status or signal) and a fresh worker takes the next run.

    Processes are forked from a ``forkserver`` that has imported torch and zgbench once (CUDA
    and torch's thread pools do not survive a plain ``fork`` of a process that used them; the
    server never runs anything), so starting or restarting a worker costs no new torch import;
    where there is no forkserver (Windows) they are spawned. Each worker sets torch to
    ``threads`` threads (default ``cpus // workers``, so that N workers do not oversubscribe the
    CPU). With a device list each worker slot owns one device and runs one run at a time on it;
    the run's identity keeps the planned device (``cuda``), so resume does not depend on which
    GPU a run landed on.

    ``isolate``: every run in a fresh process of its own (``--isolate``), so a plugin's global
    state cannot leak into the next run either; ``memory``: an address-space limit in bytes per
    worker process (``resource.RLIMIT_AS``). ``timeout``: each run's hard wall-clock limit
    (default: from its budget, :func:`zgbench.watchdog.default_timeout`); the worker abandons
    a run at the limit, and the driver kills a worker still busy ``kill_grace`` seconds later
    (a run stuck inside C code): that worker only, the others go on. Workers ignore Ctrl-C and
    end with the driver: it stops them when it stops (error, Ctrl-C, SIGTERM), and each
    worker exits by itself if the driver is gone (killed with SIGKILL).
    """

    name = "pool"

    def __init__(self, workers: int | None = None, devices: Sequence[str] | None = None,
                 context: str | None = None, isolate: bool = False, memory: int | None = None,
                 timeout: float | None = None, kill_grace: float | None = None,
                 threads: int | None = None) -> None:
        if devices and workers and workers != len(devices):
            raise UsageError(f"--workers {workers} does not match the {len(devices)} devices of "
                             "--device: a device list runs one worker per device; drop --workers.")
        self.slots: list[str | None] = list(devices) if devices else [None] * (workers or 1)
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}.")
        if memory is not None and not isolate:
            raise UsageError("--memory limits the process of each run: add --isolate.")
        self.context, self.isolate, self.memory = context, isolate, memory
        self.timeout = timeout
        self.kill_grace = KILL_GRACE if kill_grace is None else kill_grace
        self._threads = threads
        #: Workers kept between calls of map (claims and tune call it once per claim or
        #: trial), keyed by slot, and the plugin configuration they loaded.
        self._workers: dict[int, _Worker] = {}
        self._config: tuple | None = None

    @property
    def threads(self) -> int:
        if self._threads:
            return self._threads
        return max(1, (os.cpu_count() or 1) // len(self.slots))

    def _context(self, blocked: tuple[str, ...]):
        import multiprocessing

        method = self.context or ("forkserver" if "forkserver" in
                                  multiprocessing.get_all_start_methods() else "spawn")
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(_PRELOAD + _plugin_modules(blocked))
        return context

    def deadline(self, run: RunSpec) -> float:
        """Seconds after a run's start at which the driver kills its worker."""
        limit = default_timeout(run.budget.seconds) if self.timeout is None else self.timeout
        if self.isolate:  # plus the start of the optimizer's process, outside the run's limit
            from zgbench.sandbox.runner import START_TIMEOUT

            limit += START_TIMEOUT
        return limit + self.kill_grace

    def map(self, runs: Sequence[RunSpec], registry: Registry, results: Path,
            reporter=None, admit: Callable[[RunSpec], bool] | None = None,
            ) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
        """``admit(run)``, asked just before a run starts: False skips it (another driver
        claimed it, see :meth:`zgbench.store.ResultStore.claim`)."""
        runs = list(runs)
        if not runs:
            return
        modules = check_portable(runs, registry)
        blocked = tuple(registry.blocked)
        files = {m: sys.modules[m].__file__ for m in modules}  # workers load from the same files
        config = (blocked, self.threads, self.timeout, modules, self.memory, list(sys.path),
                  files, dict(os.environ))
        if self.isolate:  # the optimizer in a sandboxed process of its own (zgbench.sandbox)
            config = (*config, _sandbox_settings(runs, registry, results, modules))
        if config != self._config:  # workers load plugins once: other plugins, new workers
            self.close()
            self._config = config
        context = self._context(blocked)
        workers = self._workers

        def submit(run: RunSpec, slot: int) -> _Worker:
            worker = workers.get(slot)
            if worker is None or not worker.usable:
                worker = workers[slot] = _Worker(context, config, self.isolate, slot)
            if reporter is not None and len(self.slots) == 1:
                reporter.start_run(run)
            try:
                worker.submit(run, self.deadline(run))
            except OSError:  # it died idle and is not reaped yet (usable saw it alive)
                worker.kill()
                worker = workers[slot] = _Worker(context, config, self.isolate, slot)
                worker.submit(run, self.deadline(run))
            return worker

        def collect(handles: list[_Worker]) -> list[tuple[Any, Outcome | str]]:
            wait_for = max(min(h.deadline for h in handles) - time.monotonic(), 0.0)
            ready = set(_wait([c for h in handles for c in (h.conn, h.process.sentinel)],
                              timeout=wait_for))
            out: list[tuple[Any, Outcome | str]] = []
            for handle in handles:
                if handle.conn in ready or handle.process.sentinel in ready:
                    out.append((handle, handle.result()))
                    if self.isolate:
                        handle.stop()
                elif handle.deadline <= time.monotonic():
                    handle.kill()  # the next run of this slot starts a fresh worker
                    out.append((handle, _killed(handle.limit)))
            return out

        def cancel(handles: list[_Worker]) -> None:
            for handle in handles:
                handle.kill()

        def place(run: RunSpec, slot: int) -> RunSpec:
            device = self.slots[slot]
            return replace(run, placement=device) if device else run

        try:
            yield from _schedule(runs, list(range(len(self.slots))), registry, results, submit,
                                 collect, place, cancel, admit)
        except BaseException:  # Ctrl-C, a signal, an error while storing: stop every worker
            self.close()
            raise
        if self.isolate:
            self.close()

    def close(self) -> None:
        """Stop the workers kept between calls of :meth:`map` (they also end when this
        executor is garbage-collected: their pipes close)."""
        workers, self._workers = dict(self._workers), {}
        for worker in workers.values():
            worker.stop()

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(objects: list[Any], timeout: float) -> list[Any]:
    from multiprocessing.connection import wait

    return wait(objects, timeout=timeout)


#: Seconds the driver waits past a run's limit before it kills the worker: the worker itself
#: abandons the run at the limit and then takes a last checkpoint (guarded by the same time).
KILL_GRACE = 30.0


def _killed(limit: float) -> str:
    return (f"the run was killed after {limit:g} s: it passed its hard wall-clock limit "
            "(--timeout, plus the grace for its last checkpoint) and its worker did not stop")


class _Worker:
    """A worker process, the pipe runs go out and outcomes come back on, and the deadline of
    the run in flight. It runs runs one at a time until the pipe closes (``once``: one run)."""

    def __init__(self, context, config: tuple, once: bool, slot: int) -> None:
        self.once = once
        self.conn, child = context.Pipe(duplex=True)
        args = (child, *config[:8], os.getpid(), once, *config[8:])
        self.process = context.Process(target=_worker_main, name=f"zgbench-worker-{slot}",
                                       daemon=True, args=args)
        self.process.start()
        child.close()  # the worker holds its end: EOF here means the worker is gone
        self.deadline, self.limit, self.used = math.inf, math.inf, False

    @property
    def usable(self) -> bool:
        """Whether the next run can go to this worker (else a fresh one takes it)."""
        return (not self.conn.closed and self.process.is_alive()
                and not (self.once and self.used))

    def submit(self, run: RunSpec, limit: float) -> None:
        self.deadline, self.limit, self.used = time.monotonic() + limit, limit, True
        self.conn.send(run)

    def result(self) -> Outcome | str:
        """The outcome of the run in flight, or why the worker died without one (its pipe
        at EOF, or nothing on it and the process gone: a child the plugin forked may still
        hold the pipe open)."""
        try:
            if self.conn.poll(0):
                return self.conn.recv()
        except (EOFError, OSError):  # died before sending anything
            pass
        self.process.join(5)
        self.kill()
        return _exit_cause(self.process.exitcode, "worker process" if not self.once else
                           "run's process")

    def stop(self) -> None:
        """End an idle worker: closing its pipe ends its loop; kill it if it lingers."""
        self.conn.close()
        self.process.join(2)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


def _exit_cause(code: int | None, who: str = "run's process") -> str:
    """Why a run's process ended without a record, in words."""
    import signal

    tail = ("; no record came back" if who.startswith("run") else
            " while this run was in flight (the worker process died); no record came back, a "
            "fresh worker runs the next runs, and this run is retried on the next `zgbench run`")
    if code is None:
        return f"the {who} did not exit{tail}"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
        hint = {"SIGKILL": " (killed: out of memory, or by the system)",
                "SIGABRT": " (os.abort() or a failed C assertion)",
                "SIGSEGV": " (a segmentation fault in native code)"}.get(str(name), "")
        return f"the {who} was killed by signal {name}{hint}{tail}"
    return f"the {who} exited with status {code} before sending its record (os._exit?){tail}"


def _worker_main(conn, blocked: tuple[str, ...], threads: int | None, timeout: float | None,
                 modules: tuple[str, ...], memory: int | None, path: list[str],
                 files: dict[str, str], environ: dict[str, str], driver: int,
                 once: bool, sandbox=None) -> None:
    """Entry point of a worker process: receive runs, run each, send back its outcome.

    The worker takes the driver's environment and ``sys.path`` of now (the forkserver has
    those of its start: ``ZGBENCH_CACHE`` set since must reach the tasks), and loads plugin
    modules the driver loaded from a file from that file. ``sandbox`` (``--isolate``): the
    :class:`zgbench.sandbox.runner.Settings` of isolated runs; the worker then loads no
    plugin up front (each run loads its task's plugin only, see :mod:`zgbench.sandbox`).
    Ctrl-C goes to the driver (the terminal sends it to the whole process group): the worker
    ignores it and is stopped by the driver. A worker whose driver is gone exits by itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_driver(driver)
    os.environ.clear()
    os.environ.update(environ)
    sys.path[:] = path
    _PLUGIN_FILES.update(files)
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        if sandbox is None:
            _init_worker(blocked, threads, modules)
        elif threads:
            import torch

            torch.set_num_threads(threads)
        broken = None
    except BaseException:  # a plugin that fails to load: every run says why
        broken = "the worker process could not load the plugins:\n" + traceback.format_exc()
    while True:
        try:
            run = conn.recv()
        except (EOFError, OSError):  # the driver closed the pipe: no more runs
            return
        try:
            outcome: Outcome | str = broken or (
                work(run, blocked, threads, timeout, modules) if sandbox is None else
                _work_isolated(run, blocked, threads, timeout, modules, sandbox))
        except BaseException:  # work() records the run's own failures; this is the rest
            outcome = traceback.format_exc()
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return
        except Exception:  # the outcome does not pickle: say why instead
            conn.send(traceback.format_exc())
        if once:
            return


def _sandbox_settings(runs: Sequence[RunSpec], registry: Registry, results: Path,
                      modules: Sequence[str]):
    """What workers need to run ``runs`` isolated (:func:`zgbench.sandbox.runner.settings`);
    where bubblewrap does not work, say so once."""
    from zgbench.sandbox import bwrap, runner

    mode, reason = bwrap.resolve()
    if reason and not _SAID_NO_BWRAP:
        _SAID_NO_BWRAP.append(reason)
        import warnings

        warnings.warn(f"--isolate: {reason}; the optimizer runs in a separate process without "
                      "the bubblewrap sandbox (read-only filesystem, no network)", stacklevel=3)
    return runner.settings(mode, runs, registry, results,
                           lambda plugin: _importable(registry, plugin))


_SAID_NO_BWRAP: list[str] = []


def _work_isolated(run: RunSpec, blocked, threads, timeout, modules, settings) -> Outcome:
    from zgbench.sandbox import runner

    return runner.work(run, blocked, threads, timeout, modules, settings)


def _watch_driver(driver: int) -> None:
    """Exit this worker soon after its driver is gone (killed with SIGKILL, say), even in the
    middle of a run: nobody would read its record, and it must not be left running."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                os._exit(70)
            except PermissionError:
                pass
            if os.getppid() != parent:  # our parent (driver or forkserver) ended
                os._exit(70)

    threading.Thread(target=watch, name="zgbench-driver-watch", daemon=True).start()


#: Imported once by the forkserver. torch.optim imports torch._dynamo lazily when the first
#: optimizer is built (seconds), which every fresh worker would otherwise pay again.
_PRELOAD = ["torch", "torch._dynamo", "zgbench.executors"]


def _plugin_modules(blocked: Sequence[str]) -> list[str]:
    """Built-in plugin modules this process imported without error, for the forkserver to
    import once before forking workers (a module that fails to import could stop it)."""
    return [path for name, path in plugins.builtin_modules()
            if name not in blocked and path in sys.modules]


# ----------------------------------------------------------------------------- Ray
#: Ray binds every service to 127.0.0.1 only in its single-machine mode (the one it uses on
#: macOS and Windows); otherwise it resolves 127.0.0.1 to the machine's outward address.
_RAY_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray():
    """The ``ray`` module, or :class:`MissingExtra` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingExtra("--executor ray needs the extra ray (missing module: ray): "
                           "pip install 'zgbench[ray]'") from None
    return ray


def _is_loopback(address: str) -> bool:
    """True for ``127.x.y.z:port``, ``[::1]:port``, ``localhost:port`` (and ``ray://`` forms)."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _single_machine(enabled: bool):
    """Put Ray in its single-machine mode (loopback only) for the duration of a session.

    Ray reads the switch from the environment when it is imported and passes the environment on
    to the processes it starts, so both the variable and the already-read constant are set,
    and both are restored afterwards.
    """
    if not enabled:
        yield
        return
    from ray._private import ray_constants

    old_env, old_flag = os.environ.get(_RAY_SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_RAY_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_RAY_SINGLE_MACHINE_ENV] = old_env


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Connect to Ray for the duration of the block, and disconnect (or shut down) after.

    - already connected (``ray.init`` called by the caller): use that connection, leave it open;
    - ``address`` given (``host:port``, ``auto``, ``ray://...``): connect to that cluster;
    - no address: start a local instance on 127.0.0.1 (no dashboard, ``num_cpus`` CPUs, the
      machine's count by default) and shut it down at the end.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    local = address in (None, "local")
    with _single_machine(local or _is_loopback(address)):
        try:
            if local:
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                         include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # ConnectionError, AuthenticationError, bad address, ...
            if local:
                raise UsageError(f"could not start a local Ray instance: {exc}") from None
            raise UsageError(
                f"could not connect to Ray at {address!r}: {exc}. Check the address (ray status "
                "on the head node prints it). Clusters started by ray start or ray.init use "
                "token authentication, which Ray turns on for an explicit address only if you "
                "set RAY_AUTH_MODE=token (the token comes from ~/.ray/auth_token or "
                "RAY_AUTH_TOKEN).") from None
        try:
            yield ray
        finally:
            ray.shutdown()


class RayExecutor:
    """Each run is a Ray task: one CPU, plus one GPU when the device is CUDA.

    ``address`` picks the cluster (``None``: a local instance on the loopback interface, shut
    down afterwards); ``max_in_flight`` caps the runs submitted at once (``None``: all of them,
    Ray queues what the cluster cannot place). Failed tasks are not retried by Ray: a run that
    dies is recorded as failed, exactly as in-process, and retried by the next ``zgbench run``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_in_flight: int | None = None, timeout: float | None = None) -> None:
        self.address, self.num_cpus, self.max_in_flight = address, num_cpus, max_in_flight
        self.timeout = timeout  # enforced inside the Ray worker (zgbench.watchdog)

    def map(self, runs: Sequence[RunSpec], registry: Registry, results: Path,
            reporter=None, admit: Callable[[RunSpec], bool] | None = None,
            ) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
        runs = list(runs)
        if not runs:
            return
        modules = check_portable(runs, registry)
        with ray_session(self.address, self.num_cpus) as ray:
            yield from self._map(ray, runs, registry, results, modules, admit)

    def _map(self, ray, runs: list[RunSpec], registry: Registry, results: Path,
             modules: tuple[str, ...] = (), admit=None):
        import torch

        blocked = tuple(registry.blocked)
        remotes = {}

        def submit(run: RunSpec, slot: Any = None):
            gpus = 1 if torch.device(run.device).type == "cuda" else 0
            if gpus not in remotes:
                remotes[gpus] = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(work)
            return remotes[gpus].remote(run, blocked, 1, self.timeout, modules)

        def collect(refs: list[Any]) -> list[tuple[Any, Outcome | str]]:
            done, _ = ray.wait(refs, num_returns=1)
            out: list[tuple[Any, Outcome | str]] = []
            for ref in done:
                try:
                    out.append((ref, ray.get(ref)))
                except Exception as exc:  # the task's process or node died
                    out.append((ref, f"Ray task failed: {type(exc).__name__}: {exc}"))
            return out

        def place(run: RunSpec, slot: str | None) -> RunSpec:
            # Ray hides every GPU but the one it assigned: that one is "cuda" in the task.
            return replace(run, placement="cuda") if run.device.startswith("cuda") else run

        def cancel(refs: list[Any]) -> None:
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or its node is gone: nothing to stop
                    pass

        slots = [None] * (self.max_in_flight or len(runs))
        yield from _schedule(runs, slots, registry, results, submit, collect, place, cancel,
                             admit)
