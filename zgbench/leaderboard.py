"""Leaderboards from a results folder: a ranked CSV and a convergence plot per task, and the
overall and family boards.

Per task, optimizers are ranked by the median over seeds of the task's primary metric at the
end of the run. Explicit rules for the awkward cases:

- a failed run (any status but ``ok`` and ``n/a``: failed, violated, ...) or an ok run whose
  metric is not finite (NaN is stored as null) counts as the worst possible value (+inf for
  "min" metrics, -inf for "max"), so failing on hard seeds never helps a median;
- medians and quartiles interpolate between finite neighbours and take the worse neighbour
  next to a failure (:func:`zgbench.stats.worse_quantile`): with 2 seeds {0.09, inf} has
  median inf, never 0.09;
- an incompatible pair (status ``n/a``) is not ranked on that task and is counted as n/a;
- ties share the better rank (competition ranking: 1, 2, 2, 4);
- one row per optimizer name: the spec that ran is the ``spec`` column; with several specs of
  one optimizer on a task the worst counts and the others are listed unranked
  (:mod:`zgbench.boards` states the rules, coverage and families included).

The overall board (``overall.csv``) gives each optimizer its mean rank over the tasks it was
ranked on, its coverage, wins (tasks ranked first, ties included), n/a and failed counts; the
main table holds the optimizers ranked on at least half the tasks, the partial table the
rest.

Every task table also carries the task's two anchors for its primary metric (issue 22):
``start``, the median over the task's instances (seeds) of θ₀'s value, and ``reference``, the
median of the instances' reference values (``Task.reference``: what a first-order method
reaches, else the best known; blank where the task has none; ``reference_note`` says what it
is); and per optimizer ``final_over_start``, the median over seeds of final / start of the
same instance (below 1 for a "min" metric: better than the start; blank where a start is
not positive). The convergence plots draw both anchors as labelled horizontal lines, and
:func:`not_improved` names the tasks where no optimizer's median beat the start.

Each task table also says whether the task **separates** (issue 22; definitions in
:mod:`zgbench.stats`): ``start_lo``/``start_hi``, the bootstrap interval of the start's
median; per optimizer ``beats_start`` and ``beats_baseline``, its median's interval clear of
the start's and of the suite's baseline's; and ``separates`` (one value per task, on every
row) where some optimizer other than the baseline beats both. :func:`separation` computes
the same from records for ``zgbench run``'s summary.

``families.csv`` holds the same board per family of tasks. Everything is written
atomically, tables before plots; plots are median lines with an interquartile band over
seeds, against the task's one spend counter (:func:`zgbench.stats.spend_axis`: loss
evaluations, gradients or steps, else the budget fraction; never evaluations plus gradients),
and skip non-finite points.

Statistics from :mod:`zgbench.stats` extend the same files and add a few (see there for the
definitions): each task table gains bootstrap intervals on the median (``median_lo``,
``median_hi``) and on the rank, and the normalised score (0 = best known value, 1 = random
search's median) with its interval; ``overall.csv`` gains the mean normalised score and the
interval of the mean rank; ``stats.csv`` holds every task table in one long table (what
``zgbench compare`` reads); ``win_rate.csv``/``.png`` the win-rate matrix; ``profiles.csv``,
``profiles.png`` and ``<task>.profile.png`` the runtime ECDFs (COCO-style).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import importlib
import json
import math
import os
import pickle
import re
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zgbench import boards, declared, outputs, seeding, stats
from zgbench.errors import UsageError
from zgbench.record import repetition, start_metrics
from zgbench.store import ResultStore, atomic_write_text

COLUMNS = ["rank", "optimizer", "spec", "median", "q25", "q75", "final_over_start", "start",
           "reference", "runs_ok", "runs_failed", "evals", "grads", "seconds", "metric",
           "direction", "reference_note"]


def runs_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: identity, status and the final primary metric (worst if missing or
    not finite: a NaN metric is stored as null). ``optimizer`` is the optimizer's name (its
    row on the boards), ``spec`` the spec that ran (label: only non-default parameters)."""
    records = list(records)
    seeding.instance_set(records)  # one instance set per board: refuses a mix (UsageError)
    rows = []
    for r in records:
        task, direction = r["task"], r["task"]["metrics"][r["task"]["primary_metric"]]
        final = r.get("final") or {}
        value = (final.get("metrics") or {}).get(task["primary_metric"])
        if r["status"] != "ok" or value is None or not math.isfinite(value):
            value = math.inf if direction == "min" else -math.inf
        optimizer = r["optimizer"]
        rows.append({
            "task": task["label"], "task_id": task["canonical"], "family": family(r),
            "optimizer": optimizer.get("name", optimizer["label"]), "spec": optimizer["label"],
            "canonical": optimizer.get("canonical", optimizer["label"]),
            "run_id": r["run_id"], "finished": r.get("finished") or "",
            "seed": repetition(r), "status": r["status"], "metric": task["primary_metric"],
            "direction": direction, "value": value, "evals": final.get("evals", 0),
            "grads": final.get("grads", 0), "seconds": final.get("seconds", 0.0),
            "start": _num((start_metrics(r) or {}).get(task["primary_metric"])),
            "reference": _num((r.get("reference") or {}).get(task["primary_metric"])),
            "reference_note": r.get("reference_note") or "",
        })
    return pd.DataFrame(rows)


def family(record: dict[str, Any]) -> str:
    """The task family of a record (``Task.family``); records written before families were
    recorded are looked up in the installed plugins by task name."""
    value = record["task"].get("family")
    return value if isinstance(value, str) and value else _installed_family(record["task"]["name"])


@functools.cache
def _installed_family(name: str) -> str:
    try:
        return getattr(_registry().task(name).cls, "family", boards.OTHER) or boards.OTHER
    except Exception:  # a task whose plugin is not installed here
        return boards.OTHER


@functools.cache
def _registry():
    from zgbench import plugins

    return plugins.load()


def task_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The ranked table of one task (rows of :func:`runs_frame` for that task): one row per
    optimizer name from the runs that count (``counted``, see :mod:`zgbench.boards`), ranked;
    then one row per other spec of the same names, unranked (``counted = False``)."""
    direction = runs["direction"].iloc[0]
    counted = runs["counted"] if "counted" in runs else pd.Series(True, index=runs.index)
    rows = [_row(name, group, direction) for name, group in
            runs[counted].groupby("optimizer", sort=True)]
    extra = [_row(group["optimizer"].iloc[0], group, direction, counted=False) for _, group in
             runs[~counted].groupby("spec", sort=True)]
    table = pd.DataFrame(rows + extra)
    for column in ("median", "q25", "q75", "final_over_start", "evals", "grads", "seconds"):
        if column not in table:  # every pair n/a on this task
            table[column] = math.nan
    table["metric"] = runs["metric"].iloc[0]
    table["direction"] = direction
    for column, value in anchors(runs).items():
        table[column] = value
    ranked = (table["status"] != "n/a") & table["counted"]
    key = table.loc[ranked, "median"] * (1 if direction == "min" else -1)
    table.loc[ranked, "rank"] = key.rank(method="min")
    table = table.sort_values(["counted", "rank", "optimizer", "spec"],
                              ascending=[False, True, True, True], na_position="last")
    columns = [c for c in COLUMNS + ["status", "counted"] if c in table.columns]
    return table[columns].reset_index(drop=True)


def _row(name: str, group: pd.DataFrame, direction: str, counted: bool = True) -> dict[str, Any]:
    """One table row: medians and quartiles over the group's seeds (one spec)."""
    spec = group["spec"].iloc[0] if "spec" in group else name
    ran = group[group["status"] != "n/a"]
    if ran.empty:
        return {"optimizer": name, "spec": spec, "status": "n/a", "runs_ok": 0,
                "runs_failed": 0, "counted": counted}
    values = ran["value"].to_numpy(dtype=float)
    return {"final_over_start": _over_start(ran, direction), **{
        "optimizer": name, "spec": spec,
        "status": "ok" if (ran["status"] == "ok").any() else "failed",
        "median": _quantile(values, 0.5, direction), "q25": _quantile(values, 0.25, direction),
        "q75": _quantile(values, 0.75, direction), "runs_ok": int((ran["status"] == "ok").sum()),
        "runs_failed": int((ran["status"] != "ok").sum()),  # failed, violated, ...
        "evals": float(ran["evals"].median()), "grads": float(ran["grads"].median()),
        "seconds": float(ran["seconds"].median()), "counted": counted,
    }}


def anchors(runs: pd.DataFrame) -> dict[str, Any]:
    """A task's ``start`` and ``reference`` (medians over its instances, one value per seed:
    every optimizer of a seed faces the same instance) and the reference's note; NaN where
    no record knows them (records written before they existed have no reference)."""
    out: dict[str, Any] = {}
    for column in ("start", "reference"):
        if column not in runs:
            out[column] = math.nan
            continue
        per_seed = runs.dropna(subset=[column]).groupby("seed")[column].first()
        out[column] = float(per_seed.median()) if len(per_seed) else math.nan
    notes = runs["reference_note"] if "reference_note" in runs else pd.Series([], dtype=str)
    out["reference_note"] = next((n for n in notes if isinstance(n, str) and n), "")
    return out


def _over_start(ran: pd.DataFrame, direction: str) -> float:
    """Median over seeds of final / start of the same instance (failures: the worst), or NaN
    where a start is unknown or not positive (the ratio would not order as the metric)."""
    if "start" not in ran:
        return math.nan
    start = ran["start"].to_numpy(dtype=float)
    if not len(start) or not (np.isfinite(start) & (start > 0)).all():
        return math.nan
    return _quantile(ran["value"].to_numpy(dtype=float) / start, 0.5, direction)


def stalled(records: Iterable[dict[str, Any]]) -> list[str]:
    """:func:`not_improved` straight from records (no statistics, no files): the labels of
    the tasks where no optimizer's median final primary metric beat the start."""
    runs = _counted_runs(records)
    if runs.empty:
        return []
    return not_improved({group["task"].iloc[0]: task_table(group)
                         for _, group in runs.groupby("task_id", sort=True)})


def _counted_runs(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The runs frame of ``records`` as the boards count it: one spec per optimizer label
    (:func:`boards.one_spec_per_label`) and the ``counted`` column; empty without records."""
    runs = runs_frame(records)
    if runs.empty:
        return runs
    runs = boards.one_spec_per_label(runs)[0]
    runs["counted"] = boards.counted_specs(runs)
    return runs


def not_improved(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The labels of the tasks where no ranked optimizer's median beat the task's start
    (primary metric; ties with the start do not count as improving): boards on which
    nothing moved measure nothing. Tasks without a known start are left out."""
    labels = []
    for label, table in tables.items():
        start = float(table["start"].iloc[0]) if "start" in table and len(table) else math.nan
        if not math.isfinite(start):
            continue
        ranked = table[table["rank"].notna()] if "rank" in table else table[:0]
        sign = 1.0 if table["direction"].iloc[0] == "min" else -1.0
        medians = ranked["median"].to_numpy(dtype=float) * sign
        if not (medians < start * sign).any():
            labels.append(label)
    return labels


def separation(records: Iterable[dict[str, Any]], baseline: str | None) -> dict[str, bool | None]:
    """Per task label, whether its board separates (:func:`zgbench.stats.separates`: some
    optimizer's median interval clear of the start's and of ``baseline``'s), straight from
    records with the boards' own bootstrap; None where the start is unknown."""
    runs = _counted_runs(records)
    if runs.empty:
        return {}
    counted = runs[runs["counted"]]
    return {group["task"].iloc[0]: stats.task_stats(group, [], baseline=baseline).separates
            for _, group in counted.groupby("task_id", sort=True)}


def not_separating(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The labels of the task tables whose ``separates`` column is False (unknown: left out)."""
    def no(value: Any) -> bool:
        return value is not None and not pd.isna(value) and not bool(value)

    return [label for label, table in tables.items()
            if "separates" in table and len(table) and no(table["separates"].iloc[0])]


def _quantile(values: np.ndarray, q: float, direction: str = "min") -> float:
    """Quantile ``q`` of a metric's values (q25 is the lower quartile of the metric itself),
    interpolated between finite neighbours and the worse neighbour next to a failure
    (:func:`zgbench.stats.worse_quantile`)."""
    if direction == "min":
        return float(stats.worse_quantile(values, q))
    return -float(stats.worse_quantile(-np.asarray(values, dtype=float), 1.0 - q))


def overall_table(tables: dict[str, pd.DataFrame],
                  summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """The overall board (one row per optimizer, coverage, main and partial tables): see
    :func:`zgbench.boards.overall_table`."""
    return boards.overall_table(tables, summary)


def slug(text: str) -> str:
    """A file-name-safe form of a task label."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def curves(records: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Per optimizer, median and quartiles of the primary metric over seeds on a common grid
    of the task's spend axis (:func:`stats.spend_axis`: one counter, never evaluations plus
    gradients; column ``calls``), each seed's trajectory held constant between checkpoints."""
    by_opt: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    axis = stats.spend_axis(r for r in records if r["status"] == "ok")
    for r in records:
        if r["status"] != "ok" or not r.get("trajectory"):
            continue
        metric = r["task"]["primary_metric"]
        budget = stats._budget(r)
        xs = np.array([stats.spend(p, budget, axis) for p in r["trajectory"]], dtype=float)
        ys = np.array([_num(p["metrics"].get(metric)) for p in r["trajectory"]], dtype=float)
        by_opt.setdefault(r["optimizer"]["label"], []).append((xs, ys))
    out = {}
    for optimizer, series in by_opt.items():
        grid = np.unique(np.concatenate([xs for xs, _ in series]))
        q25, median, q75 = stats.nanquantiles(stats.held_on_grid(series, grid),
                                              (0.25, 0.5, 0.75))
        out[optimizer] = pd.DataFrame({"calls": grid, "median": median, "q25": q25,
                                       "q75": q75})
    return out


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


#: A curve further than this many times the spread of the runs' starting values beyond the
#: worst start (the bad side: up for "min" metrics) has diverged: it is drawn clipped at
#: that edge and marked, so the other curves keep the axis (a 1e38 run would flatten them).
DIVERGED = 100.0
#: Legend entries per column; longer legends get more columns, outside the axes.
LEGEND_ROWS = 18


def plot_task(label: str, metric: str, direction: str, data: dict[str, pd.DataFrame],
              path: Path, anchors: dict[str, Any] | None = None, axis: str = "evals") -> None:
    """Convergence plot: median step line and interquartile band per optimizer, and the
    task's ``anchors`` (:func:`anchors`: start and reference) as labelled horizontal lines,
    so a curve reads as the distance covered from the start towards the reference.

    Divergence is clipped rather than drawn on a symlog axis: symlog would keep a 1e38 run
    visible but squeeze the range where the optimizers differ (start to optimum, a few
    decades) into a sliver of 40+ decades. Clipping at :data:`DIVERGED` times the start keeps
    that range full height; clipped curves end in a triangle at the edge and say so in the
    legend. Values at or below zero (an exact optimum: gap 0) get a symlog axis whose linear
    part ends at the smallest positive value drawn, so they show instead of vanishing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    limit = _diverged_limit(data, direction)
    shown, clipped = [], 0  # shown: every finite value drawn (to choose the y scale)
    for i, (optimizer, frame) in enumerate(sorted(data.items())):
        x = np.maximum(frame["calls"].to_numpy(), 1e-3 if axis == "budget_fraction" else 1)
        values = frame[["median", "q25", "q75"]].to_numpy(dtype=float)
        over = _beyond(values, limit, direction)
        if over.any():
            values = np.where(over, limit, values)
            clipped += 1
        label_text = outputs.literal(optimizer) + (" (diverged: clipped)" if over.any() else "")
        (line,) = ax.step(x, values[:, 0], where="post", label=label_text, ls=_style(i))
        ax.fill_between(x, values[:, 1], values[:, 2], step="post", alpha=0.2,
                        color=line.get_color())
        if over[:, 0].any():
            first = int(np.argmax(over[:, 0]))
            ax.plot([x[first]], [limit], marker="^" if direction == "min" else "v",
                    color=line.get_color(), markersize=7, clip_on=False)
        shown.append(values[np.isfinite(values)])
    lines = _anchor_lines(ax, anchors or {}, direction)
    shown.append(np.array(lines, dtype=float))
    drawn = np.concatenate(shown) if shown else np.array([])
    if drawn.size:  # log axes without any finite point cannot place ticks (matplotlib raises)
        ax.set_xscale("log")
        if direction == "min":
            _value_scale(ax, drawn)
    else:
        ax.text(0.5, 0.5, "no finite value to plot", transform=ax.transAxes, ha="center")
    ax.set_xlabel(stats.SPEND_AXES.get(axis, axis))
    ax.set_ylabel(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    title = f"{outputs.literal(label)}: median and interquartile range over seeds"
    if clipped:
        title += (f"\n{clipped} diverged optimizer{'s' if clipped > 1 else ''} clipped at "
                  f"{limit:.3g} ({DIVERGED:g}x the starting spread)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(data) + len(lines))
    save_plot(fig, path)


def _anchor_lines(ax, anchors: dict[str, Any], direction: str = "min") -> list[float]:
    """Draw the start and the reference (where finite) as horizontal lines labelled in the
    legend and, with their values, on the axes (a reference at an exact optimum, gap 0, lies
    on the bottom spine: the label keeps it readable). Labels sit on the side of the line
    facing the curves (below the start of a "min" metric, above its reference); return the
    values drawn."""
    drawn = []
    note = _short(anchors.get("reference_note") or "")
    for key, text, style, colour in (
            ("start", "start θ₀ (median over instances)", "--", "0.35"),
            ("reference", "reference" + (f": {note}" if note else ""), ":", "black")):
        value = anchors.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        ax.axhline(float(value), color=colour, ls=style, lw=1.4, label=text, zorder=4,
                   clip_on=False)
        above = (key == "reference") == (direction == "min")
        ax.annotate(f"{key} {float(value):.3g}", (0.01, float(value)),
                    xycoords=("axes fraction", "data"), xytext=(0, 2 if above else -2),
                    textcoords="offset points", fontsize=7, color=colour,
                    va="bottom" if above else "top")
        drawn.append(float(value))
    return drawn


def _short(note: str, width: int = 48) -> str:
    """A legend-sized reference note: its first clause, cut at ``width`` characters (a long
    legend squeezes the plot; the per-task CSV keeps the whole note)."""
    head = note.split(" (")[0].split(";")[0].strip()
    return head if len(head) <= width else head[:width - 1].rstrip() + "…"


def _diverged_limit(data: dict[str, pd.DataFrame], direction: str) -> float:
    """The edge past which a curve has diverged (see :data:`DIVERGED`): the worst starting
    quartile plus DIVERGED times the spread (the start's own size, or the distance from the
    best value drawn when that is larger); infinite when nothing finite starts."""
    sign = 1.0 if direction == "min" else -1.0
    starts, values = [], []
    for frame in data.values():
        block = frame[["median", "q25", "q75"]].to_numpy(dtype=float) * sign
        finite = block[np.isfinite(block)]
        values.append(finite)
        first = block[0][np.isfinite(block[0])] if len(block) else finite[:0]
        starts.append(first)
    start = np.concatenate(starts) if starts else np.array([])
    if not start.size:
        return math.inf * sign
    worst = float(start.max())
    best = float(np.concatenate(values).min())
    spread = max(abs(worst), worst - best) or 1.0
    return sign * (worst + (DIVERGED - 1.0) * spread)


def _beyond(values: np.ndarray, limit: float, direction: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN compares false: not drawn, not clipped
        return values > limit if direction == "min" else values < limit


def _value_scale(ax, drawn: np.ndarray) -> None:
    """Log when every value is positive; else symlog, linear below the smallest non-zero
    magnitude drawn (rounded down to a power of ten), so zeros and negatives stay visible."""
    if (drawn > 0).all():
        ax.set_yscale("log")
        return
    nonzero = np.abs(drawn[drawn != 0])
    if not nonzero.size:
        return  # every value is zero: a linear axis says it best
    linthresh = 10.0 ** math.floor(math.log10(float(nonzero.min())))
    ax.set_yscale("symlog", linthresh=linthresh)
    if drawn.min() >= 0:  # the margin would otherwise add decades of negative values
        ax.set_ylim(bottom=0)


def _style(i: int) -> str:
    """The line style of the i-th curve: matplotlib's cycle has 10 colours, so curves 11 to
    20 are dashed and 21 to 30 dotted, telling apart curves that share a colour."""
    return ("-", "--", ":")[i // 10 % 3]


def _legend(ax, entries: int) -> None:
    """The legend outside the axes on the right (it would cover the curves inside), in
    columns of :data:`LEGEND_ROWS`; ``bbox_inches="tight"`` widens the figure to hold it."""
    if entries:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                  ncol=max(1, math.ceil(entries / LEGEND_ROWS)), frameon=False)


def compute(records: list[dict[str, Any]],
            declarations: declared.Declarations | None = None,
            planned: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Every table of a leaderboard, in memory: per-task tables (by label) with their
    statistics, the overall and family boards, the long ``stats`` table and the
    :class:`stats.Analysis` (computed on the runs that count, one spec per optimizer).
    ``declarations``: the suite's baseline of normalised scores and its caveats (none: no
    normalised scores, no caveats). ``planned``: (task, optimizer) canonical forms of the
    plan, to choose between specs sharing a label (:func:`boards.one_spec_per_label`; the runs
    left out are ``left_out``, and ``records`` holds those used)."""
    declarations = declarations or declared.Declarations()
    runs, left_out = boards.one_spec_per_label(runs_frame(records), planned)
    used = set(runs["run_id"])
    records = [r for r in records if r["run_id"] in used]
    runs["counted"] = boards.counted_specs(runs)
    counted = runs[runs["counted"]]
    keep = set(zip(counted["task_id"], counted["spec"]))
    chosen = [_by_name(r) for r in records
              if (r["task"]["canonical"], r["optimizer"]["label"]) in keep]
    analysis = stats.analyse(counted, chosen, baseline=declarations.baseline)
    tables: dict[str, pd.DataFrame] = {}
    task_ids: dict[str, str] = {}
    for task_id, group in runs.groupby("task_id", sort=True):
        label = group["task"].iloc[0]
        tables[label] = task_table(group).merge(
            analysis.tasks[task_id].table.assign(counted=True), on=["optimizer", "counted"],
            how="left").assign(separates=analysis.tasks[task_id].separates)
        task_ids[label] = task_id
    overall = boards.with_caveats(overall_table(tables, analysis.overall), declarations.caveats)
    families = dict(zip(runs["task_id"], runs["family"]))
    by_family = boards.with_caveats(boards.family_tables(tables, task_ids, families, analysis),
                                    declarations.caveats)
    long = pd.concat([t.assign(task=label) for label, t in tables.items()], ignore_index=True)
    long = long[["task"] + [c for c in long.columns if c != "task"]]
    return {"runs": runs, "tasks": tables, "task_ids": task_ids, "overall": overall,
            "families": by_family, "stats": long, "analysis": analysis,
            "left_out": left_out, "records": records}


def _by_name(record: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy whose optimizer label is its name: the statistics (win rates, runtime
    profiles) key optimizers by label, and on the boards one spec per name stands for it."""
    optimizer = record["optimizer"]
    return {**record, "optimizer": {**optimizer, "label": optimizer.get("name",
                                                                         optimizer["label"])}}


def write(results: str | Path, out: str | Path, baseline: str | None = None,
          planned: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Write every task's CSV and PNG, ``overall.csv``, ``families.csv`` and ``machine.json``
    under ``out``, and the statistics files (``stats.csv``, ``win_rate.*``, ``profiles.*``,
    ``*.profile.png``). Every table is written before any plot. The suite's declarations
    (``results/suite.json``: baseline, caveats) apply, ``baseline`` replacing the declared
    one; they are copied to ``out/suite.json``."""
    records = list(ResultStore(results))
    out = outputs.checked(results, out)  # RESULTS/leaderboard a link: refused
    if not records:
        raise UsageError(f"no run records under {Path(results) / 'runs'}: run `zgbench run --out "
                         f"{results}` first.")
    declarations = _checked_baseline(declared.read(results).with_baseline(baseline),
                                     records, results, explicit=baseline is not None)
    computed = compute(records, declarations, planned)
    tables, runs, records = computed["tasks"], computed["runs"], computed["records"]
    _left_out(out, computed["left_out"])
    declared.save(out, declarations)
    for label, table in tables.items():
        atomic_write_text(out / f"{slug(label)}.csv", table.to_csv(index=False))
    atomic_write_text(out / "overall.csv", computed["overall"].to_csv(index=False))
    atomic_write_text(out / "families.csv", computed["families"].to_csv(index=False))
    atomic_write_text(out / "machine.json", json.dumps(machines(records), indent=1))
    atomic_write_text(out / "stats.csv", computed["stats"].to_csv(index=False))
    counted = set(zip(runs.loc[runs["counted"], "task_id"], runs.loc[runs["counted"], "spec"]))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if (r["task"]["canonical"], r["optimizer"]["label"]) in counted:
            by_task.setdefault(r["task"]["canonical"], []).append(r)
    plots = []
    spend: dict[str, float] = {}  # each task's largest spend on its axis
    for label in tables:
        task_id = computed["task_ids"][label]
        group = runs[runs["task_id"] == task_id]
        task_records = by_task.get(task_id, [])
        axis = stats.spend_axis(r for r in task_records if r["status"] == "ok")
        plots.append(Plot("plot_task", out / f"{slug(label)}.png", dict(
            label=label, metric=group["metric"].iloc[0], direction=group["direction"].iloc[0],
            data=curves(task_records), anchors=anchors(group), axis=axis)))
        spend[label] = _most_spent(task_records, axis)
    plots += _write_stats(out, list(tables), computed["analysis"],
                          board_order(computed["overall"]), spend)
    draw(plots)
    from zgbench import analysis as field_analysis  # targets/ and significance/ (issue 26)
    field_analysis.write(out, computed)
    analysis = computed["analysis"]
    return {"tasks": tables, "overall": computed["overall"], "families": computed["families"],
            "records": len(records), "stats": computed["stats"], "win_rate": analysis.win_rate,
            "profiles": analysis.profiles, "declarations": declarations}


def _most_spent(records: list[dict[str, Any]], axis: str) -> float:
    """The largest final spend of ``records`` on ``axis`` (where an ECDF's x axis ends)."""
    spent = [stats.spend(r["final"], stats._budget(r), axis) for r in records
             if r["status"] == "ok" and r.get("final")]
    return max(spent, default=math.nan)


def _left_out(out: Path, left: pd.DataFrame) -> None:
    """Write ``left_out.csv`` (the runs of other specs under a counted spec's label; empty
    when there are none) and warn once about them."""
    atomic_write_text(out / "left_out.csv", left.to_csv(index=False))
    if left.empty:
        return
    pairs = sorted({f"{t} × {c}" for t, c in zip(left["task"], left["canonical"])})
    warnings.warn(f"the boards left out {len(left)} run{'s' if len(left) > 1 else ''} of "
                  f"{len(pairs)} spec{'s' if len(pairs) > 1 else ''} that share a label with the "
                  f"spec they count ({'; '.join(pairs[:5])}{' ...' if len(pairs) > 5 else ''}): "
                  f"one spec per label, the planned one else the newest; see "
                  f"{out / 'left_out.csv'}.", boards.OrphanedSpecWarning, stacklevel=3)


def _checked_baseline(declarations: declared.Declarations, records: list[dict[str, Any]],
                      results: str | Path, explicit: bool) -> declared.Declarations:
    """The declarations, if their baseline ran in ``records``. A ``--baseline`` that did not
    run is an error; a suite's baseline left out of this run (``--optimizers``) is a warning,
    and the boards have no normalised scores."""
    names = sorted({r["optimizer"]["name"] for r in records})
    if declarations.baseline is None or declarations.baseline in names:
        return declarations
    message = (f"baseline {declarations.baseline!r} has no runs in {results} (its optimizers: "
               f"{', '.join(names)})")
    if explicit:
        raise UsageError(f"{message}: give --baseline one of those.")
    warnings.warn(f"{message}: no normalised scores; run it too, or give --baseline.",
                  stacklevel=3)
    return dataclasses.replace(declarations, baseline=None)


def write_tracks(default: str | Path, tuned: str | Path, out: str | Path,
                 baseline: str | None = None) -> dict[str, Any]:
    """Both tracks: the default track's leaderboard in ``out``, the tuned track's in
    ``out/tuned``, and ``out/tracks.csv`` with each optimizer's overall position in both
    (:func:`zgbench.boards.tracks_table`). Returns :func:`write`'s dict for the default
    track with ``tuned`` (the tuned track's) and ``tracks`` added."""
    out = Path(out)
    written = write(default, out, baseline)
    outputs.checked(out, out / "tuned")
    written["tuned"] = write(tuned, out / "tuned", baseline)
    written["tracks"] = boards.tracks_table({"default": written["overall"],
                                             "tuned": written["tuned"]["overall"]})
    atomic_write_text(out / "tracks.csv", written["tracks"].to_csv(index=False))
    return written


def _write_stats(out: Path, labels: list[str], analysis: stats.Analysis,
                 order: list[str] | None = None,
                 budgets: dict[str, float] | None = None) -> list[Plot]:
    """The statistics tables, and their plots to :func:`draw`; ``order``: the board's
    optimizers best first (the win-rate matrix's order), ``budgets``: each task label's
    largest spend on its axis (where its runtime ECDF's x axis ends)."""
    atomic_write_text(out / "win_rate.csv", analysis.win_rate.to_csv())
    atomic_write_text(out / "profiles.csv", analysis.profiles.to_csv(index=False))
    plots = [Plot("plot_win_rate", out / "win_rate.png", dict(rate=analysis.win_rate,
                                                               order=order))]
    overall = analysis.profiles[analysis.profiles["scope"] == "all"]
    plots.append(Plot("plot_profile", out / "profiles.png", dict(
        frame=overall, scope="all tasks", xlabel="fraction of the budget spent", right=1.0)))
    for label in labels:
        frame = analysis.profiles[analysis.profiles["scope"] == label]
        if not frame.empty:
            plots.append(Plot("plot_profile", out / f"{slug(label)}.profile.png", dict(
                frame=frame, scope=label,
                xlabel=stats.SPEND_AXES.get(frame["x_kind"].iloc[0], "spend"),
                right=(budgets or {}).get(label))))
    return plots


def board_order(overall: pd.DataFrame) -> list[str]:
    """The optimizers of an overall board best first: the main table by position, then the
    partial table by mean rank (ties by name)."""
    if overall.empty:
        return []
    frame = overall.assign(_main=overall.get("board", "main") != "main")
    by = [c for c in ("_main", "position", "mean_rank", "optimizer") if c in frame]
    return list(frame.sort_values(by, na_position="last")["optimizer"])


def save_plot(fig, path: Path, tight: bool = True) -> None:
    """Save a plot, with plain-text log ticks and, when :func:`draw` draws it, the key of
    what it shows (a PNG text chunk) so that the next :func:`draw` can skip it. Plot
    functions of other modules drawn through :func:`draw` save with this too."""
    for ax in fig.axes:
        _plain_log_ticks(ax)
    key = _DRAWING.get()
    outputs.save_figure(fig, path, **({"bbox_inches": "tight"} if tight else {}),
                        **({"metadata": {_KEY_CHUNK: key}} if key else {}))



# --------------------------------------------------------------------------- drawing plots
#
# Plotting is most of a leaderboard's time (28 figures on the quick suite: about three
# quarters of `zgbench leaderboard`). Each figure is therefore described first (a Plot: the
# function and its arguments), and :func:`draw` skips the figures whose PNG already shows the
# same arguments drawn by the same code (the key, kept in the PNG), and draws the others in
# parallel, one process per core.

#: The PNG text chunk holding a plot's key.
_KEY_CHUNK = "zgbench-plot"
#: The key of the plot being drawn (set by :func:`_draw`, read by :func:`save_plot`).
_DRAWING: contextvars.ContextVar[str | None] = contextvars.ContextVar("drawing", default=None)
#: Figures per worker below which a pool is not worth its start (a worker imports matplotlib
#: and pandas, about as long as drawing one or two figures).
PLOTS_PER_WORKER = 4


@dataclasses.dataclass
class Plot:
    """One figure to draw: ``function`` (a plot function of this module, by name, or of
    another module as ``"zgbench.targets:plot"``) called with ``arguments`` and
    ``path=path``; the function saves with :func:`save_plot`."""

    function: str
    path: Path
    arguments: dict[str, Any]
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            # the arguments and the drawing code: equal keys, equal pictures (a DataFrame
            # equal in value but pickled differently only costs a redraw)
            data = pickle.dumps((self.function, self.arguments), protocol=4)
            module = self.function.partition(":")[0] if ":" in self.function else ""
            self.key = hashlib.blake2b(data + _code_version(module).encode(),
                                       digest_size=16).hexdigest()


def draw(plots: list[Plot], workers: int | None = None) -> int:
    """Draw the plots whose file does not already hold the same key; in a process pool of
    ``workers`` (default: one per core, when there are :data:`PLOTS_PER_WORKER` figures
    each) or in this process. Returns how many were drawn."""
    todo = [plot for plot in plots if _stored_key(plot.path) != plot.key]
    if workers is None:
        workers = min(_cores(), len(todo) // PLOTS_PER_WORKER)
    if workers <= 1 or len(todo) <= 1:
        for plot in todo:
            _draw(plot)
        return len(todo)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=_pool_context()) as pool:
        for _ in pool.map(_draw, todo):  # the first error raises here, as in this process
            pass
    return len(todo)


def _pool_context():
    """Fork where this process has one thread: the workers start with pandas and matplotlib
    already imported (a forkserver's import them anew, which took as long as a third of the
    figures on the quick suite); forking a process with other threads risks a lock held by one
    of them, so then a forkserver (spawn where there is none)."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _draw(plot: Plot) -> None:
    token = _DRAWING.set(plot.key)
    try:
        _plot_function(plot.function)(**plot.arguments, path=plot.path)
    finally:
        _DRAWING.reset(token)


def _plot_function(name: str):
    if ":" not in name:
        return globals()[name]
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@functools.cache
def _code_version(module: str = "") -> str:
    """What draws the plots: this module's and outputs.py's source (and ``module``'s, the
    plot function's own where it lives elsewhere), matplotlib's version and settings (a
    changed matplotlibrc redraws)."""
    import matplotlib

    digest = hashlib.blake2b(digest_size=16)
    extra = [importlib.import_module(module).__file__] if module else []
    for module_file in (__file__, outputs.__file__, *extra):
        digest.update(Path(module_file).read_bytes())
    # by key: reading rcParams["backend"] would pick a backend, importing pyplot
    settings = [(k, matplotlib.rcParams[k]) for k in sorted(matplotlib.rcParams)
                if not k.startswith("backend")]
    digest.update(f"{matplotlib.__version__}{settings}".encode())
    return digest.hexdigest()


def _stored_key(path: Path) -> str | None:
    """The key in a PNG written by :func:`save_plot` (its text chunks come before the image
    data), or None (no file, not a PNG, no key)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while header := f.read(8):
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    return None
                body = f.read(length + 4)[:length]  # + its CRC
                if kind == b"tEXt":
                    name, _, value = body.partition(b"\0")
                    if name == _KEY_CHUNK.encode():
                        return value.decode("latin-1")
    except (OSError, struct.error):
        return None
    return None


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
#: What matplotlib's log formatters write: $\mathdefault{-2\times10^{-3}}$, ...{10^{4}}, ...{0}.
_MATHTEXT = re.compile(r"\$\\mathdefault\{(-?)(?:(\d+(?:\.\d+)?)\\times)?"
                       r"(?:(\d+)\^\{(-?\d+)\}|(\d+(?:\.\d+)?))\}\$")


def plain_tick(text: str) -> str:
    """A log axis's mathtext tick label as plain text (``10⁻³``, ``2×10¹``, ``−10⁴``), the
    same characters without the mathtext parser, whose per-figure parsing (pyparsing) took a
    quarter of the leaderboard's time; anything else as it is."""
    match = _MATHTEXT.fullmatch(text)
    if not match:
        return text
    sign, coefficient, base, exponent, number = match.groups()
    body = number if number is not None else base + exponent.translate(_SUPERSCRIPT)
    return ("\u2212" if sign else "") + (f"{coefficient}×" if coefficient else "") + body


def _plain_log_ticks(ax) -> None:
    """Swap the log (and symlog) axes' mathtext tick formatters for :func:`plain_tick`."""
    from matplotlib.ticker import LogFormatterMathtext

    for axis in (ax.xaxis, ax.yaxis):
        for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                         (axis.get_minor_formatter, axis.set_minor_formatter)):
            formatter = get()
            if isinstance(formatter, LogFormatterMathtext):
                put(_plain_formatter()(formatter))


@functools.cache
def _plain_formatter() -> type:
    """The formatter class :func:`_plain_log_ticks` puts in place (made on first use, as
    matplotlib is imported only to draw)."""
    from matplotlib.ticker import Formatter

    class PlainLogFormatter(Formatter):
        """Another log formatter's labels through :func:`plain_tick`; its choice of which
        ticks to label (``set_locs``) is kept."""

        def __init__(self, inner: Formatter) -> None:
            self.inner = inner

        def set_axis(self, axis) -> None:
            super().set_axis(axis)
            self.inner.set_axis(axis)

        def set_locs(self, locs) -> None:
            super().set_locs(locs)
            self.inner.set_locs(locs)

        def __call__(self, x, pos=None) -> str:
            return plain_tick(self.inner(x, pos))

        def format_data(self, value) -> str:
            return plain_tick(self.inner.format_data(value))

        def format_data_short(self, value) -> str:
            return self.inner.format_data_short(value)

    return PlainLogFormatter


def plot_win_rate(rate: pd.DataFrame, path: Path, order: list[str] | None = None) -> None:
    """Heat map of the win-rate matrix (row beats column), with the rates written in; rows
    and columns in ``order`` (the board's, best first; others after it by name), so the
    matrix reads as the ranking: the upper triangle is mostly blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in order or [] if n in rate.index]
    names += sorted(n for n in rate.index if n not in names)
    rate = rate.reindex(index=names, columns=names)
    n = max(len(rate), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * n, 1.0 + 0.5 * n), dpi=110)
    values = rate.to_numpy(dtype=float) if len(rate) else np.full((1, 1), math.nan)
    image = ax.imshow(values, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(rate)), [outputs.literal(c) for c in rate.columns], rotation=45,
                  ha="right", fontsize=8)
    ax.set_yticks(range(len(rate)), [outputs.literal(i) for i in rate.index], fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7 if n < 20 else 6,
                    color="white" if abs(v - 0.5) > 0.3 else "black")
    ax.set_title("win rate: row beats column (task x seed)\nin board order, best first: the "
                 "main board by position, then the partial board by mean rank", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    save_plot(fig, path)


def plot_profile(frame: pd.DataFrame, scope: str, xlabel: str, path: Path,
                 right: float | None = None) -> None:
    """Runtime ECDF steps per optimizer on a log spend axis (see :func:`stats.profiles`).

    Every curve runs flat from its last hit to the right edge (``right``: the budget, else
    the largest spend any optimizer reached): an ECDF is defined up to the budget, and a
    curve that stopped at its last hit would read as a run that stopped there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    floor = 1e-3 if (frame["x_kind"] == "budget_fraction").all() else 1.0
    spent = frame["x"].to_numpy(float)
    edge = max([floor, *(spent[np.isfinite(spent)].tolist()), *([right] if right else [])])
    for i, (optimizer, group) in enumerate(frame.groupby("optimizer", sort=True)):
        xs = np.maximum(np.concatenate([[floor], group["x"].to_numpy(float), [edge]]), floor)
        ys = group["fraction"].to_numpy(float)
        ys = np.concatenate([[0.0], ys, ys[-1:] if len(ys) else [0.0]])
        # Unclipped, over the spines: a target first reached at the end of the budget is a step
        # on the right border.
        ax.step(xs, ys, where="post", label=outputs.literal(optimizer), ls=_style(i), clip_on=False,
                zorder=3)  # over the spine
    ax.set_xscale("log")
    ax.set_xlim(floor, max(edge, 10 * floor))  # a one-evaluation budget: no empty range
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of (run, target) pairs reached")
    ax.set_title(f"{outputs.literal(scope)}: runtime ECDF over log-spaced targets", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, frame["optimizer"].nunique())
    save_plot(fig, path)


def machines(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct machines and versions the records came from."""
    seen = {json.dumps(r["environment"], sort_keys=True) for r in records}
    return [json.loads(s) for s in sorted(seen)]
