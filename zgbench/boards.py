"""Overall boards: one row per optimizer, coverage, family sub-boards and the two tracks.

Rules (issue 15; the README's leaderboard section states them for readers):

- **One row per optimizer name.** A per-task spec such as ``cma-es[sigma0=0.02]`` counts for
  ``cma-es`` on that task; the task's CSV shows the spec used (column ``spec``).
- **One spec per label.** Two canonical specs can share a label (what people read): an
  optimizer that gained a parameter writes its old runs as ``name[a=1]`` and its new ones as
  ``name[a=1,b=2]``, both labelled ``name``. A board takes exactly one of them per task, the
  one planned (``zgbench run`` passes its plan) else the newest (latest ``finished``), and
  lists the runs it left out (:func:`one_spec_per_label`, ``left_out.csv``); mixing them
  would count twice the seeds and move the medians.
- **Several specs of one optimizer on one task** (hand-run variants): every spec is in the
  task's CSV, but only one counts for the optimizer, the one with the **worst** median over
  seeds (ties: the first spec by name); the others are listed with ``counted = False`` and no
  rank. Picking the best of k specs on the seeds being ranked would reward running more
  variants (selection on the evaluation seeds); the fair way to choose a spec is
  ``zgbench tune`` on tuning seeds, which leaves one spec per optimizer and task.
- **Coverage.** Each row states ``tasks_ranked / tasks`` (tasks of the board). The **main**
  table ranks the optimizers ranked on at least half of the board's tasks
  (:data:`MIN_COVERAGE`); the others sit in the **partial** table (``board = partial``, no
  position): a mean rank over one or two tasks says little against one over ten.
- **Families.** Each task declares a family (``Task.family``: synthetic, graphics, learning,
  radiosity, pde); each family gets the same board over its own tasks, since some methods
  (radiosity residual methods, NON for the PDE) can only run there.
- **Tracks.** ``default`` ranks every optimizer at its defaults; ``tuned`` ranks the specs
  ``zgbench tune`` chose after the same number of trials for everyone. They come from two
  results folders; :func:`tracks_table` puts the positions side by side.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from zgbench import stats
from zgbench.fingerprint import StaleWarning

#: Share of a board's tasks an optimizer must be ranked on to enter its main table.
MIN_COVERAGE = 0.5
#: Family of a task that declares none (and of records from before families).
OTHER = "other"


class OrphanedSpecWarning(StaleWarning):
    """Runs of another canonical spec sit under a planned spec's label (its optimizer's
    parameters changed since they ran): the boards leave them out."""


#: Columns of the runs a board left out (``left_out.csv``).
LEFT_OUT = ["task", "optimizer", "canonical", "kept", "reason", "seed", "status", "run_id"]


def one_spec_per_label(runs: pd.DataFrame, planned: Collection[tuple[str, str]] | None = None,
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of :func:`zgbench.leaderboard.runs_frame` a board uses, and those it leaves
    out: per task and optimizer label exactly one canonical spec, the one in ``planned``
    (pairs of task and optimizer canonical forms) if exactly one is, else the newest (latest
    ``finished`` among its runs; ties: the last by canonical form)."""
    if runs.empty:
        return runs, pd.DataFrame(columns=LEFT_OUT)
    keep = pd.Series(True, index=runs.index)
    kept_as = pd.Series("", index=runs.index, dtype=object)
    reason = pd.Series("", index=runs.index, dtype=object)
    for (task_id, _), group in runs.groupby(["task_id", "spec"], sort=False):
        forms = sorted(group["canonical"].unique())
        if len(forms) < 2:
            continue
        wanted = [form for form in forms if (task_id, form) in (planned or ())]
        if len(wanted) == 1:
            pick, why = wanted[0], "another spec under the same label was planned"
        else:
            pick = max(forms, key=lambda form: (
                str(group.loc[group["canonical"] == form, "finished"].max()), form))
            why = "a newer spec ran under the same label"
        out = group.index[group["canonical"] != pick]
        keep[out], kept_as[out], reason[out] = False, pick, why
    left = runs[~keep].assign(kept=kept_as[~keep], reason=reason[~keep])
    left = left.rename(columns={"spec": "optimizer_label"}).assign(
        optimizer=lambda f: f["optimizer_label"])
    return runs[keep], left.reindex(columns=LEFT_OUT).reset_index(drop=True)


def counted_specs(runs: pd.DataFrame) -> pd.Series:
    """Boolean mask over :func:`zgbench.leaderboard.runs_frame` rows: the runs of the one spec
    per (task, optimizer) that counts, the worst by median when there are several."""
    counted = pd.Series(True, index=runs.index)
    for _, group in runs.groupby(["task_id", "optimizer"], sort=False):
        specs = sorted(group["spec"].unique())
        if len(specs) < 2:
            continue
        worst = max(specs, key=lambda spec: (_median_key(group[group["spec"] == spec]),
                                             -specs.index(spec)))
        counted[group.index] = group["spec"] == worst
    return counted


def _median_key(runs: pd.DataFrame) -> float:
    """Oriented worse median of a spec's runs (n/a only: -inf, so a spec that ran counts)."""
    ran = runs[runs["status"] != "n/a"]
    if ran.empty:
        return -math.inf
    return float(stats.worse_median(stats.oriented(ran["value"], ran["direction"].iloc[0])))


def min_tasks(n_tasks: int, coverage: float = MIN_COVERAGE) -> int:
    """Tasks an optimizer must be ranked on for the main table of an ``n_tasks`` board."""
    return max(1, math.ceil(coverage * n_tasks))


def overall_table(tables: dict[str, pd.DataFrame], summary: pd.DataFrame | None = None,
                  coverage: float = MIN_COVERAGE) -> pd.DataFrame:
    """Per optimizer name over the task tables: mean rank, coverage, wins, n/a and failed
    counts, then ``summary`` (:func:`stats.overall_stats`: norm_score and rank intervals)
    merged in; the main table first (by mean rank, then normalised score, with positions
    that ties share: :func:`_positions`), then the partial one."""
    n_tasks = len(tables)
    rows: dict[str, dict[str, Any]] = {}
    for table in tables.values():
        rows_counted = table[table["counted"].astype(bool)] if "counted" in table else table
        for _, row in rows_counted.iterrows():
            entry = rows.setdefault(row["optimizer"], {"optimizer": row["optimizer"], "ranks": [],
                                                        "wins": 0, "n/a": 0, "failed_tasks": 0})
            if row["status"] == "n/a":
                entry["n/a"] += 1
                continue
            entry["ranks"].append(row["rank"])
            entry["wins"] += int(row["rank"] == 1)
            entry["failed_tasks"] += int(row["status"] == "failed")
    need = min_tasks(n_tasks, coverage)
    out = pd.DataFrame([
        {"optimizer": e["optimizer"],
         "board": "main" if len(e["ranks"]) >= need else "partial",
         "mean_rank": float(np.mean(e["ranks"])) if e["ranks"] else math.nan,
         "tasks_ranked": len(e["ranks"]), "coverage": f"{len(e['ranks'])}/{n_tasks}",
         "wins": e["wins"], "n/a": e["n/a"], "failed_tasks": e["failed_tasks"]}
        for e in rows.values()
    ])
    if out.empty:
        return out
    if summary is not None and not summary.empty:
        out = out.merge(summary, on="optimizer", how="left")
    out["_partial"] = out["board"] != "main"
    out["_score"] = out["norm_score"] if "norm_score" in out else math.nan
    out = out.sort_values(["_partial", "mean_rank", "_score", "optimizer"],
                          na_position="last").reset_index(drop=True)
    out.insert(0, "position", pd.array(_positions(out), dtype="Int64"))
    return out.drop(columns=["_partial", "_score"])


def _positions(board: pd.DataFrame) -> list[Any]:
    """Competition positions (1, 2, 2, 4) of a board sorted by mean rank then normalised
    score: a row shares the position of the row above when both its mean rank and its
    normalised score (missing counts as equal to missing) are the same; the name only orders
    the display, it never breaks a tie. The partial table has no positions."""
    positions: list[Any] = []
    previous: tuple[float, float] | None = None
    rows = zip(board["_partial"], board["mean_rank"], board["_score"])
    for index, (partial, mean_rank, score) in enumerate(rows):
        if partial:
            positions.append(pd.NA)
            continue
        key = (float(mean_rank), float(score))
        tied = previous is not None and all(
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
            for a, b in zip(key, previous))
        positions.append(positions[-1] if tied else index + 1)
        previous = key
    return positions


def with_caveats(board: pd.DataFrame, caveats: Mapping[str, str]) -> pd.DataFrame:
    """``board`` with a ``caveat`` column: what the suite declares should be read next to an
    optimizer's number (its budget far below its claim's setting), blank for the others.
    Unchanged when the suite declares no caveat."""
    if not caveats or board.empty or "optimizer" not in board:
        return board
    return board.assign(caveat=board["optimizer"].map(lambda name: caveats.get(name, "")))


def family_tables(tables: dict[str, pd.DataFrame], task_ids: dict[str, str],
                  families: dict[str, str], analysis: stats.Analysis,
                  coverage: float = MIN_COVERAGE) -> pd.DataFrame:
    """One :func:`overall_table` per family over its own tasks, in one long table (column
    ``family`` first; ``tasks`` lists the family's task labels)."""
    parts = []
    for family in sorted(set(families.values())):
        labels = [label for label in tables if families[task_ids[label]] == family]
        subset = {label: tables[label] for label in labels}
        summary = stats.overall_stats([analysis.tasks[task_ids[label]] for label in labels])
        board = overall_table(subset, summary, coverage)
        if not board.empty:
            parts.append(board.assign(family=family, tasks=", ".join(labels)))
    if not parts:
        return pd.DataFrame(columns=["family"])
    long = pd.concat(parts, ignore_index=True)
    return long[["family"] + [c for c in long.columns if c != "family"]]


def tracks_table(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The overall boards of each track side by side, one row per optimizer: for every track
    its position (blank: partial table), mean rank, coverage and normalised score, and with
    two tracks the positions moved (``moved`` > 0: better after tuning)."""
    merged: pd.DataFrame | None = None
    for track, board in boards.items():
        columns = [c for c in ("optimizer", "position", "mean_rank", "coverage", "norm_score")
                   if c in board.columns]
        part = board[columns].rename(columns={c: f"{track}_{c}" for c in columns
                                              if c != "optimizer"})
        merged = part if merged is None else merged.merge(part, on="optimizer", how="outer")
    if merged is None:
        return pd.DataFrame(columns=["optimizer"])
    names = list(boards)
    if len(names) == 2:
        a, b = (f"{n}_position" for n in names)
        merged["moved"] = merged[a] - merged[b]
    sort = [f"{n}_position" for n in names if f"{n}_position" in merged]
    merged = merged.sort_values(sort + ["optimizer"], na_position="last").reset_index(drop=True)
    caveats = {}  # the same budgets on every track: one caveat per optimizer
    for board in boards.values():
        if "caveat" in board:
            caveats.update({k: v for k, v in zip(board["optimizer"], board["caveat"]) if v})
    return with_caveats(merged, caveats)


def kendall_tau(a: pd.Series, b: pd.Series) -> float:
    """Kendall's tau-b between two rankings over their common, non-missing entries; 1 = the
    same order. Hand-written (O(n²), a few dozen optimizers) because scipy is not a core
    dependency."""
    both = pd.concat([a, b], axis=1).dropna().to_numpy(dtype=float)
    if len(both) < 2:
        return math.nan
    dx = np.sign(both[:, None, 0] - both[None, :, 0])
    dy = np.sign(both[:, None, 1] - both[None, :, 1])
    upper = np.triu_indices(len(both), 1)
    concordant = (dx * dy)[upper].sum()
    tx, ty = (dx[upper] != 0).sum(), (dy[upper] != 0).sum()
    return float(concordant / math.sqrt(tx * ty)) if tx and ty else math.nan


def markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    """A board as a Markdown table (numbers to 3 significant digits, blanks as ``-``), for
    the README; hand-written because ``DataFrame.to_markdown`` needs ``tabulate``."""
    columns = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame[columns].iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is pd.NA:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.3g}"
    return str(value)
