"""Check the seed papers' headline claims: run each claim's suite entry, then judge it.

Each claim in tasks/claims.toml is a suite entry (tasks, optimizers, budget, seeds) plus a
comparison rule fixed before the run (see zgbench/claims.py). Runs go through the ordinary
harness: records under OUT/records (rerun the same command to resume an interrupted run),
any executor. Writes OUT/claims.csv (this call's claims replace their rows; the rows of
claims run by earlier calls stay), OUT/claims/NAME.png and prints a table.

Examples:
  zgbench claims --list
  zgbench claims --only zerograds-toy --out claims-results
  zgbench claims --executor pool --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench.cli import load_registry
from zgbench.lazy import lazy
from zgbench.store import ResultStore

claimlib = lazy("zgbench.claims")
harness = lazy("zgbench.harness")

HELP = "check the seed papers' claims (tasks/claims.toml): effect, interval, verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", metavar="NAME", help="run only these claims (comma separated)")
    parser.add_argument("--list", action="store_true",
                        help="list the claims with the paper's sentence and figure; run nothing")
    parser.add_argument("--file", help="claims file (default: tasks/claims.toml)")
    parser.add_argument("--out", default="claims-results", help="output folder "
                        "(default: claims-results); records in OUT/records")
    parser.add_argument("--publish", metavar="DIR",
                        help="also merge the claims run into the published folder DIR "
                             "(claims.csv rows, NAME.png, runs.csv, machine.json), e.g. "
                             "leaderboards/claims")
    from zgbench.commands.run import add_executor_arguments

    add_executor_arguments(parser)

def main(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    path = Path(args.file) if args.file else claimlib.default_path()
    every = claimlib.load(path, registry)
    selected = claimlib.select(every, args.only)
    console = Console()
    if args.list:
        console.print(_listing(selected))
        return 0
    from zgbench.commands.run import _executor

    executor = _executor(args, ["cpu"])
    out = Path(args.out)
    store = ResultStore(out / "records")
    verdicts, seconds, ran = [], {}, []
    for claim in selected:
        if claim.rule.kind == "gradcheck":
            verdicts.append(_gradcheck(claim, registry, out, seconds, console))
            continue
        runs = harness.plan(claim.entries(), claim.seeds, "cpu")
        start = time.perf_counter()
        summary = harness.run_all(runs, registry, out / "records", executor)
        records = [r for r in (store.get(run.run_id) for run in runs) if r is not None]
        ran += records
        seconds[claim.name] = sum(r.get("duration") or 0 for r in records)
        verdict = claimlib.judge(claim, records)
        verdicts.append(verdict)
        claimlib.plot(claim, verdict, records, out / "claims" / f"{claim.name}.png")
        console.print(escape(f"{claim.name}: {verdict.verdict} ({summary.line()}, "
                             f"{time.perf_counter() - start:.0f} s now)"), highlight=False)
    csv_path = claimlib.write_csv(every, verdicts, seconds, out / "claims.csv")
    console.print(_table(selected, verdicts, seconds))
    console.print(escape(f"wrote {csv_path} and {out / 'claims'}/*.png"), highlight=False)
    if args.publish:
        claimlib.publish(out, Path(args.publish), [c.name for c in selected], ran,
                         [c.name for c in every])
        console.print(escape(f"published {len(selected)} claim(s) into {args.publish}"),
                      highlight=False)
    return 0


def _gradcheck(claim, registry, out: Path, seconds: dict, console: Console):
    """A gradcheck claim: ``zgbench gradcheck``'s rows, kept in OUT/gradcheck/NAME.json so a
    rerun resumes (the rows are judged again, not recomputed)."""
    import json
    from dataclasses import asdict

    from zgbench import gradcheck
    from zgbench.store import atomic_write_text

    path = out / "gradcheck" / f"{claim.name}.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        rows, seconds[claim.name] = [gradcheck.Row(**r) for r in saved["rows"]], saved["seconds"]
        state = "resumed"
    else:
        settings = gradcheck.Settings(evals=(claim.budget.evals,), points=claim.seeds,
                                      **claim.gradcheck)
        start = time.perf_counter()
        rows = gradcheck.run(registry, claim.tasks, claim.optimizers, settings)
        seconds[claim.name] = time.perf_counter() - start
        atomic_write_text(path, json.dumps({"seconds": seconds[claim.name],
                                            "rows": [asdict(r) for r in rows]}, indent=1))
        state = "done"
    verdict = claimlib.judge_gradcheck(claim, rows)
    claimlib.plot_gradcheck(claim, verdict, rows, out / "claims" / f"{claim.name}.png")
    console.print(escape(f"{claim.name}: {verdict.verdict} (gradcheck, {len(rows)} rows "
                         f"{state}, {seconds[claim.name]:.0f} s)"), highlight=False)
    return verdict


def _listing(selected) -> Table:
    table = Table(title="Claims", title_justify="left", show_lines=True)
    for column in ("claim", "paper, figure", "the paper says", "paper's figure", "setting here"):
        table.add_column(column)
    for c in selected:
        table.add_row(escape(c.name), escape(f"{c.paper}, {c.figure}"), escape(c.sentence),
                      f"{c.paper_value:g}", escape(c.setting))
    return table


def _table(selected, verdicts, seconds) -> Table:
    by_name = {c.name: c for c in selected}
    table = Table(title="Claims: measured effect (95% bootstrap over seeds) vs the paper",
                  title_justify="left")
    for column in ("claim", "effect", "interval", "paper", "verdict", "seeds", "run s"):
        table.add_column(column, justify="left" if column in ("claim", "verdict") else "right")
    for v in verdicts:
        table.add_row(escape(v.claim), f"{v.effect:.3g}", escape(f"[{v.lo:.3g}, {v.hi:.3g}]"),
                      f"{by_name[v.claim].paper_value:g}", v.verdict, str(v.seeds),
                      f"{seconds[v.claim]:.0f}")
    return table
