"""The record of one run: its identity, environment, trajectory and outcome.

Schema version 1 (a JSON object; bump :data:`SCHEMA` on any incompatible change)::

    schema        1
    run_id        hash of "identity" (hex, 16 chars)
    identity      {task: canonical spec, optimizer: canonical spec, seed: repetition,
                   budget: {evals, grads, steps, seconds}, device, zgbench: version}
    task          {name, label, canonical, params, plugin, plugin_version,
                   primary_metric, metrics: {name: "min"|"max"}, provides}
    optimizer     {name, label, canonical, params, plugin, plugin_version, requires}
    seeds         {task, optimizer, problem, eval_key}: the derived seeds actually used
    status        "ok" | "failed" | "violated" | "n/a"; "violated": the run broke its budget
                   or tampered with the meter (ranked as a failure, like "failed")
    error         null, or the traceback text of a failed run (for a timeout, an exit or a
                   killed worker: the cause first); for "n/a" the reason; for "violated" the
                   violations, one per clause, then any traceback
    environment   {hostname, platform, python, torch, zgbench, device_name}
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
                   itself because the problem's counters or clock were changed; violations:
                   [reason, ...], non-empty exactly when status is "violated"}

Trajectory, final and audit are the harness's: the final entry is its own evaluation of the
recommendation after ``run`` returned. Non-finite numbers are stored as null. Schema 1 gained
"violated" and "audit" compatibly: code reading records treats every status other than "ok"
and "n/a" as a failure and an absent audit as unknown.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from datetime import datetime, timezone
from typing import Any

import torch

import zgbench

SCHEMA = 1


def run_id(identity: dict[str, Any]) -> str:
    """A stable hash of a run's identity: equal identities resume each other."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def environment(device: torch.device) -> dict[str, Any]:
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
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
