"""Export a results folder to the data formats of the field's analysis tools: COCO's
(``cocopp``: ``.info`` index, ``.dat`` and ``.tdat`` files) and IOHprofiler's (``ioh``'s
Analyzer logger: a ``.json`` per function and algorithm, ``.dat`` files), so that runs
measured here can be put beside published COCO / IOHanalyzer data.

Mapping (the same for both formats; ``tasks.csv`` in the output folder records it):

- a **function** is a task (its canonical spec), numbered 1, 2, ... in sorted order; its
  ``DIM`` is the task's ``dim`` parameter where it has one, else 1; an **algorithm** is an
  optimizer name, one folder each; an **instance** is a repetition (repetition + 1).
- the **evaluation count** is one spend axis, chosen with ``axis`` (loss evaluations by
  default, or gradient evaluations, or steps): never a sum of gradients and evaluations.
  Optimizers that spend nothing on the chosen axis are left out (and named).
- one row per checkpoint of the run's trajectory (log-spaced in the budget), the held-out
  primary metric of the recommendation at that checkpoint. Both formats count from 1 (COCO's
  loggers always record the first evaluation; iohinspector starts a run at the row counting
  1): the zero-spend checkpoint (θ₀) is written as evaluation 1, and where several
  checkpoints share a count only the last is kept.
- COCO minimises ``f - fopt >= 0``: the exported value is the oriented gap to ``fopt`` =
  the better of the task's reference (median over instances) and the best value any run
  reached, so every gap is >= 0 and COCO's targets (1e-8 ...) mean "as good as the best
  known". IOHprofiler takes the metric as it is (``raw_y``) with ``maximization`` set from the
  metric's direction.
- only finished runs (status ok) are exported: a failed run has no final value to report
  (the boards count it as the worst); the COCO comment line and ``tasks.csv`` count them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zgbench import stats
from zgbench.errors import UsageError
from zgbench.record import repetition

FORMATS = ("coco", "ioh")
#: Spend axes an export can count (integers, as both formats' evaluation counts are).
AXES = ("evals", "grads", "steps")
#: The suite name written to COCO's index files: cocopp knows a fixed list of suites, and
#: "bbob" (single-objective, noiseless) is the one whose layout these files follow.
COCO_SUITE = "bbob"


@dataclass
class Function:
    """One task as an exported function."""

    fid: int
    canonical: str
    label: str
    name: str  # file-name-safe
    metric: str
    direction: str
    dim: int
    fopt: float  # oriented (lower is better): the COCO gap is oriented value - fopt
    failed: int  # runs left out (not ok)


def functions(records: list[dict[str, Any]]) -> dict[str, Function]:
    """The exported functions by task canonical spec (module docstring)."""
    from zgbench.leaderboard import slug

    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"]["canonical"], []).append(r)
    out = {}
    for fid, (canonical, group) in enumerate(sorted(by_task.items()), start=1):
        task = group[0]["task"]
        metric = task["primary_metric"]
        direction = task["metrics"][metric]
        ok = [r for r in group if r.get("status") == "ok"]
        best = stats.best_known(ok)
        references = [(r.get("reference") or {}).get(metric) for r in group]
        references = [float(v) for v in references if v is not None and math.isfinite(v)]
        if references:
            best = min(best, float(stats.oriented(np.median(references), direction)))
        dim = task.get("params", {}).get("dim")
        out[canonical] = Function(
            fid, canonical, task["label"], slug(task["label"]), metric, direction,
            int(dim) if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else 1,
            best, sum(r.get("status") not in ("ok", "n/a") for r in group))
    return out


def _series(record: dict[str, Any], function: Function, axis: str
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A run's (spend on ``axis``, metric value, every counter) at each checkpoint; a
    missing metric is NaN (a checkpoint whose recommendation could not be evaluated).

    Both formats count evaluations from 1 and start a new run at the row counting 1
    (iohinspector splits runs there): zero-spend checkpoints count as the first evaluation,
    and of checkpoints with equal counts only the last is kept (the value after them)."""
    trajectory = record.get("trajectory") or []
    counters = {a: np.array([float(p.get(a) or 0.0) for p in trajectory])
                for a in (*AXES, "seconds")}
    values = [(p.get("metrics") or {}).get(function.metric) for p in trajectory]
    y = np.array([math.nan if v is None else float(v) for v in values])
    spend = np.maximum(np.round(counters[axis]), 1.0)  # the first evaluation is 1
    last = np.append(spend[1:] != spend[:-1], True)  # the last checkpoint of each count
    return spend[last], y[last], {a: c[last] for a, c in counters.items()}


def _runs(records: Iterable[dict[str, Any]], axis: str) -> tuple[dict[str, list[dict]], list[str]]:
    """The exported runs by optimizer name (ok, with a trajectory) and the names left out
    because they spend nothing on ``axis``."""
    by_opt: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("trajectory"):
            by_opt.setdefault(r["optimizer"].get("name", r["optimizer"]["label"]), []).append(r)
    skipped = sorted(name for name, runs in by_opt.items()
                     if not any(float(p.get(axis) or 0) > 0 for r in runs
                                for p in r["trajectory"]))
    return {n: sorted(rs, key=repetition) for n, rs in by_opt.items() if n not in skipped}, skipped


# ----------------------------------------------------------------------------- COCO
def _coco_rows(record: dict[str, Any], function: Function, axis: str) -> np.ndarray:
    """COCO's columns per checkpoint: evaluations | f - fopt | best f - fopt | measured f |
    best measured f (oriented gaps; a NaN metric is an infinite gap)."""
    spend, y, _ = _series(record, function, axis)
    gap = stats.oriented(y, function.direction) - function.fopt
    gap = np.where(np.isnan(gap), math.inf, np.maximum(gap, 0.0))
    best = np.minimum.accumulate(gap)
    return np.column_stack([spend, gap, best, gap, best])


def _coco_lines(rows: np.ndarray, function: Function, instance: int) -> list[str]:
    header = (f"% function evaluation | noise-free fitness - Fopt ({function.fopt:.15e}) | "
              f"best noise-free fitness - Fopt | measured fitness | best measured fitness, "
              f"instance = {instance}")
    body = [f"{int(e)} {f:.10e} {b:.10e} {m:.10e} {bm:.10e}" for e, f, b, m, bm in rows]
    return [header, *body]


def write_coco(records: list[dict[str, Any]], out: str | Path, axis: str = "evals"
               ) -> dict[str, Any]:
    """COCO's format under ``out``: per optimizer a folder with ``bbobexp_f<fid>.info`` and
    ``data_f<fid>/bbobexp_f<fid>_DIM<dim>.dat`` / ``.tdat`` (read by ``cocopp.load``)."""
    from zgbench.leaderboard import slug

    out = Path(out)
    funcs = functions(records)
    runs, skipped = _runs(records, axis)
    for name, folder, f, task_runs in _groups(runs, funcs, out):
        stem = f"data_f{f.fid}/bbobexp_f{f.fid}_DIM{f.dim}"
        lines, entries = [], []
        for r in task_runs:
            rows = _coco_rows(r, f, axis)
            lines += _coco_lines(rows, f, repetition(r) + 1)
            entries.append(f"{repetition(r) + 1}:{int(rows[-1, 0])}|{rows[-1, 2]:.1e}")
        (folder / f"data_f{f.fid}").mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        (folder / f"{stem}.dat").write_text(text)
        (folder / f"{stem}.tdat").write_text(text)
        header = (f"suite = '{COCO_SUITE}', funcId = {f.fid}, DIM = {f.dim}, "
                  f"Precision = 1.000e-08, algId = '{name}', coco_version = 'zgbench', "
                  f"logger = 'bbob', data_format = 'bbob-old'")
        comment = (f"% zgbench task {f.canonical}; metric {f.metric} ({f.direction}), "
                   f"exported as the gap to fopt {f.fopt:.6g} (oriented); evaluations = "
                   f"{axis}; failed runs left out: {f.failed}")
        with open(folder / f"bbobexp_f{f.fid}.info", "a") as info:
            info.write(f"{header}\n{comment}\n{stem}.dat, {', '.join(entries)}\n")
    _write_tasks(out, funcs, axis)
    folders = [out / slug(name) for name in sorted(runs)]
    return {"folders": folders, "skipped": skipped, "functions": funcs}


def _groups(runs: dict[str, list[dict[str, Any]]], funcs: dict[str, Any], out: Path):
    """(optimizer name, its folder under ``out``, function, its runs on that function) for
    every optimizer and task, in a stable order: the layout both formats share."""
    from zgbench.leaderboard import slug

    for name, records in sorted(runs.items()):
        by_task: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_task.setdefault(r["task"]["canonical"], []).append(r)
        for canonical, task_runs in sorted(by_task.items()):
            yield name, out / slug(name), funcs[canonical], task_runs


# ----------------------------------------------------------------------------- IOHprofiler
def write_ioh(records: list[dict[str, Any]], out: str | Path, axis: str = "evals"
              ) -> dict[str, Any]:
    """IOHprofiler's format under ``out``: per optimizer a folder with
    ``IOHprofiler_f<fid>_<name>.json`` and ``data_f<fid>_<name>/IOHprofiler_f<fid>_DIM<dim>.dat``
    (columns: evaluations, raw_y, then the other counters), as ``ioh``'s Analyzer writes."""
    from zgbench import __version__
    from zgbench.leaderboard import slug

    out = Path(out)
    funcs = functions(records)
    runs, skipped = _runs(records, axis)
    others = [a for a in (*AXES, "seconds") if a != axis]
    for name, folder, f, task_runs in _groups(runs, funcs, out):
        data = f"data_f{f.fid}_{f.name}/IOHprofiler_f{f.fid}_DIM{f.dim}.dat"
        lines, meta = [], []
        for r in task_runs:
            spend, y, counters = _series(r, f, axis)
            lines.append(" ".join(["evaluations", "raw_y", *others]))
            for i in range(len(y)):
                lines.append(" ".join([str(int(round(spend[i]))), _num(y[i]),
                                       *(_num(counters[a][i]) for a in others)]))
            meta.append(_ioh_run(repetition(r) + 1, spend, y, f.direction))
        (folder / data).parent.mkdir(parents=True, exist_ok=True)
        (folder / data).write_text("\n".join(lines) + "\n")
        index = {"version": __version__, "suite": "zgbench", "function_id": f.fid,
                 "function_name": f.name, "maximization": f.direction == "max",
                 "algorithm": {"name": name, "info": f"zgbench task {f.canonical}; "
                                                     f"raw_y = {f.metric}; evaluations = "
                                                     f"{axis}"},
                 "attributes": ["evaluations", "raw_y", *others],
                 "scenarios": [{"dimension": f.dim, "path": data, "runs": meta}]}
        (folder / f"IOHprofiler_f{f.fid}_{f.name}.json").write_text(
            json.dumps(index, indent=1))
    _write_tasks(out, funcs, axis)
    folders = [out / slug(name) for name in sorted(runs)]
    return {"folders": folders, "skipped": skipped, "functions": funcs}


def _ioh_run(instance: int, spend: np.ndarray, y: np.ndarray, direction: str) -> dict[str, Any]:
    """A run's entry in the json index: its spend and its best checkpoint (no x: records do
    not keep the recommendation's parameters)."""
    oriented = np.where(np.isnan(y), math.inf, stats.oriented(y, direction))
    best = int(np.argmin(oriented))
    return {"instance": instance, "evals": int(round(spend[-1])),
            "best": {"evals": int(round(spend[best])), "y": _finite(y[best]), "x": []}}


def _num(value: float) -> str:
    return "nan" if not math.isfinite(value) else repr(float(value))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _write_tasks(out: Path, funcs: dict[str, Function], axis: str) -> None:
    frame = pd.DataFrame([{"fid": f.fid, "task": f.label, "canonical": f.canonical,
                           "metric": f.metric, "direction": f.direction, "dim": f.dim,
                           "fopt_oriented": f.fopt, "failed_runs_left_out": f.failed,
                           "evaluations_axis": axis} for f in funcs.values()])
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "tasks.csv", index=False)


def export(results: str | Path, out: str | Path, fmt: str, axis: str = "evals"
           ) -> dict[str, Any]:
    """Export the records under ``results`` in ``fmt`` (``coco`` or ``ioh``) to ``out``,
    which must not hold a previous export (COCO's index files are appended to)."""
    from zgbench.store import ResultStore

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: give one of {', '.join(FORMATS)}.")
    if axis not in AXES:
        raise UsageError(f"--axis {axis!r}: give one of {', '.join(AXES)} (evaluation "
                         "counts are integers; seconds are not one).")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty: give a new folder for the export (-o), or "
                         "remove the previous export.")
    records = [r for r in ResultStore(results) if r.get("status") != "n/a"]
    if not records:
        raise UsageError(f"no run records under {Path(results) / 'runs'}: run `zgbench run "
                         f"--out {results}` first.")
    return (write_coco if fmt == "coco" else write_ioh)(records, out, axis)
