"""The record of one run: its identity, environment, trajectory and outcome.

A :class:`Record` is a typed dataclass; on disk (and to the ``zgbench_run_finished`` hook and
``zgbench.testing.run_once``) it is the JSON object :meth:`Record.as_dict` returns. Readers
that still index dicts get records of the current schema from the store, which migrates older
ones on read (:func:`migrate`).

Schema version 2 (a JSON object; bump :data:`SCHEMA` on any incompatible change)::

    schema        2
    run_id        hash of "identity" in its schema-1 form (hex, 16 chars): see :func:`run_id`
    identity      {task: canonical spec, optimizer: canonical spec, repetition: the repetition
                   index 0, 1, ..., budget: {evals, grads, steps, seconds}, device,
                   zgbench: version}
    task          {name, label, canonical, params, plugin, plugin_version,
                   primary_metric, metrics: {name: "min"|"max"}, provides, family}
    optimizer     {name, label, canonical, params, plugin, plugin_version, requires}
    seeds         {task, optimizer, problem, eval_key}: the derived seeds actually used (on
                   secret instances the task seed and eval_key are the secret ones: share
                   such records only once their key is retired)
    instances     "public" | "secret" (absent in records written before it existed: public):
                   the instance set, i.e. whether task seeds were salted with the
                   organizer's key (zgbench run --instances secret; zgbench.seeding); a
                   secret run's identity carries "instances": "secret:<key id>" (public
                   identities have no such key, so their run ids are unchanged)
    instance_key  (secret runs only) the public id of the key (12 hex chars): runs on one
                   key's instances share it; boards rank one instance set
    status        "ok" | "failed" | "violated" | "n/a"; "violated": the run broke its budget
                   or tampered with the meter (ranked as a failure, like "failed")
    error         null, or the traceback text of a failed run (for a timeout, an exit or a
                   killed worker: the cause first; where the task broke its contract, it
                   begins "task error: " and names what the task did wrong); for "n/a" the reason; for "violated" the
                   violations, one per clause, then any traceback
    environment   {hostname, platform, python, torch, zgbench, device_name, cpu_model,
                   cpu_cores, memory_gib, pycma, nevergrad, mitsuba, phiflow (versions, null:
                   not installed)}
    code          (absent in records written before it existed) the code that ran:
                   {zgbench: version, git: `git describe --always --dirty` of the checkout
                   zgbench runs from (absent when it is not a git checkout), task, optimizer:
                   short sha256 of the source file of the module defining each class}. Not
                   part of the identity: ``zgbench run`` warns about finished runs whose
                   task or optimizer source changed and redoes them with --rerun-stale
    started, finished   ISO 8601 UTC times; duration seconds
    trajectory    [{evals, grads, steps, seconds, task_seconds, optimizer_seconds,
                    best_loss, current_loss, metrics: {...}}, ...] at log-spaced
                   fractions of the budget, the first at zero spend, the last at the end
    final         the last trajectory entry (or null if the run failed before starting)
    artifacts     paths (relative to the results folder) of pictures the task wrote
    audit         (absent in records of runs that never built their task, and in records
                   written before it existed) what the harness's ledger saw
                   (zgbench.meter): {evals_performed, evals_charged, grads_performed,
                   grads_charged, steps_performed, steps_charged: what the task evaluated vs
                   what the optimizer-facing problem charged; declared_evals, declared_grads:
                   charges declared by problem.call; capability_calls: {name: calls};
                   direct_calls: loss/grad calls that reached the task instance itself (metered
                   all the same); seconds_wall: from start to the end of run(), checkpoints
                   included; seconds_ledger: the ledger's charged time; seconds_charged: the
                   problem's; budget_exceeded: the task performed more than the budget (or ran
                   past the time budget beyond the slack); refused_calls: calls the ledger cut
                   itself because the problem's counters or clock were changed;
                   failed_evals, failed_grads: (absent in older records) evaluations in
                   calls the task broke (it raised or returned a wrong result), performed
                   but never charged; late_reports: (absent in older records) reports
                   taken after the step or time budget ran out (no step counted); violations:
                   [reason, ...], non-empty exactly when status is "violated"}
    start         (absent in records written before it existed, and in runs that failed
                   before their first checkpoint with no sanity metrics) the held-out metrics
                   of the task instance's start θ₀: the zero-spend checkpoint's
    sanity        (absent as for start) {name: metrics} of the instance's trivial outputs
                   (``Task.sanity``: "start", "empty image", "constant class", ...)
    reference     (absent as for start; null where the task has none) the held-out metrics
                   of the instance's reference solution (``Task.reference``: what a
                   first-order method reaches, else the best known); computed once per task
                   instance, outside every run's budget, and cached
    reference_note  (present with reference) what the reference is, in words ("" if none)

Readers of records without start take the first trajectory entry's metrics (the zero-spend
checkpoint evaluates θ₀), and treat absent sanity and reference as unknown.

Trajectory, final and audit are the harness's: the final entry is its own evaluation of the
recommendation after ``run`` returned. Non-finite numbers are stored as null, wherever they
are (parameters cannot be non-finite: zgbench.params refuses them). Code reading
records treats every status other than "ok" and "n/a" as a failure and an absent audit or
code as unknown.

Schema 1 (records written before the Record dataclass) differs only in the identity: its
``seed`` key held the repetition index (never a random seed; those are under ``seeds``).
:func:`migrate` renames it, and the run id hashes that form, so schema-1 results folders
still resume, rank and compare.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import zgbench

if TYPE_CHECKING:  # typing has NotRequired from Python 3.11; annotations are not evaluated here
    import torch
    from typing_extensions import NotRequired

#: The schema records are written in.
SCHEMA = 2
#: The schemas the store reads (older ones are migrated on read, see :func:`migrate`).
READABLE = (1, 2)

Status = Literal["ok", "failed", "violated", "n/a"]


class Identity(TypedDict):
    """What makes two runs the same run (hashed into the run id)."""

    task: str
    optimizer: str
    repetition: int
    budget: dict[str, float | None]
    device: str
    zgbench: str
    #: Only on secret instances: ``"secret:<key id>"``.
    instances: NotRequired[str]


class Code(TypedDict, total=False):
    """The code that ran a run (see :mod:`zgbench.fingerprint`); every key may be absent."""

    zgbench: str
    git: str
    task: str
    optimizer: str


@dataclass
class Record:
    """One run's record; :meth:`as_dict` is its JSON form (the module docstring's schema)."""

    run_id: str
    identity: Identity
    task: dict[str, Any]
    optimizer: dict[str, Any]
    seeds: dict[str, int] = field(default_factory=dict)
    #: ``"public"`` or ``"secret"`` (:mod:`zgbench.seeding`); older records: public.
    instances: str = "public"
    #: The public id of the key of secret instances; ``None`` on public ones.
    instance_key: str | None = None
    #: ``None`` only while the harness is still running it.
    status: Status | None = None
    error: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    code: Code | None = None
    started: str = ""
    finished: str = ""
    duration: float = 0.0
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    artifacts: list[str] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    #: Held-out metrics of θ₀ (the zero-spend checkpoint's); ``None``: unknown.
    start: dict[str, float | None] | None = None
    #: ``Task.sanity()`` of the instance; ``None``: not computed.
    sanity: dict[str, dict[str, float | None]] | None = None
    #: ``Task.reference()`` of the instance (``None`` also where the task has none).
    reference: dict[str, float | None] | None = None
    #: ``Task.reference_note``; ``None``: sanity and reference were not computed.
    reference_note: str | None = None
    schema: int = SCHEMA

    def as_dict(self) -> dict[str, Any]:
        """The JSON object stored on disk; ``audit``, ``code``, ``start`` and ``sanity`` are
        left out when unknown, as records without them have always been written, and
        ``reference`` with its note when they were not computed (a null reference with a
        note means the task has none)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("audit", "code", "start", "sanity", "instance_key"):
            if data[optional] is None:
                del data[optional]
        if data["reference_note"] is None:
            del data["reference"], data["reference_note"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A record from its JSON object, of any schema in :data:`READABLE` (migrated);
        keys this version does not know are dropped."""
        data = migrate(data)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def repetition(self) -> int:
        return int(self.identity["repetition"])


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record's JSON object in the current schema (a new dict; ``data`` is unchanged).

    Schema 1 -> 2: the identity's ``seed`` (the repetition index) becomes ``repetition``.
    """
    data = dict(data)
    if data.get("schema") == 1:
        identity = dict(data.get("identity") or {})
        if "seed" in identity:
            identity["repetition"] = identity.pop("seed")
        data.update(identity=identity, schema=SCHEMA)
    return data


def start_metrics(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The held-out metrics of a record's start θ₀: its ``start``, else (records written
    before it existed) its zero-spend checkpoint's; ``None`` if neither is there."""
    start = record.get("start")
    if isinstance(start, Mapping):
        return dict(start)
    trajectory = record.get("trajectory") or []
    first = trajectory[0] if trajectory else None
    if isinstance(first, Mapping) and not (first.get("evals") or first.get("grads")):
        return dict(first.get("metrics") or {})
    return None


def repetition(record: Mapping[str, Any]) -> int:
    """The repetition index of a record's JSON object, of either schema (a record built in
    memory, e.g. by a test or a hook, may not have come through the store's migration)."""
    identity = record["identity"]
    return int(identity["repetition"] if "repetition" in identity else identity["seed"])


def run_id(identity: Mapping[str, Any]) -> str:
    """A stable hash of a run's identity: equal identities resume each other.

    The identity is hashed in its schema-1 form (``repetition`` spelled ``seed``): schema 2
    only renamed that key, and hashing the new spelling would give every finished run a new
    id, so a results folder written before the rename would be redone from scratch instead
    of resumed.
    """
    legacy = {("seed" if key == "repetition" else key): value for key, value in identity.items()}
    text = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


#: Libraries whose version moves results, by distribution name -> the record's key.
LIBRARIES = {"cma": "pycma", "nevergrad": "nevergrad", "mitsuba": "mitsuba",
             "phiflow": "phiflow"}


def environment(device: torch.device) -> dict[str, Any]:
    """The machine and versions a run ran on (``machine.json`` lists the distinct ones): CPU
    model, cores and memory, and the versions of torch and of the libraries that move results
    (pycma, Nevergrad, Mitsuba, PhiFlow; None where not installed)."""
    import torch  # here, not at the top: reading records (store, leaderboard) needs no torch

    name = platform.processor() or platform.machine()
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "zgbench": zgbench.__version__,
        "device_name": name,
        **_machine(),
    }


@functools.lru_cache(maxsize=1)
def _machine() -> dict[str, Any]:
    """What does not change within a process: read once (the versions from the installed
    distributions' metadata, importlib.metadata, so no library is imported for it)."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, Any] = {}
    for dist, key in LIBRARIES.items():
        try:
            versions[key] = version(dist)
        except PackageNotFoundError:
            versions[key] = None
    return {"cpu_model": _cpu_model(), "cpu_cores": os.cpu_count(),
            "memory_gib": _memory_gib(), **versions}


def _cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux; ``platform.processor()``, often
    just the architecture, elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    """Physical memory in GiB (POSIX sysconf), None where the system does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
