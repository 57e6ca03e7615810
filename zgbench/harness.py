"""The harness: plan the cross product, run each pair under a metered budget, store records.

One run is the unit of work: ``execute(run)`` builds the task and optimizer from their specs,
hands the optimizer a :class:`~zgbench.problem.Problem`, and returns a record whatever
happens (ok, failed with its traceback, or n/a for incompatible pairs). :func:`run_all`
drives an executor over the plan, skips finished runs (warning about those whose task or
optimizer source changed since, see :mod:`zgbench.fingerprint`, and redoing them on request),
writes each record atomically and calls the ``zgbench_run_finished`` hook.
"""

from __future__ import annotations

import functools
import json
import math
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zgbench
from zgbench import cache, fingerprint, outputs, watchdog
from zgbench.budget import Budget, BudgetExhausted
from zgbench.meter import Ledger
from zgbench.optimizer import recommends_best, skip_reason
from zgbench.plain import reset_torch_state
from zgbench.progress import quiet_library_loggers
from zgbench.plugins import Registry
from zgbench.problem import Problem
from zgbench.record import Identity, Record, environment, now, run_id
from zgbench.seeding import PUBLIC, SECRET, InstanceKey, derive_seed
from zgbench.task import Task
from zgbench.store import atomic_write_text
from zgbench.specs import Spec


def task_seed(task: Spec, repetition: int) -> int:
    """The seed of task instance ``repetition``: the same for every optimizer facing it."""
    return derive_seed("task", task.canonical, repetition)


@dataclass(frozen=True)
class RunSpec:
    """Everything that identifies one run; picklable, so executors can ship it."""

    task: Spec
    optimizer: Spec
    repetition: int
    budget: Budget
    device: str = "cpu"
    #: Where an executor actually runs it (e.g. ``cuda:1`` of a device list); not part of
    #: the identity, so a run planned for ``cuda`` resumes whichever GPU it ran on.
    placement: str | None = None
    #: The instance set: ``"public"`` (seeds derived in the open) or ``"secret"`` (salted
    #: with the organizer's key, see :func:`on_instances`), the key's public id, and the
    #: secret ``(task, eval_key)`` seeds the driver derived: the key itself never travels.
    instances: str = PUBLIC
    instance_key: str | None = None
    secret_seeds: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def target_device(self) -> str:
        """The device the task is built on: the placement if an executor set one."""
        return self.placement or self.device

    def identity(self) -> Identity:
        """What makes two runs the same; a run on secret instances adds ``instances``
        (``secret:<key id>``), so it never resumes or replaces a public run (whose identity,
        and run id, are what they always were)."""
        identity: Identity = {
            "task": self.task.canonical,
            "optimizer": self.optimizer.canonical,
            "repetition": self.repetition,
            "budget": self.budget.as_dict(),
            "device": self.device,
            "zgbench": zgbench.__version__,
        }
        if self.instances != PUBLIC:
            identity["instances"] = f"{self.instances}:{self.instance_key}"
        return identity

    @property
    def run_id(self) -> str:
        return run_id(self.identity())

    def seeds(self) -> dict[str, int]:
        """Task seeds depend on (task, repetition) only: every optimizer faces the same instance.
        The optimizer's seeds take its execution options at their defaults (``Spec.stream``):
        ``cge`` and ``cge[reuse=true]`` draw the same loss keys and compare number for number."""
        t, o, r = self.task.canonical, self.optimizer.stream, self.repetition
        task, eval_key = self.secret_seeds or (task_seed(self.task, r), derive_seed("eval", t, r))
        return {
            "task": task,
            "eval_key": eval_key,
            "optimizer": derive_seed("optimizer", t, o, r),
            "problem": derive_seed("keys", t, o, r),
        }

    def describe(self) -> str:
        return f"{self.task.label} × {self.optimizer.label} (seed {self.repetition})"


def plan(
    entries: Sequence[tuple[Spec, Budget, Sequence[Spec]]],
    seeds: int,
    device: str = "cpu",
) -> list[RunSpec]:
    """The cross product: for each (task, budget, optimizers) entry, every optimizer and
    repetition, in a stable order."""
    return [
        RunSpec(task, optimizer, r, budget, device)
        for task, budget, optimizers in entries
        for optimizer in optimizers
        for r in range(seeds)
    ]


def on_instances(runs: Sequence[RunSpec], key: InstanceKey | None) -> list[RunSpec]:
    """``runs`` on the secret instances of ``key`` (its HMAC of the public derivation's
    parts: task seed and evaluation key), or as they are for ``None`` (public)."""
    if key is None:
        return list(runs)
    return [replace(run, instances=SECRET, instance_key=key.id, secret_seeds=(
        key.seed("task", run.task.canonical, run.repetition),
        key.seed("eval", run.task.canonical, run.repetition))) for run in runs]


def execute(run: RunSpec, registry: Registry, results: Path | None = None,
            on_progress: Callable[[float], None] | None = None,
            timeout: float | None = None) -> Record:
    """Run one pair and return its record; never raises for a failure of the run itself.

    ``timeout``: the run's hard wall-clock limit in seconds (default: from its budget, see
    :func:`zgbench.watchdog.default_timeout`). A ``SystemExit`` or ``KeyboardInterrupt``
    raised by plugin code fails this run only; a real Ctrl-C still stops the caller."""
    task_entry = registry.task(run.task.name)
    opt_entry = registry.optimizer(run.optimizer.name)
    record = _skeleton(run, task_entry, opt_entry)
    t0 = time.perf_counter()
    seeds = record.seeds
    limit = watchdog.default_timeout(run.budget.seconds) if timeout is None else timeout
    warm_up_torch()  # the harness's own import time: before the run's clock and limit
    state: dict[str, Any] = {}  # what the run got to build (task, ledger, problem), for salvage
    started = time.perf_counter()
    try:  # the limit covers the whole run: building the components through their pictures
        with watchdog.guard(limit):
            _guarded(run, task_entry, opt_entry, record, seeds, results, on_progress, state)
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, KeyboardInterrupt) and watchdog.user_interrupted():
            raise  # a real Ctrl-C: stop zgbench, not just this run
        record.status, record.error = "failed", _exit_reason(exc) + "\n" + traceback.format_exc()
        _salvage(state.get("ledger"))
    except watchdog.RunTimeout as exc:  # raised off the main thread it carries no message
        reason = str(exc) or f"the run passed its hard wall-clock limit of {limit:g} s (--timeout)"
        record.status, record.error = "failed", f"{reason}\n{traceback.format_exc()}"
        _salvage(state.get("ledger"))
    except Exception:
        record.status, record.error = "failed", traceback.format_exc()
        _salvage(state.get("ledger"))
    reset_torch_state()
    ledger, problem, task = state.get("ledger"), state.get("problem"), state.get("task")
    if ledger is not None:
        _audit(record, ledger, problem)
    if task is not None:
        left = None if limit is None else max(limit - (time.perf_counter() - started), 1.0)
        _anchor(record, run, task, left)
    return _close(record, t0)


def _guarded(run: RunSpec, task_entry, opt_entry, record: Record, seeds: dict[str, int],
             results: Path | None, on_progress, state: dict[str, Any]) -> None:
    """The body of a run, under the watchdog: build the optimizer and ask it whether it can
    run here (``n/a`` if not, before the task is built: a skipped pair costs nothing), build
    the task, run, then draw the pictures. Sets ``record.status`` (``ok`` or ``n/a``); what
    it built goes into ``state`` so that a failure can still be salvaged and audited."""
    reset_torch_state()  # a default dtype an earlier run's plugin code set stays there
    optimizer = opt_entry.cls(seed=seeds["optimizer"], **run.optimizer.kwargs)
    reason = skip_reason(optimizer, task_entry.cls, run.task.kwargs)
    if reason:
        record.status, record.error = "n/a", reason
        return
    task = state["task"] = task_entry.cls(device=run.target_device, seed=seeds["task"],
                                          **run.task.kwargs)
    ledger = state["ledger"] = Ledger(task, run.budget, seeds["eval_key"])
    ledger.recommend_best = recommends_best(optimizer)
    problem = state["problem"] = Problem(task, run.budget, seed=seeds["problem"],
                                         eval_key=seeds["eval_key"], on_progress=on_progress,
                                         ledger=ledger)
    torch.manual_seed(seeds["optimizer"] % 2**63)  # for optimizers using the global RNG
    quiet_library_loggers()  # EvoTorch's per-generation INFO lines would flood the display
    problem.start()
    try:
        optimizer.run(problem)  # its return value is ignored: the ledger is the record
    except BudgetExhausted:
        pass
    finally:
        ledger.stop()
        reset_torch_state()  # the final checkpoint, pictures and anchors: torch's defaults
    ledger.detach()
    problem.finish()
    record.status = "ok"
    if results is not None:
        record.artifacts = _artifacts(task, ledger, results, record.run_id)


def _exit_reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"plugin code called sys.exit({exc.code!r}): this run failed, the others go on"
    return "plugin code raised KeyboardInterrupt (not a Ctrl-C): this run failed"


#: How the error of a run whose task broke its contract begins (the cause, then the traceback).
TASK_ERROR = "task error"


def _audit(record: Record, ledger: Ledger, problem: Problem | None) -> None:
    """The record's trajectory, final entry and audit come from the ledger alone; a run
    that broke its budget or tampered with the meter is ``violated``."""
    ledger.stop()
    ledger.detach()
    record.trajectory = trajectory = ledger.trajectory
    record.final = trajectory[-1] if trajectory else None
    record.audit = audit = ledger.audit(problem)
    if audit["violations"] and record.status != "n/a":
        reasons = "; ".join(audit["violations"])
        if record.error:
            reasons += "\n" + record.error
        record.status, record.error = "violated", reasons
    elif ledger.task_error is not None and record.status != "n/a":
        # the task broke (even where the optimizer caught the error and went on): its fault
        cause = ledger.task_error if not record.error else (
            ledger.task_error.splitlines()[0] + "\n" + record.error)
        record.status, record.error = "failed", f"{TASK_ERROR}: {cause}"


# ------------------------------------------------------------ start, sanity and reference
#: Version of the cached anchors' form: bump it to recompute every cached reference.
ANCHORS_VERSION = 1


def _anchor(record: Record, run: RunSpec, task, limit: float | None) -> None:
    """Put the instance's start, sanity and reference metrics into ``record``. After the
    run, with its ledger detached: outside its budget and its metered clock (``duration``,
    the record's wall time, includes it). The start is the zero-spend checkpoint's (it
    evaluated θ₀). A task whose sanity or reference raises, or takes longer than ``limit``
    (what is left of the run's hard limit, at least a second: a pool's driver kills a worker
    soon after that limit), keeps the run's result, with a warning and without sanity and
    reference; the next run of the instance tries again."""
    first = record.trajectory[0] if record.trajectory else None
    if first is not None and not (first["evals"] or first["grads"]):
        record.start = dict(first["metrics"])
    try:
        with watchdog.guard(limit):
            anchors = instance_anchors(task, run, record.start)
    except (Exception, watchdog.RunTimeout) as exc:
        warnings.warn(f"{run.task.label} (seed {run.repetition}): its sanity() or reference() "
                      f"failed, so this run's record has no reference: "
                      f"{type(exc).__name__}: {exc}", stacklevel=2)
        return
    if record.start is None and "start" in anchors["sanity"]:
        record.start = dict(anchors["sanity"]["start"])
    record.sanity, record.reference = anchors["sanity"], anchors["reference"]
    record.reference_note = anchors["note"]


def instance_anchors(task, run: RunSpec,
                     start: dict[str, float | None] | None = None) -> dict[str, Any]:
    """``{"sanity": {name: metrics}, "reference": metrics | None, "note": str}`` of the task
    instance, from the cache (``<cache root>/anchors``) or computed and stored there.

    Keyed by what fixes the instance and its reference: the canonical task spec, the task
    seed, the planned device and the source hash of the task's module with the helper modules
    of its package it imports (a changed task or helper recomputes; a change elsewhere, e.g.
    in a function-level import, needs a bump of :data:`ANCHORS_VERSION`). Writes are atomic, so two workers computing the same instance at
    once both write the same file and neither reads a partial one; a cache that cannot be
    written costs the computation again next time, not the anchors. ``start``: θ₀'s metrics
    if known, which stand for the default :meth:`Task.sanity` (no second evaluation)."""
    cls = type(task)
    name = cache.key({"task": run.task.canonical, "seed": run.seeds()["task"],
                      "device": run.device, "source": fingerprint.source_hash_with_helpers(cls),
                      "version": ANCHORS_VERSION}) + ".json"
    path = cache.root() / "anchors" / name  # atomic_write creates the folder
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    if start is not None and getattr(type(task), "sanity", None) is Task.sanity:
        sanity = {"start": dict(start)}
    else:
        with torch.no_grad():
            sanity = {str(name): _metrics(m) for name, m in task.sanity().items()}
    with torch.enable_grad():  # a first-order reference differentiates
        reference = task.reference()
    anchors = {"sanity": sanity, "reference": None if reference is None else _metrics(reference),
               "note": str(getattr(cls, "reference_note", "") or "")}
    try:
        atomic_write_text(path, json.dumps(anchors, sort_keys=True, allow_nan=False))
    except OSError as exc:  # a read-only or full cache costs time, not the anchors
        warnings.warn(f"could not cache the reference of {run.task.label} in {path.parent}: "
                      f"{exc}", stacklevel=2)
    return anchors


def _metrics(values: dict[str, Any]) -> dict[str, float | None]:
    """Metrics as JSON numbers (non-finite ones as null, as in trajectories)."""
    out = {}
    for name, value in values.items():
        number = float(value)
        out[str(name)] = number if math.isfinite(number) else None
    return out


@functools.cache
def warm_up_torch() -> None:
    """Import what the first ``torch.optim`` optimizer of a process imports (``torch._dynamo``,
    2-3 s) before a run's clock starts. Otherwise the first run of each process or worker
    pays it as optimizer time, and the same optimizer looks seconds slower there than in
    the runs after it."""
    import torch._dynamo  # noqa: F401


def _skeleton(run: RunSpec, task_entry, opt_entry) -> Record:
    tcls, ocls = task_entry.cls, opt_entry.cls
    identity = run.identity()
    return Record(
        run_id=run_id(identity),
        identity=identity,
        task={**run.task.as_dict(), "plugin": task_entry.plugin,
              "plugin_version": task_entry.version, "primary_metric": tcls.primary_metric,
              "metrics": dict(tcls.metrics), "provides": sorted(tcls.provides),
              "family": tcls.family},
        optimizer={**run.optimizer.as_dict(), "plugin": opt_entry.plugin,
                   "plugin_version": opt_entry.version, "requires": sorted(ocls.requires)},
        seeds=run.seeds(),
        instances=run.instances,
        instance_key=run.instance_key,
        environment=environment(torch.device(run.target_device)),
        code=fingerprint.code(tcls, ocls),
        started=now(),
    )


def failure_record(run: RunSpec, registry: Registry, error: str) -> Record:
    """The record of a run that died outside :func:`execute` (a worker process crashed, a
    cluster node was lost): status failed with ``error``, so it is retried on the next run."""
    record = _skeleton(run, registry.task(run.task.name), registry.optimizer(run.optimizer.name))
    t0 = time.perf_counter()
    record.status, record.error = "failed", error
    return _close(record, t0)


def _close(record: Record, t0: float) -> Record:
    record.finished = now()
    record.duration = time.perf_counter() - t0
    return record


def _salvage(ledger: Ledger | None) -> None:
    """After a failure, try to checkpoint where the run got to (best effort)."""
    if ledger is None or not ledger.trajectory:
        return
    ledger.stop()
    ledger.detach()
    try:
        with watchdog.guard(watchdog.SALVAGE):  # a task stuck in evaluate must not hang us
            ledger.final()
    except (Exception, watchdog.RunTimeout):
        pass


#: The final recommendation θ, stored (numpy, ``[dim]``) beside the pictures of a task that
#: draws its result: ``zgbench show --render`` draws it again from this file, whatever the task.
RECOMMENDATION = "recommendation.npy"
#: Largest θ stored (values): mesh and scene parameters, not the weights of a radiance cache
#: (152k values, 0.6 MB per run, which a results folder would carry for every seed).
RECOMMENDATION_MAX = 100_000


def _artifacts(task, ledger: Ledger, results: Path, rid: str) -> list[str]:
    """The task's pictures of the recommendation, and the recommendation itself where there
    are pictures (runs of tasks that draw nothing store nothing)."""
    folder = outputs.checked(results, results / "artifacts" / rid)
    theta = ledger.recommendation()

    def with_theta(tmp: Path, paths: list[Path]) -> list[Path]:
        if paths and theta.numel() <= RECOMMENDATION_MAX:
            np.save(tmp / RECOMMENDATION, theta.detach().cpu().numpy())
            paths.append(tmp / RECOMMENDATION)
        return paths

    # drawn into a temporary folder and moved into place whole (a full disk: no half picture)
    paths = outputs.task_pictures(lambda where: task.artifacts(theta, where), folder, with_theta)
    return [str(p.resolve().relative_to(results.resolve())) for p in paths]


@dataclass
class Summary:
    """Counts for the closing line of ``zgbench run``."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    na: int = 0
    failures: list[str] = field(default_factory=list)
    #: Finished runs whose task or optimizer source changed since (redone with rerun_stale).
    stale: list[RunSpec] = field(default_factory=list)
    #: Finished runs whose record predates the code fingerprint: freshness unknown.
    unknown: int = 0
    #: Runs left to another driver on the same results folder (it held their claim).
    elsewhere: int = 0

    def line(self) -> str:
        text = (f"{self.total} runs: {self.done} done, {self.skipped} skipped "
                f"(already finished), {self.failed} failed")
        text += f", {self.na} n/a (incompatible)" if self.na else ""
        return text + (f", {self.elsewhere} left to another zgbench run on this folder"
                       if self.elsewhere else "")


def run_all(runs: Iterable[RunSpec], registry: Registry, results: Path, executor,
            reporter=None, rerun_stale: bool = False) -> Summary:
    """Run every planned run not already finished in ``results``; store each record.

    A finished run whose task or optimizer source differs from the current code (its
    record's ``code``) is stale: it is kept, with one
    :class:`~zgbench.fingerprint.StaleWarning` for all of them, unless ``rerun_stale``, which
    redoes those (the new record replaces the old one atomically). Records without ``code`` (written before it existed) count as unknown: one
    warning says so, and they are redone only with ``rerun_stale``, which asks for every run
    not known to match the current code.

    Each run is claimed just before it starts (:meth:`ResultStore.claim`, a lock per run id):
    a run another driver on the same folder holds is left to it (``Summary.elsewhere``), one
    it finished since the plan is skipped, so two drivers split the work and never repeat it.
    Finished runs of another canonical spec under a planned optimizer's label on the same
    task are warned about (:class:`zgbench.boards.OrphanedSpecWarning`)."""
    from zgbench.store import ResultStore

    store = ResultStore(results)
    runs = list(runs)
    summary = Summary(total=len(runs))
    todo = []
    seen: dict[str, dict[str, Any] | None] = {}  # each run's record as planned
    for run in runs:
        record = seen[run.run_id] = store.get(run.run_id)
        if record is None or record.get("status") not in ("ok", "n/a"):
            todo.append(run)
            continue
        fresh = freshness(run, record, registry)
        if fresh == "unknown":
            summary.unknown += 1
        elif fresh == "stale":
            summary.stale.append(run)
        if rerun_stale and fresh != "fresh":
            todo.append(run)
        else:
            summary.skipped += 1
    _warn_stale(summary, rerun_stale)
    _warn_orphans(store, runs)
    if reporter:
        reporter.begin(len(runs), summary.skipped)
    claims: dict[str, Any] = {}
    admit = functools.partial(_admit, store, claims, seen, summary)
    stream = executor.map(todo, registry, results, reporter, admit=admit)
    try:
        for run, record in stream:
            store.put(record)
            claims.pop(run.run_id).release()
            _count(summary, run, record)
            _notify(registry, record)
            if reporter:
                reporter.advance(run, record)
    finally:  # on Ctrl-C or an error, let the executor stop its workers now
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        for lock in claims.values():
            lock.release()
    if reporter:
        reporter.end()
    return summary


def _admit(store, claims: dict[str, Any], seen: dict[str, dict[str, Any] | None],
           summary: Summary, run: RunSpec) -> bool:
    """Claim ``run`` just before it starts (:meth:`~zgbench.store.ResultStore.claim`): False
    if another driver holds its claim (left to it) or stored a finished record of it since
    this driver planned (skipped); True with the claim held until its record is stored."""
    lock = store.claim(run.run_id)
    if lock is None:
        summary.elsewhere += 1
        return False
    record = store.get(run.run_id)
    if record != seen[run.run_id] and record is not None and record.get("status") in ("ok",
                                                                                       "n/a"):
        lock.release()  # another driver finished it meanwhile
        summary.skipped += 1
        return False
    claims[run.run_id] = lock
    return True


def freshness(run: RunSpec, record: dict[str, Any], registry: Registry) -> str:
    """``"fresh"``, ``"stale"`` (the task's or the optimizer's source hash differs from the
    current code's) or ``"unknown"`` (the record has no code fingerprint to compare)."""
    code = record.get("code") or {}
    if "task" not in code or "optimizer" not in code:
        return "unknown"
    now_task = fingerprint.source_hash(registry.task(run.task.name).cls)
    now_opt = fingerprint.source_hash(registry.optimizer(run.optimizer.name).cls)
    return "fresh" if (code["task"], code["optimizer"]) == (now_task, now_opt) else "stale"


def _warn_stale(summary: Summary, rerun_stale: bool) -> None:
    if summary.stale:
        pairs = sorted({f"{r.task.label} × {r.optimizer.label}" for r in summary.stale})
        n = len(summary.stale)
        action = ("rerunning them (--rerun-stale)" if rerun_stale else
                  "their results were kept; rerun them with --rerun-stale")
        warnings.warn(f"{n} finished run{'s' if n > 1 else ''} ran an older version of the "
                      f"task or optimizer code than the current one ({', '.join(pairs)}): "
                      f"{action}.", fingerprint.StaleWarning, stacklevel=3)
    if summary.unknown:
        n = summary.unknown
        action = ("rerunning them (--rerun-stale)" if rerun_stale else
                  "they were kept; --rerun-stale reruns them too")
        warnings.warn(f"{n} finished run{'s' if n > 1 else ''} predate{'' if n > 1 else 's'} "
                      f"the code fingerprint, so whether their code changed is unknown: "
                      f"{action}.", fingerprint.StaleWarning, stacklevel=3)


def _warn_orphans(store, runs: list[RunSpec]) -> None:
    """Warn once about finished runs of another canonical spec under the label of a planned
    optimizer on the same task (its parameters changed since they ran): the boards count one
    spec per label and leave those out (:func:`zgbench.boards.one_spec_per_label`)."""
    from zgbench.boards import OrphanedSpecWarning

    planned: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        planned.setdefault((run.task.canonical, run.optimizer.label), set()).add(
            run.optimizer.canonical)
    orphans: dict[str, int] = {}
    for record in store:
        task, optimizer = record["task"], record["optimizer"]
        forms = planned.get((task.get("canonical"), optimizer.get("label")))
        if forms is not None and optimizer.get("canonical") not in forms:
            key = f"{task.get('label')} × {optimizer.get('canonical')}"
            orphans[key] = orphans.get(key, 0) + 1
    if orphans:
        n = sum(orphans.values())
        warnings.warn(f"{n} run{'s' if n > 1 else ''} in {store.root} ran another spec under "
                      f"the label of a planned optimizer ({', '.join(sorted(orphans))}): its "
                      "parameters changed since. The boards count the planned spec only and "
                      "list the others in leaderboard/left_out.csv; delete their records to "
                      "drop them.", OrphanedSpecWarning, stacklevel=3)


def _count(summary: Summary, run: RunSpec, record: Record) -> None:
    if record.status == "ok":
        summary.done += 1
    elif record.status == "n/a":
        summary.na += 1
    else:
        summary.failed += 1
        last = (record.error or "").strip().splitlines()[-1:] or ["unknown error"]
        summary.failures.append(f"{run.describe()}: {last[0]}")


def _notify(registry: Registry, record: Record) -> None:
    try:  # the hook's contract is the JSON-compatible dict (zgbench.hookspecs)
        registry.manager.hook.zgbench_run_finished(record=record.as_dict())
    except (Exception, SystemExit) as exc:  # a logging plugin must never stop the benchmark
        warnings.warn(f"zgbench_run_finished hook failed: {type(exc).__name__}: {exc}")
