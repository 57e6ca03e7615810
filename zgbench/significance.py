"""Significance of the boards' differences: per task, pairwise rank-sum tests on final
values with Holm's correction; over tasks, Friedman's test with Nemenyi's post-hoc test and
a critical-difference diagram (Demšar, "Statistical comparisons of classifiers over
multiple data sets", JMLR 7, 2006).

Why: a board orders medians of a few seeds; these tests say which of its differences the
seeds support. The statistics come from a kept library, scikit-posthocs (Mann-Whitney with
Holm's correction through statsmodels, Nemenyi after Friedman, the CD diagram) and scipy
(Friedman's omnibus test, the studentized range behind the critical difference), installed
with the ``analysis`` extra. autorank was judged too: it refuses fewer than five tasks (a
family has two to five), chooses its test from normality checks (it must be forced to
Friedman/Nemenyi), and has no pairwise rank-sum table per task.

- **Per task** (the runs the boards count, n/a left out): every pair of optimizers gets a
  two-sided Mann-Whitney U test on its seeds' final primary metric (a failure is the worst
  value, as on the boards; scipy's exact p-value without ties, the normal approximation with
  continuity correction otherwise); Holm's step-down correction runs over the task's
  pairs. ``significant``: corrected p < :data:`ALPHA`. Each optimizer is then marked
  ``tied_with_best`` where no difference from the task's rank-1 optimizer(s) is significant.
  With 3 seeds the smallest two-sided exact p-value is 0.1: no pair can be significant, and
  the tables say so (``min_p``) instead of pretending.
- **Over tasks** (scope ``all`` and each family): Friedman's test on the per-task medians of
  the optimizers ranked on at least half the scope's tasks, over the tasks where all of them
  were ranked (Friedman needs complete blocks; ``friedman.csv`` lists who was left out).
  Ranks average ties; 1 is best. The Nemenyi p-values come from scikit-posthocs, the critical
  difference ``CD = q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 N))`` from scipy's studentized
  range; the diagram joins optimizers whose Nemenyi difference is not significant.

:func:`write` writes ``significance/`` under a leaderboard folder: ``pairs.csv``,
``tasks.csv``, ``friedman.csv``, ``ranks.csv``, ``nemenyi_<scope>.csv`` and
``cd_<scope>.png``.
"""

from __future__ import annotations

import gc
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zgbench import stats
from zgbench.errors import UsageError

ALPHA = 0.05
FOLDER = "significance"
#: The extra that installs the statistics libraries.
EXTRA = "analysis"


def _libraries():
    """scipy.stats and scikit_posthocs, or a UsageError naming the extra to install."""
    try:
        import scikit_posthocs
        import scipy.stats
    except ImportError as exc:  # the extra is not installed
        raise UsageError(f"significance tests need scikit-posthocs and scipy ({exc}): "
                         f"pip install 'zgbench[{EXTRA}]'.") from exc
    return scipy.stats, scikit_posthocs


def available() -> bool:
    """Whether the statistics libraries are installed (found, not imported: importing
    scikit-posthocs takes about two seconds)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("scikit_posthocs", "scipy"))


# ----------------------------------------------------------------------------- per task
def rank_sum(runs: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Pairwise Mann-Whitney tests of one task (rows of :func:`leaderboard.runs_frame`: the
    counted runs; failures hold the worst value), Holm-corrected over the task's pairs: one
    row per pair (a before b by name) with both medians, U, raw and corrected p-values,
    ``significant`` and ``better`` (the optimizer with the better median where significant)."""
    scipy_stats, sp = _libraries()
    ran = runs[runs["status"] != "n/a"]
    direction = ran["direction"].iloc[0] if len(ran) else "min"
    values = {name: stats.oriented(group["value"].to_numpy(float), direction)
              for name, group in ran.groupby("optimizer", sort=True)}
    names = list(values)
    columns = ["optimizer_a", "optimizer_b", "n_a", "n_b", "median_a", "median_b", "u", "p",
               "p_holm", "significant", "better"]
    if len(names) < 2:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({"optimizer": np.repeat(names, [len(values[n]) for n in names]),
                          "value": np.concatenate([values[n] for n in names])})
    holm = _matrix(sp.posthoc_mannwhitney(frame, val_col="value", group_col="optimizer",
                                          p_adjust="holm"))
    rows = []
    sign = 1.0 if direction == "min" else -1.0
    for a, b in itertools.combinations(names, 2):
        ma, mb = (float(stats.worse_median(values[n])) for n in (a, b))
        test = scipy_stats.mannwhitneyu(values[a], values[b])  # the same test, uncorrected
        p = 1.0 if math.isnan(test.pvalue) else float(test.pvalue)
        significant = bool(holm.loc[a, b] < alpha)
        better = (a if ma < mb else b if mb < ma else "") if significant else ""
        rows.append([a, b, len(values[a]), len(values[b]), sign * ma, sign * mb,
                     float(test.statistic), p, float(holm.loc[a, b]), significant, better])
    return pd.DataFrame(rows, columns=columns)


def _matrix(p: pd.DataFrame) -> pd.DataFrame:
    """A p-value matrix with NaN (every value tied: no evidence of a difference) as 1."""
    return p.astype(float).fillna(1.0)


def marks(table: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per ranked optimizer of a task table: its rank and median, the corrected p-value
    against the best (rank 1; the smallest over several tied firsts), ``tied_with_best`` (no
    significant difference from every rank-1 optimizer, or rank 1 itself), and how many
    optimizers it significantly beats and loses to."""
    ranked = table[table["rank"].notna()] if "rank" in table else table[:0]
    if "counted" in ranked:
        ranked = ranked[ranked["counted"].astype(bool)]
    best = set(ranked.loc[ranked["rank"] == ranked["rank"].min(), "optimizer"])
    lookup = {}
    for row in pairs.itertuples():
        lookup[(row.optimizer_a, row.optimizer_b)] = lookup[(row.optimizer_b, row.optimizer_a)] \
            = row
    rows = []
    for row in ranked.itertuples():
        name = row.optimizer
        against = [lookup[(name, b)] for b in best if (name, b) in lookup]
        p_best = min((p.p_holm for p in against), default=math.nan)
        mine = [p for key, p in lookup.items() if key[0] == name]
        rows.append({"optimizer": name, "rank": row.rank, "median": row.median,
                     "p_holm_vs_best": p_best,
                     "tied_with_best": name in best or not any(p.significant for p in against),
                     "beats": sum(p.better == name for p in mine),
                     "loses_to": sum(p.significant and p.better != name for p in mine)})
    return pd.DataFrame(rows, columns=["optimizer", "rank", "median", "p_holm_vs_best",
                                       "tied_with_best", "beats", "loses_to"])


# ----------------------------------------------------------------------------- over tasks
@dataclass
class Friedman:
    """Friedman's test and Nemenyi's post-hoc test over one scope's tasks."""

    scope: str
    optimizers: list[str]
    tasks: list[str]
    left_out: list[str]  # optimizers ranked on fewer than half the scope's tasks
    statistic: float
    p: float
    cd: float
    mean_ranks: pd.Series  # optimizer -> mean rank (1 = best)
    nemenyi: pd.DataFrame  # p-values, optimizer x optimizer
    reason: str = ""  # why no test, where there is none


def block_matrix(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str]]:
    """Tasks x optimizers of oriented medians (lower is better) over the complete blocks,
    and the optimizers left out: those ranked on fewer than half the tasks."""
    columns = {}
    for label, table in tables.items():
        ranked = table[table["rank"].notna()]
        if "counted" in ranked:
            ranked = ranked[ranked["counted"].astype(bool)]
        direction = table["direction"].iloc[0]
        columns[label] = pd.Series(stats.oriented(ranked["median"].to_numpy(float), direction),
                                   index=list(ranked["optimizer"]))
    matrix = pd.DataFrame(columns).T  # [task, optimizer]
    coverage = matrix.notna().sum(axis=0)
    keep = sorted(coverage.index[coverage * 2 >= len(matrix)])
    left_out = sorted(set(matrix.columns) - set(keep))
    return matrix[keep].dropna(), left_out


def friedman(tables: dict[str, pd.DataFrame], scope: str = "all",
             alpha: float = ALPHA) -> Friedman:
    """Friedman and Nemenyi over ``tables`` (task label -> a board's task table)."""
    scipy_stats, sp = _libraries()
    matrix, left_out = block_matrix(tables)
    k, n = matrix.shape[1], matrix.shape[0]
    empty = pd.DataFrame()
    if k < 3 or n < 2:
        reason = f"{k} optimizers on {n} complete tasks: Friedman needs 3 and 2"
        return Friedman(scope, list(matrix.columns), list(matrix.index), left_out, math.nan,
                        math.nan, math.nan, pd.Series(dtype=float), empty, reason)
    values = matrix.to_numpy(float)
    ranks = scipy_stats.rankdata(values, axis=1)  # ties averaged; infinite failures rank last
    mean_ranks = pd.Series(ranks.mean(0), index=matrix.columns).sort_values()
    statistic, p = scipy_stats.friedmanchisquare(*values.T)
    nemenyi = _matrix(sp.posthoc_nemenyi_friedman(pd.DataFrame(ranks, columns=matrix.columns)))
    return Friedman(scope, list(matrix.columns), list(matrix.index), left_out, float(statistic),
                    float(p), critical_difference(k, n, alpha), mean_ranks, nemenyi)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for ``k`` optimizers over ``n`` tasks."""
    scipy_stats, _ = _libraries()
    q = scipy_stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def plot_cd(result: Friedman, path: Path, alpha: float = ALPHA) -> None:
    """The critical-difference diagram of ``result`` (scikit-posthocs' drawing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zgbench import outputs

    _, sp = _libraries()
    k = len(result.optimizers)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.22 * k), dpi=110)
    names = {n: outputs.literal(n) for n in result.optimizers}
    ranks = result.mean_ranks.rename(index=names)
    sig = result.nemenyi.rename(index=names, columns=names)
    sp.critical_difference_diagram(ranks, sig, ax=ax, alpha=alpha, label_props={"fontsize": 8})
    # The CD bar above the rank axis's tick labels (the library draws it across them).
    bottom, _ = ax.get_ylim()
    ax.set_ylim(bottom, 2.2)
    left = float(ranks.iloc[0])
    ax.plot([left, left + result.cd], [1.5, 1.5], color="black", lw=2, clip_on=False)
    ax.plot([left, left], [1.35, 1.65], [left + result.cd] * 2, [1.35, 1.65], color="black",
            lw=1, clip_on=False)
    ax.text(left + result.cd / 2, 1.75, f"critical difference {result.cd:.2g}", ha="center",
            va="bottom", fontsize=7)
    ax.set_title(f"{outputs.literal(result.scope)}: mean rank over {len(result.tasks)} tasks "
                 f"(1 = best); Friedman p = {result.p:.2g}; bars join optimizers Nemenyi "
                 f"does not separate (alpha {alpha:g})", fontsize=8, pad=4)
    from zgbench.leaderboard import save_plot

    save_plot(fig, path)


# ----------------------------------------------------------------------------- files
def compute(tables: dict[str, pd.DataFrame], runs: pd.DataFrame,
            families: dict[str, str], alpha: float = ALPHA) -> dict[str, Any]:
    """Every table in memory. ``tables``: the boards' task tables by label; ``runs``: the
    boards' runs frame (with ``counted``); ``families``: task label -> family."""
    counted = runs[runs["counted"]] if "counted" in runs else runs
    pairs, marked = [], []
    # statsmodels' Holm correction (multipletests) runs gc.collect() on every call, which
    # walks every record in memory: half a second per task. Frozen objects are not walked.
    gc.freeze()
    try:
        for label, table in tables.items():
            group = counted[counted["task"] == label]
            task_pairs = rank_sum(group, alpha).assign(task=label)
            pairs.append(task_pairs)
            marked.append(marks(table, task_pairs).assign(
                task=label, min_p=float(task_pairs["p"].min()) if len(task_pairs) else math.nan))
    finally:
        gc.unfreeze()
    scopes = {"all": tables}
    for family in sorted(set(families.values())):
        scopes[family] = {label: t for label, t in tables.items() if families.get(label) == family}
    tests = {scope: friedman(group, scope, alpha) for scope, group in scopes.items() if group}
    return {"pairs": _front(pairs, "task"), "tasks": _front(marked, "task"), "friedman": tests,
            "friedman_table": pd.DataFrame([{
                "scope": t.scope, "optimizers": len(t.optimizers), "tasks": len(t.tasks),
                "statistic": t.statistic, "p": t.p, "cd": t.cd, "alpha": alpha,
                "left_out": ";".join(t.left_out), "reason": t.reason}
                for t in tests.values()]),
            "ranks": pd.DataFrame([{"scope": t.scope, "optimizer": name, "mean_rank": rank}
                                   for t in tests.values()
                                   for name, rank in t.mean_ranks.items()],
                                  columns=["scope", "optimizer", "mean_rank"])}


def _front(frames: list[pd.DataFrame], column: str) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=[column])
    frame = pd.concat(frames, ignore_index=True)
    return frame[[column] + [c for c in frame.columns if c != column]]


def write(out: str | Path, tables: dict[str, pd.DataFrame], runs: pd.DataFrame,
          families: dict[str, str], alpha: float = ALPHA) -> dict[str, Any]:
    """Write ``out/significance/`` (module docstring); returns :func:`compute`'s dict with
    ``files`` (the paths written)."""
    from zgbench.leaderboard import slug
    from zgbench.store import atomic_write_text

    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    computed = compute(tables, runs, families, alpha)
    files = []
    for name in ("pairs", "tasks", "friedman_table", "ranks"):
        path = folder / f"{name.removesuffix('_table')}.csv"
        atomic_write_text(path, computed[name].to_csv(index=False))
        files.append(path)
    for scope, result in computed["friedman"].items():
        if result.reason:
            continue
        path = folder / f"nemenyi_{slug(scope)}.csv"
        atomic_write_text(path, result.nemenyi.to_csv())
        files.append(path)
    from zgbench.leaderboard import Plot, draw

    plots = [Plot("zgbench.significance:plot_cd", folder / f"cd_{slug(scope)}.png",
                  {"result": result, "alpha": alpha})
             for scope, result in computed["friedman"].items() if not result.reason]
    draw(plots)  # keyed: an unchanged diagram is not drawn again
    computed["files"] = files + [p.path for p in plots]
    return computed
