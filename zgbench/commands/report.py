"""Write an HTML report of a results folder: the overall table, the win-rate matrix,
runtime profiles, per task its ranked table, convergence plot (evaluations or seconds) and the
pictures the task saved, and the machines and versions the numbers came from. Tables sort and
filter, plots show values on hover. Open OUT/index.html in any browser: the folder holds
everything it needs (no server, no network). The leaderboard CSVs and PNGs (for papers) are
written into the same folder; figures unchanged since an earlier build are copied, not drawn.

Examples:
  zgbench report results/ -o report/
  zgbench run --out results/quick && zgbench report results/quick -o leaderboards/quick
  zgbench report results/quick --tuned results/quick-tuned -o leaderboards/quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from zgbench.cli import add_baseline_argument
from zgbench.errors import UsageError
from zgbench.lazy import lazy

report = lazy("zgbench.report")

HELP = "write an HTML report (sortable tables, interactive plots, pictures) from a results folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="?", default="results",
                        help="results folder written by zgbench run (default: results, as run)")
    parser.add_argument("-o", "--out", help="output folder (default: RESULTS/report)")
    parser.add_argument("--title", default="zgbench report", help="page title")
    parser.add_argument("--tuned", metavar="RESULTS2",
                        help="results of the tuned suite (zgbench tune): show both tracks")
    add_baseline_argument(parser)
    parser.add_argument("--claims", metavar="DIR",
                        help="open the page with the claims in DIR (its claims.csv and plots), "
                             "e.g. leaderboards/claims")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.results) / "report"
    if args.claims and not (Path(args.claims) / "claims.csv").is_file():
        raise UsageError(f"--claims {args.claims}: no claims.csv there; give the folder "
                         "zgbench claims --out or --publish wrote.")
    page = report.build(args.results, out, title=args.title, tuned=args.tuned,
                        baseline=args.baseline, claims=args.claims)
    Console().print(f"report: {page}", markup=False)
    return 0
