"""Statistics behind the leaderboards: normalised scores, bootstrap intervals, win rates and
runtime ECDFs, so that tasks with different metrics can be compared and averaged honestly.

- **Normalised score** (as Bayesmark does; Turner et al., "Bayesian Optimization is Superior to
  Random Search for Machine Learning Hyperparameter Tuning: Analysis of the Black-Box
  Optimization Challenge 2020", PMLR 133, 2021): per task and run,
  ``(v - best) / (ref - best)`` on the primary metric turned into "lower is better", where
  ``best`` is the **best known value** — the best primary-metric value any run in the results
  reached at any checkpoint on that task (the record format has no task-declared optimum) —
  and ``ref`` is the baseline's median final value on the task: the optimizer the suite
  declares (:mod:`zgbench.declared`; random search in the quick suite, as in Bayesmark). 0 is
  the best known value, 1 is the baseline. Scores are clipped to ``[0, CAP]``: a failed or
  diverged run counts as ``CAP`` times the baseline's distance to the best, so one catastrophe
  cannot dominate a mean over tasks, and failing is never better than finishing. A task
  without a finished baseline run, or results without a declared baseline, have no
  normalised score. Where the baseline's median *is* the best known value (it found the
  best), that formula would score every tie 0 and anything worse the clip; the start's
  median then scales the score instead (:func:`score_reference`).
- **Medians with failures** (:func:`worse_quantile`): a failed run is the worst value (+inf
  once oriented). Between two finite order statistics a quantile interpolates linearly, as
  numpy does; where one of the two neighbours is a failure it takes the worse neighbour, so
  with an even number of seeds {0.09, inf} has median inf: failing half the runs never ranks
  above an honest optimizer. Every median and quantile that ranks (the tables' median and
  quartiles, the bootstrap replicates, the baseline's median) uses this rule, and the
  normalised score of an optimizer is the normalised value of that median.
- **Bootstrap intervals** (percentile bootstrap, Efron & Tibshirani, "An Introduction to the
  Bootstrap", 1993): seeds are resampled with replacement, paired across optimizers (every
  optimizer faces the same task instance for a seed), ``n_boot`` times from a generator seeded
  by the task's identity, so the numbers are deterministic. Each replicate gives every
  optimizer a median, a normalised median and a rank (competition ranking, as the tables);
  intervals are the replicate quantiles; overall intervals average the same replicate over
  tasks. The best-known value and the baseline stay fixed across replicates.
- **Separation** (issue 22, "suites that discriminate"): per task, the start's interval is
  the same bootstrap of the median over seeds applied to θ₀'s values (one per instance, so
  the same resampled seeds as the optimizers'). An optimizer ``beats_start`` where its
  median's interval lies entirely on the better side of the start's, and
  ``beats_baseline`` where it lies entirely on the better side of the baseline's (blank
  where the baseline did not run on the task, and for the baseline itself). A task
  ``separates`` where some optimizer other than the baseline beats both (the start only,
  where no baseline ran): only then does its board say which optimizer to use rather than
  that nothing moved or that random search does as well. With 3 seeds the percentile
  interval of a median is the seeds' range, so separation means every seed's result lies
  beyond every seed of the start and of the baseline.
- **Win rate**: over every (task, seed) where both ran, how often A's final value is better
  than B's (ties count one half; a failure is the worst value).
- **Runtime ECDF** (COCO; Hansen et al., "COCO: a platform for comparing continuous optimizers
  in a black-box setting", Optim. Methods Softw. 36, 2021, and "Anytime performance
  assessment in blackbox optimization benchmarking", IEEE TEVC 2022): per task, targets are
  the best known value plus gaps log-spaced below the median initial gap (which every run
  would reach at no cost) down to the smallest positive gap any run reached; the curve is the
  fraction of (run, target) pairs reached by a given spend. Per task the spend is the one
  counter the task's budget bounds (:func:`spend_axis`: loss evaluations, gradients or steps;
  never their sum, since a gradient and an evaluation cost differently), else the fraction of
  the budget; aggregated over tasks (each task weighted equally) it is the fraction of the
  run's budget.

The bootstrap and ranks are written with numpy rather than ``scipy.stats.bootstrap``: failed
runs are infinite values (interpolating percentiles turn them into NaN), the rank statistic
couples all optimizers of a replicate, and scipy is not a core dependency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zgbench.budget import Budget
from zgbench.seeding import derive_seed

#: Upper clip of normalised scores (failed or diverged runs land here).
CAP = 5.0
N_BOOT = 2000
CONFIDENCE = 0.95
#: Number of ECDF targets per task.
TARGETS = 20


# ----------------------------------------------------------------------------- primitives
def oriented(values: Any, direction: str) -> np.ndarray:
    """Values turned into "lower is better" (``max`` metrics are negated)."""
    values = np.asarray(values, dtype=float)
    return values if direction == "min" else -values


def normalise(values: Any, best: float, ref: float, cap: float = CAP) -> np.ndarray:
    """``(values - best) / (ref - best)`` clipped to ``[0, cap]`` (oriented values; NaN stays
    NaN). Without a usable reference (NaN or infinite) every score is NaN; if the reference
    equals the best known value, matching it scores 0 and anything worse scores ``cap``."""
    values = np.asarray(values, dtype=float)
    if not (math.isfinite(ref) and math.isfinite(best)):
        return np.full_like(values, math.nan)
    span = ref - best
    with np.errstate(invalid="ignore", divide="ignore"):
        if span > 0:
            scores = (values - best) / span
        else:
            scores = np.where(values <= best, 0.0, math.inf)
    return np.where(np.isnan(values), math.nan, np.clip(scores, 0.0, cap))


def competition_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, lower is better, ties share the better rank (1, 2, 2, 4);
    NaN entries are not ranked (NaN). Same rule as ``pandas.Series.rank(method="min")``."""
    values = np.asarray(values, dtype=float)
    better = (values[..., None, :] < values[..., :, None]).sum(-1)
    return np.where(np.isnan(values), math.nan, better + 1.0)


def bootstrap_indices(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n_seeds]`` seed indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))


def worse_quantile(values: Any, q: float, axis: int = -1) -> np.ndarray:
    """Quantile ``q`` of oriented values ("lower is better", failures +inf) along ``axis``,
    ignoring NaN (missing seeds; all NaN gives NaN).

    Linear interpolation between the two order statistics around ``q (n - 1)`` when both are
    finite, else the worse (larger) of the two: numpy's interpolation turns {0.09, inf} into
    NaN (inf - inf) and ``method="nearest"`` then rounds to 0.09, which let half-failing
    optimizers rank first. Hand-written because no numpy method interpolates finite pairs and
    rounds toward the worse side at infinities.
    """
    values = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
    ordered = np.sort(values, axis=-1)  # NaN sort last
    n = (~np.isnan(ordered)).sum(-1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(int)[..., None]
    hi = np.ceil(pos).astype(int)[..., None]
    a = np.take_along_axis(ordered, lo, -1)[..., 0]
    b = np.take_along_axis(ordered, hi, -1)[..., 0]
    frac = pos - np.floor(pos)
    with np.errstate(invalid="ignore"):
        mixed = a + (b - a) * frac
    out = np.where(np.isfinite(a) & np.isfinite(b), mixed, b)
    return np.where(n == 0, math.nan, out)


def worse_median(values: Any, axis: int = -1) -> np.ndarray:
    """:func:`worse_quantile` at 0.5: the median, taking the worse middle value at failures."""
    return worse_quantile(values, 0.5, axis)


def resampled_medians(matrix: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Medians (:func:`worse_median`) over resampled seeds: ``matrix[O, S]`` (oriented),
    ``idx[B, S]`` -> ``[B, O]`` (NaN-aware)."""
    return worse_median(matrix[:, idx], axis=2).T


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN replicates (a resample that drew only
    seeds an optimizer lacks). Uses order statistics (``inverted_cdf``), so infinite
    replicates (failed runs) stay infinite instead of becoming NaN."""
    import warnings

    samples = np.asarray(samples, dtype=float)
    alpha = (1.0 - confidence) / 2.0
    if samples.size == 0:
        nan = np.full(samples.shape[1:], math.nan)
        return nan, nan.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        lo, hi = np.nanquantile(samples, [alpha, 1.0 - alpha], axis=0, method="inverted_cdf")
    return lo, hi


# ----------------------------------------------------------------------------- per task
@dataclass
class TaskStats:
    """Bootstrap statistics of one task: a table per optimizer plus the raw replicates."""

    task: str
    table: pd.DataFrame
    optimizers: list[str]
    score_reps: np.ndarray  # [B, O] normalised medians
    rank_reps: np.ndarray  # [B, O] ranks
    best: float  # oriented best known value
    ref: float  # oriented baseline median
    start: tuple[float, float] = (math.nan, math.nan)  # interval of the start's median
    separates: bool | None = None  # None: no start known (see the module docstring)


def best_known(records: Iterable[dict[str, Any]]) -> float:
    """The best primary-metric value (oriented) any ok run reached at any checkpoint."""
    best = math.inf
    for r in records:
        if r.get("status") != "ok":
            continue
        metric = r["task"]["primary_metric"]
        direction = r["task"]["metrics"][metric]
        for point in r.get("trajectory") or []:
            value = (point.get("metrics") or {}).get(metric)
            if value is not None and math.isfinite(value):
                best = min(best, float(oriented(value, direction)))
    return best


def task_stats(runs: pd.DataFrame, records: list[dict[str, Any]], *, baseline: str | None = None,
               n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0,
               cap: float = CAP) -> TaskStats:
    """Statistics of one task from its rows of :func:`zgbench.leaderboard.runs_frame` (final
    values, failures already worst) and its records (trajectories, for the best known value)."""
    direction = runs["direction"].iloc[0]
    task_id = runs["task_id"].iloc[0]
    ran = runs[runs["status"] != "n/a"]
    if ran.empty:  # every pair n/a: nothing to rank
        empty = np.empty((n_boot, 0))
        return TaskStats(runs["task"].iloc[0], _task_frame([], np.empty((0, 0)), empty, empty,
                                                           empty, direction, confidence,
                                                           math.inf, math.nan),
                         [], empty, empty, math.inf, math.nan)
    pivot = ran.pivot_table(index="optimizer", columns="seed", values="value", aggfunc="first",
                            dropna=False)
    optimizers = list(pivot.index)
    matrix = oriented(pivot.to_numpy(dtype=float), direction)  # [O, S], NaN = missing seed
    best = min(best_known(records), float(np.nanmin(matrix, initial=math.inf)))
    ref = (float(worse_median(matrix[optimizers.index(baseline)]))
           if baseline in optimizers else math.nan)
    scale = score_reference(best, ref, start_median(runs, direction))
    scores = normalise(worse_median(matrix, axis=1), best, scale, cap)  # [O]
    idx = bootstrap_indices(matrix.shape[1], n_boot, derive_seed("bootstrap", task_id, seed))
    median_reps = resampled_medians(matrix, idx)
    score_reps = normalise(median_reps, best, scale, cap)
    rank_reps = competition_ranks(median_reps)
    table = _task_frame(optimizers, scores, median_reps, score_reps, rank_reps, direction,
                        confidence, best, ref)
    start = start_interval(runs, list(pivot.columns), idx, direction, confidence)
    table = with_separation(table, start, baseline, direction)
    return TaskStats(runs["task"].iloc[0], table, optimizers, score_reps, rank_reps, best, ref,
                     start, separates(table, start, baseline))


def start_median(runs: pd.DataFrame, direction: str) -> float:
    """The start's median (oriented) over the task's instances, NaN where unknown."""
    if "start" not in runs:
        return math.nan
    per_seed = runs.dropna(subset=["start"]).groupby("seed")["start"].first()
    if per_seed.empty:
        return math.nan
    return float(worse_median(oriented(per_seed.to_numpy(dtype=float), direction)))


def score_reference(best: float, ref: float, start: float) -> float:
    """The value that scores 1: the baseline's median ``ref``, unless it equals the best
    known value (the baseline found the best, as random search does on a plateau task such as
    ``step``). Then ``(v - best) / (ref - best)`` degenerates: every tie scores 0 and anything
    worse the clip, so one near-miss weighs as a catastrophe in the mean over tasks. There
    the start's median is the reference instead: the scale of what an optimizer achieves is
    how much of the way from θ₀ to the best it went (0 = the best, which the baseline
    reached; 1 = no better than the start). Where the start is no worse than the best
    either (nothing moved on the task), there is no scale and no score (NaN)."""
    if math.isfinite(ref) and math.isfinite(best) and ref > best:
        return ref
    if not math.isfinite(ref):
        return ref  # no baseline ran: no normalised score, as before
    return start if math.isfinite(start) and start > best else math.nan


def start_interval(runs: pd.DataFrame, seeds: list[Any], idx: np.ndarray, direction: str,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The bootstrap interval of the start's median over the task's instances, resampled with
    the optimizers' replicates ``idx`` over ``seeds`` (their columns); NaN where a seed's start
    is unknown (records without one): a partial start would misplace the interval."""
    if "start" not in runs:
        return math.nan, math.nan
    per_seed = runs.dropna(subset=["start"]).groupby("seed")["start"].first()
    values = oriented(per_seed.reindex(seeds).to_numpy(dtype=float), direction)
    if not len(values) or np.isnan(values).any():
        return math.nan, math.nan
    lo, hi = interval(worse_median(values[idx], axis=1)[:, None], confidence)
    lo, hi = float(lo[0]), float(hi[0])
    return (lo, hi) if direction == "min" else (-hi, -lo)


def clear_of(lo: Any, hi: Any, other: tuple[float, float], direction: str) -> np.ndarray:
    """Whether each interval ``[lo, hi]`` lies entirely on the better side of ``other``
    (strictly: touching intervals overlap); False where either end is NaN."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    with np.errstate(invalid="ignore"):
        return hi < other[0] if direction == "min" else lo > other[1]


def with_separation(table: pd.DataFrame, start: tuple[float, float], baseline: str | None,
                    direction: str) -> pd.DataFrame:
    """``table`` with ``start_lo``/``start_hi`` and each optimizer's ``beats_start`` and
    ``beats_baseline`` (None for the baseline itself and where no baseline ran)."""
    lo, hi = table["median_lo"], table["median_hi"]
    known = not math.isnan(start[0])
    out = table.assign(start_lo=start[0], start_hi=start[1],
                       beats_start=[bool(b) if known else None
                                    for b in clear_of(lo, hi, start, direction)])
    names = list(table["optimizer"])
    if baseline not in names:
        return out.assign(beats_baseline=None)
    row = names.index(baseline)
    base = (float(lo.iloc[row]), float(hi.iloc[row]))
    beats = [None if name == baseline else bool(b)
             for name, b in zip(names, clear_of(lo, hi, base, direction))]
    return out.assign(beats_baseline=beats)


def separates(table: pd.DataFrame, start: tuple[float, float], baseline: str | None) -> bool | None:
    """Whether some optimizer other than the baseline beats the start and the baseline (the
    start alone where no baseline ran) with intervals that do not overlap; None where the
    start is unknown."""
    if math.isnan(start[0]):
        return None
    ran = baseline in set(table["optimizer"])
    return any(bool(row.beats_start) and (bool(row.beats_baseline) if ran else True)
               for row in table.itertuples() if row.optimizer != baseline)


def _task_frame(optimizers, scores, median_reps, score_reps, rank_reps, direction, confidence,
                best, ref) -> pd.DataFrame:
    lo, hi = interval(median_reps, confidence)
    if direction == "max":  # back to the metric's own sign: the interval flips
        lo, hi = -hi, -lo
    score_lo, score_hi = interval(score_reps, confidence)
    rank_lo, rank_hi = interval(rank_reps, confidence)
    score = np.asarray(scores, dtype=float).reshape(-1)  # normalised worse medians, [O]
    sign = 1.0 if direction == "min" else -1.0
    return pd.DataFrame({
        "optimizer": optimizers, "median_lo": lo, "median_hi": hi, "norm_score": score,
        "norm_score_lo": score_lo, "norm_score_hi": score_hi, "rank_lo": rank_lo,
        "rank_hi": rank_hi, "best_known": sign * best if math.isfinite(best) else math.nan,
        "baseline_median": sign * ref if math.isfinite(ref) else math.nan,
    })


# ----------------------------------------------------------------------------- overall
def overall_stats(tasks: Iterable[TaskStats], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per optimizer: mean normalised score and mean rank over tasks, with bootstrap intervals
    (each replicate averages that replicate's per-task values over the optimizer's tasks)."""
    scores: dict[str, list[np.ndarray]] = {}
    ranks: dict[str, list[np.ndarray]] = {}
    points: dict[str, list[float]] = {}
    for ts in tasks:
        for j, name in enumerate(ts.optimizers):
            score = float(ts.table["norm_score"].iloc[j])
            if not math.isnan(score):
                scores.setdefault(name, []).append(ts.score_reps[:, j])
                points.setdefault(name, []).append(score)
            ranks.setdefault(name, []).append(ts.rank_reps[:, j])
    rows = []
    for name in sorted(set(scores) | set(ranks)):
        row: dict[str, Any] = {"optimizer": name, "tasks_scored": len(points.get(name, []))}
        if name in scores:
            reps = _nanmean(np.stack(scores[name], axis=1))
            lo, hi = interval(reps[:, None], confidence)
            row.update(norm_score=float(np.mean(points[name])), norm_score_lo=float(lo[0]),
                       norm_score_hi=float(hi[0]))
        reps = _nanmean(np.stack(ranks[name], axis=1))
        lo, hi = interval(reps[:, None], confidence)
        row.update(rank_lo=float(lo[0]), rank_hi=float(hi[0]))
        rows.append(row)
    columns = ["optimizer", "norm_score", "norm_score_lo", "norm_score_hi", "tasks_scored",
               "rank_lo", "rank_hi"]
    return pd.DataFrame(rows, columns=columns)


def _nanmean(stacked: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stacked, axis=1)


def win_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """Matrix A x B: the share of (task, seed) pairs where both ran and A's final value beats
    B's (ties count 1/2). NaN where the two never met; the diagonal is NaN."""
    ran = runs[runs["status"] != "n/a"].copy()
    ran["oriented"] = np.where(ran["direction"] == "min", ran["value"], -ran["value"])
    names = sorted(ran["optimizer"].unique())
    wins = pd.DataFrame(0.0, index=names, columns=names)
    meetings = pd.DataFrame(0, index=names, columns=names)
    for _, group in ran.groupby(["task_id", "seed"]):
        values = group.groupby("optimizer")["oriented"].first()
        v = values.to_numpy(dtype=float)
        score = (v[:, None] < v[None, :]) + 0.5 * (v[:, None] == v[None, :])
        wins.loc[values.index, values.index] += score
        meetings.loc[values.index, values.index] += 1
    rate = wins / meetings.where(meetings > 0)
    for name in names:
        rate.loc[name, name] = math.nan
    rate.index.name = "optimizer"
    return rate


# ----------------------------------------------------------------------------- runtime ECDF
@dataclass
class Runtimes:
    """First spend at which each run reached each target of one task (inf: never)."""

    task: str
    targets: np.ndarray
    calls: dict[str, list[np.ndarray]] = field(default_factory=dict)  # optimizer -> [T] per run
    fractions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    axis: str = "evals"  # what ``calls`` counts (:func:`spend_axis`)


#: The x axes of a task's convergence plot and runtime ECDF, in words. One counter, never a
#: sum: a gradient costs far more than a loss evaluation (a backward pass, or d of them for
#: a finite-difference method), so "oracle calls" (evals + grads) put a gradient method's
#: 100 gradients level with 100 evaluations of a DFO method.
SPEND_AXES = {"evals": "loss evaluations", "grads": "gradient evaluations",
              "steps": "optimizer steps",
              "budget_fraction": "fraction of the budget spent (of its most-used limit)"}


def _budget(record: dict[str, Any]) -> Budget:
    return Budget(**(record.get("identity", {}).get("budget") or {"evals": 1}))


def spend_axis(records: Iterable[dict[str, Any]]) -> str:
    """What a task's runs spent, on one axis (a key of :data:`SPEND_AXES`): the one counter
    their budget bounds (evaluations, gradients or steps), where every run has the same one
    and no run spent evaluations or gradients beyond it; else the fraction of each run's
    budget (its most-used limit), which every run has."""
    axes = set()
    for r in records:
        limits = _budget(r).as_dict()
        bounded = [k for k in ("evals", "grads", "steps") if limits.get(k) is not None]
        spent = {k for p in r.get("trajectory") or [] for k in ("evals", "grads") if p.get(k)}
        axes.add(bounded[0] if len(bounded) == 1 and spent <= set(bounded) else "budget_fraction")
    return axes.pop() if len(axes) == 1 else "budget_fraction"


def spend(point: dict[str, Any], budget: Budget, axis: str) -> float:
    """A checkpoint's spend on ``axis`` (:func:`spend_axis`)."""
    if axis == "budget_fraction":
        return budget.fraction(point["evals"], point["grads"], point.get("steps", 0),
                               point.get("seconds", 0.0))
    return float(point.get(axis, 0))


def _series(record: dict[str, Any], axis: str = "evals",
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spend on the task's ``axis``, budget fraction, oriented primary metric) at each
    checkpoint."""
    metric = record["task"]["primary_metric"]
    direction = record["task"]["metrics"][metric]
    budget = _budget(record)
    traj = record.get("trajectory") or []
    calls = np.array([spend(p, budget, axis) for p in traj], dtype=float)
    frac = np.array([spend(p, budget, "budget_fraction") for p in traj], dtype=float)
    values = [(p.get("metrics") or {}).get(metric) for p in traj]
    ys = oriented([math.inf if v is None else v for v in values], direction)
    ys = np.where(np.isnan(ys), math.inf, ys)
    return calls, frac, ys


def runtimes(records: list[dict[str, Any]], n_targets: int = TARGETS) -> Runtimes | None:
    """Targets and runtimes of one task's records; ``None`` if no target can be defined
    (no finished run, or no run started above the best known value). Failed runs reach no
    target (a failure counts as the worst outcome, as in the tables)."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("trajectory")]
    if not ok:
        return None
    best = best_known(ok)
    if not math.isfinite(best):  # every metric NaN or infinite: no target to reach
        return None
    axis = spend_axis(ok)
    series = [_series(r, axis) for r in ok]
    initial_gaps = np.array([ys[0] - best for _, _, ys in series])
    g0 = float(np.median(initial_gaps[np.isfinite(initial_gaps)])) if np.isfinite(
        initial_gaps).any() else math.nan
    if not (math.isfinite(g0) and g0 > 0):
        return None
    gaps = np.concatenate([ys - best for _, _, ys in series])
    below = gaps[(gaps > 0) & (gaps < g0)]
    # log-spaced strictly below the median start, down to the closest approach of any run; if
    # no run got closer than its start without matching the best, the best is the only target
    targets = np.geomspace(g0, below.min(), n_targets + 1)[1:] if below.size else np.zeros(1)
    out = Runtimes(records[0]["task"]["label"], best + targets, axis=axis)
    for r in records:
        if r.get("status") == "n/a":
            continue
        name = r["optimizer"]["label"]
        hit_calls = np.full(len(targets), math.inf)
        hit_frac = np.full(len(targets), math.inf)
        if r.get("status") == "ok" and r.get("trajectory"):
            calls, frac, ys = _series(r, axis)
            reached = (ys[None, :] - best) <= targets[:, None]  # [T, checkpoints]
            first = np.where(reached.any(1), reached.argmax(1), -1)
            hit_calls = np.where(first >= 0, calls[first], math.inf)
            hit_frac = np.where(first >= 0, frac[first], math.inf)
        out.calls.setdefault(name, []).append(hit_calls)
        out.fractions.setdefault(name, []).append(hit_frac)
    return out


def ecdf(per_task: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of (run, target) pairs reached by each spend: ``per_task`` holds, per task, the
    runs' runtime arrays; every task weighs the same. Returns (spend, fraction) steps."""
    times, weights = [], []
    for runs in per_task:
        flat = np.concatenate(runs)
        times.append(flat)
        weights.append(np.full(flat.shape, 1.0 / (flat.size * len(per_task))))
    t, w = np.concatenate(times), np.concatenate(weights)
    finite = np.isfinite(t)
    order = np.argsort(t[finite], kind="stable")
    xs, cum = t[finite][order], np.cumsum(w[finite][order])
    if xs.size == 0:
        return np.array([0.0]), np.array([0.0])
    keep = np.append(xs[1:] != xs[:-1], True)  # last of each equal spend
    return xs[keep], cum[keep]


def profiles(runtimes_by_task: list[Runtimes]) -> pd.DataFrame:
    """Long table of ECDF steps: per task on its spend axis (:func:`spend_axis`), and over
    all tasks on the budget fraction (columns scope, optimizer, x, x_kind, fraction)."""
    rows = []
    names = sorted({n for rt in runtimes_by_task for n in rt.calls})
    for rt in runtimes_by_task:
        for name in sorted(rt.calls):
            xs, ys = ecdf([rt.calls[name]])
            rows += [(rt.task, name, x, rt.axis, y) for x, y in zip(xs, ys)]
    for name in names:
        per_task = [rt.fractions[name] for rt in runtimes_by_task if name in rt.fractions]
        xs, ys = ecdf(per_task)
        rows += [("all", name, x, "budget_fraction", y) for x, y in zip(xs, ys)]
    return pd.DataFrame(rows, columns=["scope", "optimizer", "x", "x_kind", "fraction"])


# ----------------------------------------------------------------------------- analysis
@dataclass
class Analysis:
    """Everything :func:`zgbench.leaderboard.write` adds to the plain tables."""

    tasks: dict[str, TaskStats]  # by task id (canonical spec)
    overall: pd.DataFrame
    win_rate: pd.DataFrame
    profiles: pd.DataFrame


def analyse(runs: pd.DataFrame, records: list[dict[str, Any]], *, baseline: str | None = None,
            n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0) -> Analysis:
    """Statistics for every task of a results folder (rows of ``runs_frame`` and records)."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"]["canonical"], []).append(r)
    tasks, rts = {}, []
    for task_id, group in runs.groupby("task_id", sort=True):
        tasks[task_id] = task_stats(group, by_task.get(task_id, []), baseline=baseline,
                                    n_boot=n_boot, confidence=confidence, seed=seed)
        rt = runtimes(by_task.get(task_id, []))
        if rt is not None:
            rts.append(rt)
    return Analysis(tasks, overall_stats(tasks.values(), confidence), win_rates(runs),
                    profiles(rts))


# ----------------------------------------------------------------------------- regression gate
def pair_keys(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """The columns that match a pair across two stats tables: task and optimizer, and the
    spec where both tables have it (an optimizer may run several specs on one task)."""
    return ["task", "optimizer"] + (["spec"] if "spec" in old and "spec" in new else [])


def compare(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Compare two long ``stats`` tables (task, optimizer, metric, direction, median,
    median_lo, median_hi, status) pair by pair.

    A pair **regressed** when its new median is worse than the old interval's worse end and
    the old median is better than the new interval's better end (each median lies outside the
    other's bootstrap interval); **improved** symmetrically; otherwise **unchanged**. Pairs in
    only one table are **missing** or **added**; pairs n/a in either or measured with another
    metric are **incomparable**. Failures are the worst value, so a pair that now fails on most
    seeds regresses.
    """
    keys = pair_keys(old, new)
    merged = old.merge(new, on=keys, how="outer", suffixes=("_old", "_new"), indicator=True)
    rows = []
    for _, row in merged.iterrows():
        rows.append({"task": row["task"], "optimizer": row["optimizer"],
                     **({"spec": row["spec"]} if "spec" in keys else {}),
                     "metric": row.get("metric_new") if isinstance(row.get("metric_new"), str)
                     else row.get("metric_old"),
                     "old_median": row.get("median_old"), "old_lo": row.get("median_lo_old"),
                     "old_hi": row.get("median_hi_old"), "new_median": row.get("median_new"),
                     "new_lo": row.get("median_lo_new"), "new_hi": row.get("median_hi_new"),
                     "verdict": _verdict(row)})
    columns = keys + ["metric", "old_median", "old_lo", "old_hi", "new_median",
               "new_lo", "new_hi", "verdict"]
    return pd.DataFrame(rows, columns=columns).sort_values(keys, ignore_index=True)


def _verdict(row: pd.Series) -> str:
    if row["_merge"] == "left_only":
        return "missing"
    if row["_merge"] == "right_only":
        return "added"
    if row["status_old"] == "n/a" or row["status_new"] == "n/a" or (
            row["metric_old"] != row["metric_new"]) or (
            row["direction_old"] != row["direction_new"]):
        return "incomparable"
    d = row["direction_new"]
    old_m, new_m = float(oriented(row["median_old"], d)), float(oriented(row["median_new"], d))
    old_lo, old_hi = sorted(float(oriented(row[c], d)) for c in ("median_lo_old", "median_hi_old"))
    new_lo, new_hi = sorted(float(oriented(row[c], d)) for c in ("median_lo_new", "median_hi_new"))
    if any(math.isnan(v) for v in (old_m, new_m, old_lo, old_hi, new_lo, new_hi)):
        return "incomparable"
    if new_m > old_hi and old_m < new_lo:
        return "regressed"
    if new_m < old_lo and old_m > new_hi:
        return "improved"
    return "unchanged"


# --------------------------------------------------------------------------- curves over runs
def held_on_grid(series: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Each run's values ``ys`` at its checkpoints ``xs`` held constant until its next
    checkpoint, read at ``grid``: one row per run; a non-finite value becomes NaN (plots and
    quantiles skip it). The convergence curves of the boards and of the report share it."""
    stacked = np.stack([ys[np.clip(np.searchsorted(xs, grid, side="right") - 1, 0, None)]
                        for xs, ys in series])
    return np.where(np.isfinite(stacked), stacked, math.nan)


def nanquantiles(stacked: np.ndarray, qs: Iterable[float]) -> list[np.ndarray]:
    """Per column of ``stacked``, its quantiles ``qs`` over the rows that are not NaN
    (linear interpolation, as :func:`numpy.nanquantile`; NaN where a column has none).
    numpy's own takes a slow path per column once any NaN is present (3 s of the report)."""
    ordered = np.sort(stacked, axis=0)  # NaN last
    count = (~np.isnan(stacked)).sum(axis=0)
    columns = np.arange(stacked.shape[1])
    out = []
    for q in qs:
        position = q * np.maximum(count - 1, 0)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, np.maximum(count - 1, 0))
        low, high = ordered[below, columns], ordered[above, columns]
        with np.errstate(invalid="ignore"):
            value = low + (position - below) * (high - low)
        value = np.where(position == below, low, value)  # no 0 * inf at whole positions
        out.append(np.where(count > 0, value, math.nan))
    return out
