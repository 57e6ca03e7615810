"""The data behind the report's interactive plots (drawn in the browser by plotly.js, which
the report folder carries as a local file): per task the convergence curves against loss
evaluations, gradient evaluations, optimizer steps and seconds (the page switches between them;
it opens on the task's own spend axis, as its PNG), the runtime ECDFs, and the win-rate
matrix.

Each function returns a plain JSON-able dict (no plotly Python objects: building figures in
the browser keeps the page small and ``zgbench report`` fast); ``report.js`` turns it into
plotly traces. Numbers are rounded to :data:`DIGITS` significant digits and non-finite ones
become null (a gap in the line), as JSON has no NaN. The static PNGs of
:mod:`zgbench.leaderboard` stay beside the page for papers; these are the same statistics
(median and interquartile range over seeds, step-held between checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from zgbench import leaderboard, stats

#: Significant digits kept in the page's data (a plot cannot show more).
DIGITS = 5
#: At most this many points per curve: a longer union of checkpoints is thinned to this many
#: of its own values (log-spaced quantiles keep the early steps a log axis shows).
MAX_POINTS = 240
#: x axes of the convergence plots: (name shown, trajectory key, axis title).
MODES = (("evaluations", "evals", "loss evaluations"),
         ("gradients", "grads", "gradient evaluations"),
         ("steps", "steps", "optimizer steps"),
         ("seconds", "seconds", "seconds (wall clock: optimizer + task)"))
#: Colours by board order (plotly's Dark24), the same optimizer the same colour in every plot.
PALETTE = ["#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100",
           "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
           "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA",
           "#6C4516", "#0D2A63", "#AF0038"]


def colours(order: Iterable[str]) -> dict[str, str]:
    """One colour per optimizer name, in board order (best first); past the palette's end
    the colours repeat."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(order)}


def convergence(records: list[dict[str, Any]], table: pd.DataFrame) -> dict[str, Any]:
    """A task's convergence plot: per optimizer of ``table`` whose spec counts, the median and
    quartiles over seeds of the primary metric against each x of :data:`MODES` (None where
    the optimizer spends none of it: a gradient method on the evaluations axis), the start
    and reference lines, and the y axis the page opens with (log when the values span
    decades: :func:`_log_axis`; the range stops short of diverged curves,
    as the PNG clips them)."""
    metric, direction = table["metric"].iloc[0], table["direction"].iloc[0]
    specs = _counted_specs(table)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        name = specs.get(r["optimizer"]["label"])
        if name is not None and r["status"] == "ok" and r.get("trajectory"):
            by_name.setdefault(name, []).append(r)
    curves, values = [], []
    for name, runs in sorted(by_name.items()):
        series = {mode: _band([_xy(r, key, metric) for r in runs], mode != "seconds")
                  for mode, key, _ in MODES}
        curves.append({"name": name, "runs": len(runs), "series": series})
        values += [v for s in series.values() if s for k in ("m", "lo", "hi") for v in s[k]
                   if v is not None]
    modes = [m for m, _, _ in MODES if any(c["series"][m] for c in curves)]
    # open on the task's own spend axis, as its PNG (stats.spend_axis: the budget's counter)
    axis = stats.spend_axis(r for runs in by_name.values() for r in runs) if by_name else None
    default = next((m for m, key, _ in MODES if key == axis and m in modes),
                   modes[0] if modes else None)
    anchors = [{"name": key, "y": _round(table[key].iloc[0])}
               for key in ("start", "reference") if key in table and len(table)]
    anchors = [a for a in anchors if a["y"] is not None]
    return {"type": "convergence", "metric": metric, "direction": direction,
            "modes": modes, "default": default, "titles": {m: t for m, _, t in MODES},
            "curves": curves,
            "anchors": anchors, "ylog": _log_axis(values, direction),
            "ymax" if direction == "min" else "ymin": _view_limit(curves, direction)}


def _log_axis(values: list[float], direction: str) -> bool:
    """Whether the plot opens on a log y axis: for a "min" metric whose positive values span
    over two decades, or are all there is (the PNG's symlog for the same reason). The page
    draws values at or below zero at the floor of the log axis, as symlog's linear part."""
    drawn = np.array(values, dtype=float)
    positive = drawn[drawn > 0]
    if direction != "min" or not positive.size:
        return False
    return bool(positive.size == drawn.size or positive.max() > 100 * positive.min())


def _counted_specs(table: pd.DataFrame) -> dict[str, str]:
    """spec label -> optimizer name, for the rows of the table that count (one spec per
    name; the boards' rule, :mod:`zgbench.boards`)."""
    rows = table[table["counted"].astype(bool)] if "counted" in table else table
    specs = rows["spec"] if "spec" in rows else rows["optimizer"]
    return dict(zip(specs, rows["optimizer"]))


def _xy(record: dict[str, Any], key: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    points = record["trajectory"]
    xs = np.array([p.get(key) or 0.0 for p in points], dtype=float)
    ys = np.array([math.nan if p["metrics"].get(metric) is None else p["metrics"][metric]
                   for p in points], dtype=float)
    return np.maximum.accumulate(xs), ys  # a clock read twice never runs backwards here


def _band(series: list[tuple[np.ndarray, np.ndarray]], counts: bool) -> dict[str, Any] | None:
    """Median and quartiles over runs on the union of their x values (each run held
    constant between its checkpoints), or None when no run spends any of this x. Counts
    start at 1 on the page's log axis (as in the PNG); seconds keep their own values."""
    if not series or max(float(xs.max(initial=0.0)) for xs, _ in series) <= 0:
        return None
    grid = np.unique(np.concatenate([xs for xs, _ in series]))
    if len(grid) > MAX_POINTS:
        grid = np.unique(np.quantile(grid, np.linspace(0, 1, MAX_POINTS), method="nearest"))
    lo, median, hi = stats.nanquantiles(stats.held_on_grid(series, grid), (0.25, 0.5, 0.75))
    x = np.maximum(grid, 1.0) if counts else np.where(grid > 0, grid, math.nan)
    return {"x": _list(x), "m": _list(median), "lo": _list(lo), "hi": _list(hi)}


def _view_limit(curves: list[dict[str, Any]], direction: str) -> float | None:
    """Where the opening view's y axis stops on the bad side: the PNG's clip
    (:data:`zgbench.leaderboard.DIVERGED` times the starting spread beyond the worst start),
    so one diverged curve does not flatten the others; None when nothing diverged (the
    axis fits the data). The page's autoscale button still shows everything."""
    sign = 1.0 if direction == "min" else -1.0
    starts, values = [], []
    for curve in curves:
        for s in curve["series"].values():
            if not s:
                continue
            block = np.array([s["m"], s["lo"], s["hi"]], dtype=float) * sign
            values.append(block[np.isfinite(block)])
            starts.append(block[:, 0][np.isfinite(block[:, 0])])
    start = np.concatenate(starts) if starts else np.array([])
    if not start.size:
        return None
    worst, every = float(start.max()), np.concatenate(values)
    spread = max(abs(worst), worst - float(every.min())) or 1.0
    limit = worst + (leaderboard.DIVERGED - 1.0) * spread
    return sign * limit if (every > limit).any() else None


def ecdf(profiles: pd.DataFrame, right: float | None = None) -> dict[str, Any] | None:
    """Runtime ECDF steps per optimizer (rows of ``profiles.csv`` for one scope), each run
    flat from its last hit to the right edge (``right``: the budget, else the largest spend
    reached), as in the PNG; None without rows."""
    if profiles.empty:
        return None
    kinds = set(profiles["x_kind"])
    fraction = kinds == {"budget_fraction"}
    floor = 1e-3 if fraction else 1.0
    right = 1.0 if fraction else right
    spent = profiles["x"].to_numpy(float)
    edge = max([floor, *spent[np.isfinite(spent)].tolist(), *([right] if right else [])])
    curves = []
    for name, group in profiles.groupby("optimizer", sort=True):
        xs = np.maximum(np.concatenate([[floor], group["x"].to_numpy(float), [edge]]), floor)
        ys = group["fraction"].to_numpy(float)
        ys = np.concatenate([[0.0], ys, ys[-1:] if len(ys) else [0.0]])
        curves.append({"name": name, "x": _list(xs), "y": _list(ys)})
    return {"type": "ecdf", "curves": curves, "xrange": [floor, max(edge, 10 * floor)],
            "xtitle": _axis_title(kinds)}


def _axis_title(kinds: set[str]) -> str:
    """The x title of an ECDF whose rows have these ``x_kind`` values (the task's spend axis,
    :data:`zgbench.stats.SPEND_AXES`)."""
    if len(kinds) == 1:
        (kind,) = kinds
        return stats.SPEND_AXES.get(kind, kind)
    return "spend"


def most_spent(records: list[dict[str, Any]], profiles: pd.DataFrame,
               scope: str) -> float | None:
    """Where a task's ECDF ends: the largest final spend of its runs on its ECDF's axis (a
    counter of :data:`MODES`), None where that axis is not a counter (budget fraction)."""
    kinds = set(profiles.loc[profiles["scope"] == scope, "x_kind"])
    if len(kinds) != 1 or next(iter(kinds)) not in ("evals", "grads", "steps"):
        return None
    key = next(iter(kinds))
    return max((float((r.get("final") or {}).get(key) or 0) for r in records), default=None)


def win_rate(rate: pd.DataFrame, order: list[str]) -> dict[str, Any]:
    """The win-rate matrix (row beats column) in board order, for a heat map."""
    names = [n for n in order if n in rate.index] + sorted(n for n in rate.index
                                                            if n not in order)
    rate = rate.reindex(index=names, columns=names)
    return {"type": "heatmap", "names": names,
            "z": [_list(row) for row in rate.to_numpy(dtype=float)]}


def _round(value: Any) -> float | None:
    value = float(value)
    return float(f"{value:.{DIGITS}g}") if math.isfinite(value) else None


def _list(values: np.ndarray) -> list[float | None]:
    return [_round(v) for v in np.asarray(values, dtype=float)]
