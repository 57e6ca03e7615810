"""Regression gate: compare two sets of results and exit 1 if any optimizer/task pair got worse
beyond its bootstrap confidence interval.

OLD and NEW are each a results folder (written by zgbench run; its statistics are computed
here) or a leaderboard folder / stats.csv (written by zgbench leaderboard or zgbench report,
e.g. a committed leaderboards/quick/). Pairs are matched by task and optimizer label. A pair
regressed when its new median lies beyond the worse end of the old interval and the old median
beyond the better end of the new interval; improvements are the mirror image. Failed runs
count as the worst value, so a pair that starts failing regresses.

Exit status: 0 no regression, 1 at least one regression, 2 bad input. Intervals are 95%
percentile-bootstrap intervals over seeds (Efron & Tibshirani 1993; see zgbench/stats.py), so
with few seeds only large moves count: run more seeds for a finer gate.

Examples:
  zgbench compare leaderboards/quick results/
  zgbench compare results-main/ results-branch/ --all
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench import declared
from zgbench.errors import UsageError
from zgbench.lazy import lazy
from zgbench.store import ResultStore

pd = lazy("pandas")
leaderboard = lazy("zgbench.leaderboard")
stats = lazy("zgbench.stats")

HELP = "regression gate: exit 1 if a task/optimizer median moved beyond its confidence interval"

STYLE = {"regressed": "red", "improved": "green", "missing": "yellow", "added": "cyan"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="reference: results folder, leaderboard folder or stats.csv")
    parser.add_argument("new", help="candidate: results folder, leaderboard folder or stats.csv")
    parser.add_argument("--all", action="store_true",
                        help="list missing and added pairs too (pairs in one side only)")
    parser.add_argument("-o", "--out", help="also write the comparison as CSV to this file")


def main(args: argparse.Namespace) -> int:
    (old, old_machines), (new, new_machines) = load(args.old), load(args.new)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for a row per pair
        console = Console(width=120)
    for warning in differences(old, new, old_machines, new_machines):
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    result = stats.compare(old, new)
    matched = result["verdict"].isin(["regressed", "improved", "unchanged"])
    if not matched.any():
        raise UsageError(f"{args.old} and {args.new} have no task/optimizer pair in common that "
                         "both ranked: compare results of the same suite.")
    if args.out:
        from zgbench.store import atomic_write_text

        atomic_write_text(args.out, result.to_csv(index=False))
    # every pair both sides ranked is shown (an empty table read as "nothing compared");
    # pairs in one table only are counted below, listing them would bury the verdicts
    shown = result if args.all else result[result["verdict"].isin(
        ["regressed", "improved", "incomparable", "unchanged"])]
    if not shown.empty:
        console.print(_table(shown))
    counts = result["verdict"].value_counts()
    console.print(", ".join(f"{counts[v]} {v}" for v in
                            ("regressed", "improved", "unchanged", "missing", "added",
                             "incomparable") if v in counts), markup=False)
    return 1 if counts.get("regressed", 0) else 0


def load(path: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """The long statistics table of a results folder, a leaderboard folder or a stats.csv,
    and the machines and versions behind it (its records, or the machine.json beside the
    CSV; empty where neither says)."""
    path = Path(path)
    if path.is_dir() and (path / "runs").is_dir():
        records = list(ResultStore(path))
        if not records:
            raise UsageError(f"no run records under {path / 'runs'}: nothing to compare.")
        return (leaderboard.compute(records, declared.read(path))["stats"],
                leaderboard.machines(records))
    csv = path / "stats.csv" if path.is_dir() else path
    if not csv.is_file():
        raise UsageError(f"{path}: neither a results folder (with runs/) nor a leaderboard "
                         "folder with stats.csv; give the folder zgbench run --out or zgbench "
                         "leaderboard -o wrote.")
    try:
        frame = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"{csv}: not a readable CSV ({exc}).") from None
    needed = {"task", "optimizer", "metric", "direction", "median", "median_lo", "median_hi",
              "status"}
    missing = needed - set(frame.columns)
    if missing:
        raise UsageError(f"{csv} lacks the columns {sorted(missing)}: write it with this "
                         "version's zgbench leaderboard.")
    return frame, _machine_json(csv.parent)


def _machine_json(folder: Path) -> list[dict]:
    try:
        return json.loads((folder / "machine.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []


def differences(old: pd.DataFrame, new: pd.DataFrame, old_machines: list[dict],
                new_machines: list[dict], tolerance: float = 0.01) -> list[str]:
    """Why the two sides may not be comparable: pairs whose runs spent different budgets
    (median evaluations or gradients differ by more than ``tolerance``), and different
    zgbench/torch versions or devices. A moved median means little across either."""
    warnings = []
    both = old.merge(new, on=stats.pair_keys(old, new), suffixes=("_old", "_new"))
    for counter in ("evals", "grads"):
        if f"{counter}_old" not in both or f"{counter}_new" not in both:
            continue  # a hand-made stats table without spending columns
        a, b = both[f"{counter}_old"].astype(float), both[f"{counter}_new"].astype(float)
        differ = (a - b).abs() > tolerance * pd.concat([a, b], axis=1).max(axis=1)
        for _, row in both[differ].head(5).iterrows():
            warnings.append(f"{row['task']} × {row['optimizer']} spent {row[f'{counter}_old']:g} "
                            f"{counter} before and {row[f'{counter}_new']:g} now: budgets differ")
        if differ.sum() > 5:
            warnings.append(f"... and {int(differ.sum()) - 5} more pairs with other {counter} budgets")
    for key in ("zgbench", "torch", "device_name"):
        was = sorted({str(m.get(key)) for m in old_machines if m.get(key)})
        now = sorted({str(m.get(key)) for m in new_machines if m.get(key)})
        if was and now and was != now:
            warnings.append(f"{key} differs: {', '.join(was)} before, {', '.join(now)} now")
    return warnings


def _table(frame: pd.DataFrame) -> Table:
    table = Table(title="Changes (median [95% interval]; failures count as the worst value)",
                  title_justify="left")
    for column in ("task", "optimizer", "metric", "old", "new", "verdict"):
        table.add_column(column, overflow="fold")  # names are never cut to "sphere[dim…"
    for _, row in frame.iterrows():
        style = STYLE.get(row["verdict"], "")
        table.add_row(escape(str(row["task"])), escape(str(row["optimizer"])),
                      escape(str(row["metric"])),
                      _cell(row["old_median"], row["old_lo"], row["old_hi"]),
                      _cell(row["new_median"], row["new_lo"], row["new_hi"]),
                      f"[{style}]{row['verdict']}[/{style}]" if style else row["verdict"])
    return table


def _cell(median, lo, hi) -> str:
    if median is None or (isinstance(median, float) and math.isnan(median)):
        return "-"
    return f"{median:.4g} [{lo:.4g}, {hi:.4g}]"
