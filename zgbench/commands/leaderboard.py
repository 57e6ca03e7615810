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
    from zgbench.commands.run import caveat_footnotes, say_footnotes, summary_console

    console = summary_console(Console())  # 100 columns at most, as run's summary
    overall = written["overall"]
    if overall.empty:
        console.print("no ranked optimizer")
    else:
        notes = caveat_footnotes(overall)
        console.print(overall_rich(overall[overall["board"] == "main"], notes=notes))
        partial = overall[overall["board"] == "partial"]
        if not partial.empty:
            console.print(overall_rich(partial, "Partial coverage (ranked on fewer than half "
                                                "the tasks; not comparable overall)", notes))
        say_footnotes(console, notes)
    if args.tuned:
        console.print(tracks_rich(written["tracks"]))
    if args.markdown:
        print(readme_tables(written, bool(args.tuned)))
    console.print(f"{written['records']} records, {len(written['tasks'])} tasks -> {out}", markup=False)
    return 0


#: The columns shown on the terminal (header, overall.csv column); overall.csv holds every
#: column. Caveats (sentences) are footnotes: as a column they wrapped each row to a dozen
#: lines.
SHOWN = (("pos", "position"), ("optimizer", "optimizer"), ("mean rank", "mean_rank"),
         ("interval", None), ("coverage", "coverage"), ("norm score", "norm_score"),
         ("wins", "wins"), ("n/a", "n/a"), ("failed", "failed_tasks"))


def overall_rich(frame, title: str = "Overall (mean rank over tasks, 95% interval; lower is "
                                     "better)", notes: dict[str, int] | None = None) -> Table:
    from zgbench.commands.run import caveat_mark

    table = Table(title=title, title_justify="left")
    shown = [(h, c) for h, c in SHOWN if c is None or c in frame.columns]
    for header, _ in shown:
        table.add_column(header, no_wrap=header != "optimizer")
    if notes:
        table.add_column("note", no_wrap=True)
    for _, row in frame.iterrows():
        cells = [escape(f"{_fmt(row['rank_lo'])}-{_fmt(row['rank_hi'])}" if column is None
                        else _fmt(row[column])) for _, column in shown]
        if notes:
            cells.append(caveat_mark(notes, row))
        table.add_row(*cells)
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
