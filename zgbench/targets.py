"""Fixed-target analysis, as COCO and IOHprofiler do it: runtimes to targets, aRT with
success counts, and ECDFs of runtimes over runs x targets per task and per family.

Why: a board ranks final values at one budget; the field also asks how much it *costs* to
get somewhere. Fixed-target runtimes answer that on every budget at once, and the ECDF over
many targets aggregates tasks whose metrics share no unit.

- **Targets** (per task, on its primary metric, in its direction): :data:`N_TARGETS`
  log-spaced between the task's start and its reference (the boards' anchors: medians over
  the task's instances of θ₀'s value and of ``Task.reference``). With the gap
  ``g0 = start - reference`` (oriented: lower is better), target ``k = 1 .. N`` is
  ``reference + g0 * 10^(-DECADES * k / N)``: the first closes 30% of the gap, the last
  leaves 1e-8 of it (COCO's 51 targets span 10 decades down to its final precision 1e-8;
  here they span :data:`DECADES` decades of the start's gap). A task without a reference,
  or whose reference is not better than its start, has no targets (``tasks.csv`` says why).
- **Runtime** of a run to a target, on each axis separately (loss evaluations, gradient
  evaluations, steps, charged seconds; gradients and evaluations are never added): the spend
  at the first checkpoint of its trajectory whose primary metric reaches the target (<= for
  "min", >= for "max"); infinite where none does. Checkpoints are log-spaced fractions of
  the budget, so a runtime is the spend at the checkpoint that first shows the target, an
  upper bound on the true first hit. A failed run (any status but ok and n/a) reaches no
  target, as it counts as the worst value on the boards; n/a pairs are left out.
- **aRT** (COCO's average runtime, also ERT; Hansen et al., "COCO: performance assessment",
  Evol. Comput. 2022): per optimizer and target, the spend summed over all its runs, each
  run counted until it reached the target or, unsuccessful, until its end, divided by the
  number of successful runs; infinite without success. Written with the success count.
- **ECDF**: the fraction of (run, target) pairs reached by each spend; per family, every task
  weighs the same (:func:`zgbench.stats.ecdf`).

:func:`write` writes ``targets/`` under a leaderboard folder: ``tasks.csv`` (targets per
task, or why none), ``runtimes.csv`` (every run's runtime to every target), ``art.csv``,
``ecdf.csv``, and ``<task>.png`` / ``family_<family>.png`` (ECDFs and aRT per axis).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zgbench import outputs, stats
from zgbench.record import repetition, start_metrics

#: The spend axes a runtime is measured on, each on its own (the trajectory's counters).
AXES = ("evals", "grads", "steps", "seconds")
AXIS_LABELS = {"evals": "loss evaluations", "grads": "gradient evaluations",
               "steps": "optimizer steps", "seconds": "charged seconds"}
#: Targets per task (COCO's number).
N_TARGETS = 51
#: Decades of the start's gap to the reference that the targets span.
DECADES = 8.0
#: The folder under a leaderboard folder that holds these files.
FOLDER = "targets"


@dataclass
class TaskRuntimes:
    """The runtimes of one task's runs to its targets."""

    task: str  # label
    task_id: str  # canonical spec
    family: str
    metric: str
    direction: str
    start: float
    reference: float
    targets: np.ndarray  # [T], in the metric's own units, easiest first
    runs: pd.DataFrame  # one row per run: optimizer, seed, run_id, status
    hits: dict[str, np.ndarray]  # axis -> [R, T] spend at the first hit (inf: never)
    spent: dict[str, np.ndarray]  # axis -> [R] the run's spend at its end


def target_values(start: float, reference: float, direction: str, n: int = N_TARGETS,
                  decades: float = DECADES) -> np.ndarray | None:
    """The ``n`` targets between ``start`` and ``reference`` (module docstring), easiest
    first, in the metric's units; ``None`` where either is unknown or the reference is not
    better than the start."""
    sign = 1.0 if direction == "min" else -1.0
    if not (math.isfinite(start) and math.isfinite(reference)):
        return None
    gap = sign * (start - reference)
    if not gap > 0:
        return None
    fractions = 10.0 ** (-decades * np.arange(1, n + 1) / n)
    return reference + sign * gap * fractions


def _anchor(records: list[dict[str, Any]], metric: str, which: str) -> float:
    """Median over the task's instances (one value per repetition) of the start's or the
    reference's primary metric, as the boards' anchors (:func:`leaderboard.anchors`)."""
    per_seed: dict[int, float] = {}
    for r in records:
        source = start_metrics(r) if which == "start" else r.get("reference")
        value = (source or {}).get(metric)
        if value is not None and math.isfinite(float(value)):
            per_seed.setdefault(repetition(r), float(value))
    return float(np.median(list(per_seed.values()))) if per_seed else math.nan


def _hits(record: dict[str, Any], targets: np.ndarray, metric: str, direction: str
          ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One run's spend at its first hit of each target per axis, and its spend at the end."""
    trajectory = record.get("trajectory") or []
    spend = {axis: np.array([float(p.get(axis) or 0.0) for p in trajectory]) for axis in AXES}
    ended = {axis: float(values[-1]) if values.size else 0.0 for axis, values in spend.items()}
    never = {axis: np.full(len(targets), math.inf) for axis in AXES}
    if record.get("status") != "ok" or not trajectory:
        return never, ended
    values = [(p.get("metrics") or {}).get(metric) for p in trajectory]
    ys = stats.oriented([math.inf if v is None else v for v in values], direction)
    ys = np.where(np.isnan(ys), math.inf, ys)
    reached = ys[None, :] <= stats.oriented(targets, direction)[:, None]  # [T, checkpoints]
    first = np.where(reached.any(1), reached.argmax(1), -1)
    return {axis: np.where(first >= 0, spend[axis][first], math.inf) for axis in AXES}, ended


def task_runtimes(records: list[dict[str, Any]], family: str = "other",
                  n: int = N_TARGETS, decades: float = DECADES
                  ) -> tuple[TaskRuntimes | None, str]:
    """The runtimes of one task's records (one optimizer spec per name: the runs the boards
    count) and ``"ok"``, or ``None`` and why the task has no targets."""
    ran = [r for r in records if r.get("status") != "n/a"]
    if not ran:
        return None, "no run"
    task = ran[0]["task"]
    metric = task["primary_metric"]
    direction = task["metrics"][metric]
    start, reference = _anchor(ran, metric, "start"), _anchor(ran, metric, "reference")
    targets = target_values(start, reference, direction, n, decades)
    if targets is None:
        why = ("no start" if math.isnan(start) else "no reference" if math.isnan(reference)
               else "reference not better than start")
        return None, why
    rows, hits, spent = [], {a: [] for a in AXES}, {a: [] for a in AXES}
    for r in ran:
        run_hits, ended = _hits(r, targets, metric, direction)
        rows.append({"optimizer": r["optimizer"].get("name", r["optimizer"]["label"]),
                     "seed": repetition(r), "run_id": r["run_id"], "status": r["status"]})
        for axis in AXES:
            hits[axis].append(run_hits[axis])
            spent[axis].append(ended[axis])
    return TaskRuntimes(task["label"], task["canonical"], family, metric, direction, start,
                        reference, targets, pd.DataFrame(rows),
                        {a: np.stack(v) for a, v in hits.items()},
                        {a: np.array(v) for a, v in spent.items()}), "ok"


def average_runtime(hits: np.ndarray, spent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """aRT per target and the success counts: ``hits[R, T]`` first-hit spends (inf: never),
    ``spent[R]`` each run's spend at its end. aRT = (spend of every run until its success or
    its end) / successes; infinite without success."""
    success = np.isfinite(hits)
    counted = np.where(success, hits, spent[:, None]).sum(0)
    successes = success.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        art = np.where(successes > 0, counted / np.maximum(successes, 1), math.inf)
    return art, successes


def art_table(rt: TaskRuntimes) -> pd.DataFrame:
    """One row per optimizer and target: runs, successes and aRT on every axis."""
    frames = []
    gap = abs(rt.start - rt.reference)
    for name, rows in rt.runs.groupby("optimizer", sort=True).groups.items():
        idx = np.asarray(list(rows))
        frame = pd.DataFrame({
            "task": rt.task, "family": rt.family, "optimizer": name,
            "target_index": np.arange(1, len(rt.targets) + 1), "target": rt.targets,
            "gap_fraction": np.abs(rt.targets - rt.reference) / gap, "runs": len(idx)})
        for axis in AXES:
            art, successes = average_runtime(rt.hits[axis][idx], rt.spent[axis][idx])
            frame["successes"] = successes
            frame[f"art_{axis}"] = art
        frame["success_rate"] = frame["successes"] / frame["runs"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def runtimes_table(rt: TaskRuntimes) -> pd.DataFrame:
    """Every run's runtime to every target (blank: never reached), long form."""
    n_runs, n_targets = rt.hits[AXES[0]].shape
    frame = rt.runs.loc[np.repeat(np.arange(n_runs), n_targets)].reset_index(drop=True)
    frame.insert(0, "task", rt.task)
    frame["target_index"] = np.tile(np.arange(1, n_targets + 1), n_runs)
    frame["target"] = np.tile(rt.targets, n_runs)
    for axis in AXES:
        frame[axis] = np.where(np.isfinite(rt.hits[axis]), rt.hits[axis], np.nan).reshape(-1)
    return frame


def ecdf_table(group: Iterable[TaskRuntimes], scope_kind: str, scope: str) -> pd.DataFrame:
    """ECDF steps of (run, target) pairs reached per optimizer and axis over ``group``'s
    tasks, each task weighing the same (columns scope_kind, scope, optimizer, axis, x,
    fraction). An optimizer's ECDF covers the tasks it ran, on the axes it spends on (an
    optimizer without gradients has none on the gradient axis: every runtime there is 0)."""
    group = list(group)
    rows = []
    names = sorted({n for rt in group for n in rt.runs["optimizer"]})
    for name in names:
        for axis in AXES:
            mine = [(rt, np.flatnonzero(rt.runs["optimizer"] == name)) for rt in group]
            mine = [(rt, idx) for rt, idx in mine if idx.size]
            if not any((rt.spent[axis][idx] > 0).any() for rt, idx in mine):
                continue  # spends nothing on this axis (no gradients): no curve there
            per_task = [[rt.hits[axis][i] for i in idx] for rt, idx in mine]
            xs, ys = stats.ecdf(per_task)
            rows += [(scope_kind, scope, name, axis, x, y) for x, y in zip(xs, ys)]
    return pd.DataFrame(rows, columns=["scope_kind", "scope", "optimizer", "axis", "x",
                                       "fraction"])


def compute(records: list[dict[str, Any]], families: dict[str, str] | None = None,
            n: int = N_TARGETS, decades: float = DECADES) -> dict[str, Any]:
    """Every table, in memory: ``runtimes`` (task id -> :class:`TaskRuntimes`), ``tasks``,
    ``runtimes_table``, ``art`` and ``ecdf`` frames. ``records``: the runs the boards count
    (one spec per optimizer name); ``families``: task id -> family (else the records')."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"]["canonical"], []).append(r)
    found, rows = {}, []
    for task_id, group in sorted(by_task.items()):
        family = (families or {}).get(task_id) or group[0]["task"].get("family") or "other"
        rt, why = task_runtimes(group, family, n, decades)
        task = group[0]["task"]
        rows.append({"task": task["label"], "task_id": task_id, "family": family,
                     "metric": task["primary_metric"],
                     "direction": task["metrics"][task["primary_metric"]],
                     "start": rt.start if rt else math.nan,
                     "reference": rt.reference if rt else math.nan,
                     "targets": len(rt.targets) if rt else 0,
                     "first_target": rt.targets[0] if rt else math.nan,
                     "last_target": rt.targets[-1] if rt else math.nan, "status": why})
        if rt is not None:
            found[task_id] = rt
    ecdfs = [ecdf_table([rt], "task", rt.task) for rt in found.values()]
    for family in sorted({rt.family for rt in found.values()}):
        ecdfs.append(ecdf_table([rt for rt in found.values() if rt.family == family],
                                "family", family))
    empty_ecdf = ecdf_table([], "task", "")
    return {"runtimes": found, "tasks": pd.DataFrame(rows),
            "runtimes_table": _concat([runtimes_table(rt) for rt in found.values()]),
            "art": _concat([art_table(rt) for rt in found.values()]),
            "ecdf": pd.concat(ecdfs, ignore_index=True) if ecdfs else empty_ecdf}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write(out: str | Path, records: list[dict[str, Any]],
          families: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``out/targets/``: the CSVs, then one PNG per task and per family (module
    docstring); returns :func:`compute`'s dict with ``files`` (the paths written)."""
    from zgbench.store import atomic_write_text

    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    computed = compute(records, families)
    files = []
    for name in ("tasks", "runtimes_table", "art", "ecdf"):
        path = folder / ("runtimes.csv" if name == "runtimes_table" else f"{name}.csv")
        atomic_write_text(path, computed[name].to_csv(index=False))
        files.append(path)
    art, ecdf = computed["art"], computed["ecdf"]
    plots = []
    for rt in computed["runtimes"].values():
        plots.append(_plot(folder / f"{_slug(rt.task)}.png", rt.task,
                           ecdf[(ecdf["scope_kind"] == "task") & (ecdf["scope"] == rt.task)],
                           art[art["task"] == rt.task], len(rt.targets)))
    for family in sorted({rt.family for rt in computed["runtimes"].values()}):
        tasks = [rt for rt in computed["runtimes"].values() if rt.family == family]
        plots.append(_plot(folder / f"family_{_slug(family)}.png",
                           f"family {family} ({len(tasks)} task{'s' if len(tasks) > 1 else ''})",
                           ecdf[(ecdf["scope_kind"] == "family") & (ecdf["scope"] == family)],
                           None, N_TARGETS))
    # through the leaderboard's keyed drawing: a figure whose PNG already shows the same data
    # is not drawn again (most of a rerun's time otherwise), the rest in parallel
    from zgbench.leaderboard import draw

    draw(plots)
    computed["files"] = files + [p.path for p in plots]
    return computed


def _plot(path: Path, title: str, ecdf: pd.DataFrame, art: pd.DataFrame | None,
          n_targets: int):
    from zgbench.leaderboard import Plot

    return Plot("zgbench.targets:plot", path, {
        "title": title, "ecdf": ecdf.reset_index(drop=True),
        "art": None if art is None else art.reset_index(drop=True), "n_targets": n_targets})


def _slug(text: str) -> str:
    from zgbench.leaderboard import slug

    return slug(text)


def used_axes(ecdf: pd.DataFrame) -> list[str]:
    """The axes on which some reached target cost something (a task without gradients has
    every gradient runtime 0: no curve to draw on that axis)."""
    return [a for a in AXES if (ecdf.loc[ecdf["axis"] == a, "x"] > 0).any()] or ["evals"]


def plot(title: str, ecdf: pd.DataFrame, art: pd.DataFrame | None, path: Path,
         n_targets: int) -> None:
    """ECDFs per axis (top row) and, for a task, aRT against the target (bottom row, log
    axes; the target as the remaining fraction of the start's gap to the reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_used = used_axes(ecdf)
    nrows = 1 if art is None else 2
    width = 3.3 * len(axes_used)
    # A fixed layout (no tight_layout, no tight bbox): both measure every tick label of the
    # log axes, which took most of the time of writing these pictures.
    fig, grid = plt.subplots(nrows, len(axes_used), figsize=(width + 1.7, 3.0 * nrows + 0.4),
                             dpi=90, squeeze=False)
    fig.subplots_adjust(left=0.8 / (width + 1.7), right=width / (width + 1.7), wspace=0.35,
                        hspace=0.4, top=1 - 0.45 / (3.0 * nrows + 0.4),
                        bottom=0.45 / (3.0 * nrows + 0.4))
    names = sorted(ecdf["optimizer"].unique()) if art is None else sorted(
        set(ecdf["optimizer"]) | set(art["optimizer"]))
    styles = {n: (f"C{i % 10}", ("-", "--", ":")[i // 10 % 3]) for i, n in enumerate(names)}
    for j, axis in enumerate(axes_used):
        _ecdf_panel(grid[0, j], ecdf[ecdf["axis"] == axis], axis, styles)
        if art is not None:
            _art_panel(grid[1, j], art, axis, styles)
    handles = [plt.Line2D([], [], color=c, ls=s) for c, s in styles.values()]
    fig.legend(handles, [outputs.literal(n) for n in names], loc="upper left",
               bbox_to_anchor=(width / (width + 1.7) + 0.01, 0.93), fontsize=7, frameon=False,
               ncol=max(1, math.ceil(len(names) / 18)))
    fig.suptitle(f"{outputs.literal(title)}: fixed-target runtimes, {n_targets} targets "
                 f"log-spaced from the start to the reference", fontsize=9)
    from zgbench.leaderboard import save_plot

    save_plot(fig, path, tight=False)


def _floor(values: np.ndarray, axis: str) -> float:
    positive = values[np.isfinite(values) & (values > 0)]
    if axis != "seconds":
        return 1.0
    return 10.0 ** math.floor(math.log10(float(positive.min()))) if positive.size else 1e-3


def _ecdf_panel(ax, frame: pd.DataFrame, axis: str, styles: dict[str, tuple[str, str]]) -> None:
    """One axis's ECDF steps; a target met at zero spend sits at the left edge, and every
    curve runs flat to the largest spend drawn (an ECDF holds up to the budget)."""
    xs_all = frame["x"].to_numpy(float)
    floor = _floor(xs_all, axis)
    edge = max(float(xs_all.max()) if xs_all.size else floor, 10 * floor)
    for name, group in frame.groupby("optimizer", sort=True):
        xs = np.maximum(np.concatenate([[floor], group["x"].to_numpy(float), [edge]]), floor)
        ys = group["fraction"].to_numpy(float)
        ys = np.concatenate([[0.0], ys, ys[-1:]])
        color, style = styles[name]
        ax.step(xs, ys, where="post", color=color, ls=style, clip_on=False)
    ax.set_xscale("log")
    ax.set_xlim(floor, edge)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(AXIS_LABELS[axis], fontsize=8)
    ax.set_ylabel("fraction of (run, target) pairs", fontsize=8)
    _light(ax)


def _art_panel(ax, art: pd.DataFrame, axis: str, styles: dict[str, tuple[str, str]]) -> None:
    """aRT against the remaining gap fraction (right: harder targets); unreached targets are
    not drawn."""
    column = f"art_{axis}"
    drawn = False
    for name, group in art.groupby("optimizer", sort=True):
        values = group[column].to_numpy(float)
        keep = np.isfinite(values) & (values > 0)
        if keep.any():
            color, style = styles[name]
            ax.plot(group["gap_fraction"].to_numpy(float)[keep], values[keep], color=color,
                    ls=style, marker=".", markersize=3)
            drawn = True
    ax.set_xscale("log")
    fractions = art["gap_fraction"].to_numpy(float)
    ax.set_xlim(1.5, float(fractions.min()) / 1.5)  # every target, easiest on the left
    if drawn:
        ax.set_yscale("log")
    ax.set_xlabel("target: remaining fraction of start's gap to reference", fontsize=8)
    ax.set_ylabel(f"aRT ({AXIS_LABELS[axis]})", fontsize=8)
    _light(ax, minor_y=True)  # aRT often spans less than a decade: minor labels then


def _light(ax, minor_y: bool = False) -> None:
    """Grid, small labels and no minor ticks: on log axes matplotlib builds dozens of minor
    ticks per panel, which were most of the time spent drawing these pictures."""
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    if not minor_y:
        ax.yaxis.set_minor_locator(NullLocator())
    ax.grid(True, alpha=0.3)
    ax.tick_params(which="both", labelsize=7)
