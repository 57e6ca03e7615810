"""Write leaderboards from a results folder: per task a ranked CSV and a convergence plot
(PNG), plus overall.csv and machine.json (the machines and versions behind the numbers).

Ranking: median over seeds of the task's primary metric; failed runs count as the worst
value, n/a pairs are not ranked, ties share the better rank. One row per optimizer name; the
main table ranks the optimizers ranked on at least half the tasks, the partial table the rest
(zgbench/boards.py). With --tuned RESULTS2 the tuned track is written to OUT/tuned and both
tracks side by side to OUT/tracks.csv.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench.cli import add_baseline_argument
from zgbench.lazy import lazy

pd = lazy("pandas")
leaderboard = lazy("zgbench.leaderboard")

HELP = "write per-task ranked CSVs, convergence plots and overall.csv from a results folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="?", default="results",
                        help="results folder written by zgbench run (default: results, as run)")
    parser.add_argument("-o", "--out", help="output folder (default: RESULTS/leaderboard)")
    parser.add_argument("--tuned", metavar="RESULTS2",
                        help="results of the tuned suite (zgbench tune): the tuned track, "
                             "written to OUT/tuned, both tracks in OUT/tracks.csv")
    add_baseline_argument(parser)
    parser.add_argument("--markdown", action="store_true",
                        help="also print the README's tables (tracks, or the overall board)")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.results) / "leaderboard"
    written = (leaderboard.write_tracks(args.results, args.tuned, out, args.baseline)
               if args.tuned else leaderboard.write(args.results, out, args.baseline))
    console = Console()
    overall = written["overall"]
    if overall.empty:
        console.print("no ranked optimizer")
    else:
        console.print(overall_rich(overall[overall["board"] == "main"]))
        partial = overall[overall["board"] == "partial"]
        if not partial.empty:
            console.print(overall_rich(partial, "Partial coverage (ranked on fewer than half "
                                                "the tasks; not comparable overall)"))
    if args.tuned:
        console.print(tracks_rich(written["tracks"]))
    if args.markdown:
        print(readme_tables(written, bool(args.tuned)))
    console.print(f"{written['records']} records, {len(written['tasks'])} tasks -> {out}", markup=False)
    return 0


#: The columns shown on the terminal; overall.csv holds every column.
SHOWN = ("position", "optimizer", "mean_rank", "rank_lo", "rank_hi", "coverage", "norm_score",
         "wins", "n/a", "failed_tasks", "caveat")


def overall_rich(frame, title: str = "Overall (mean rank over tasks, 95% interval; lower is "
                                     "better)") -> Table:
    table = Table(title=title, title_justify="left")
    columns = [c for c in SHOWN if c in frame.columns]
    for column in columns:
        table.add_column(str(column))
    for _, row in frame[columns].iterrows():
        table.add_row(*[escape(_fmt(v)) for v in row])
    return table


def readme_tables(written, tracks: bool) -> str:
    """The Markdown tables of the README's leaderboard section."""
    from zgbench import boards

    if tracks:
        table = written["tracks"]
        columns = ["optimizer", "default_position", "default_mean_rank", "default_norm_score",
                   "tuned_position", "tuned_mean_rank", "tuned_norm_score", "default_coverage",
                   "moved"]
        return boards.markdown(table, columns + (["caveat"] if "caveat" in table else []))
    overall = written["overall"]
    return boards.markdown(overall, ["position", "optimizer", "mean_rank", "rank_lo", "rank_hi",
                                     "coverage", "norm_score", "wins"]
                           + (["caveat"] if "caveat" in overall else []))


def tracks_rich(frame) -> Table:
    table = Table(title="Tracks: overall position at defaults and after equal tuning "
                        "(moved > 0: better after tuning)", title_justify="left")
    columns = [c for c in ("optimizer", "default_position", "default_coverage",
                           "tuned_position", "tuned_coverage", "moved") if c in frame.columns]
    for column in columns:
        table.add_column(column)
    for _, row in frame[columns].iterrows():
        table.add_row(*[escape(_fmt(v)) for v in row])
    return table


def _fmt(value) -> str:
    if value is pd.NA:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    return str(value)
