"""Run the cross product tasks × optimizers × seeds and store one record per run.

With no --tasks/--optimizers/--suite it runs the quick suite (tasks/quick.toml: every task at
a small size, every optimizer, on the CPU, in minutes). --tasks and --optimizers replace the
suite's lists; --evals/--grads/--steps/--seconds replace every task's budget limits.
Finished runs in --out are skipped (resume); a failed run is recorded with its traceback and
the others go on. At the end a leaderboard is written to OUT/leaderboard unless
--no-leaderboard.

Examples:
  zgbench run
  zgbench run --tasks "sphere[dim=8]",step --optimizers random-search,cge,rge --seeds 3 --evals 2000
  zgbench run --suite paper --device cuda --out results-paper/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from zgbench import harness, leaderboard, specs
from zgbench import suite as suites
from zgbench.cli import load_registry
from zgbench.errors import UsageError
from zgbench.executors import InProcessExecutor
from zgbench.progress import RichReporter

HELP = "run tasks × optimizers × seeds (default: the quick suite) and store the records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", help='task specs, comma separated: "sphere[dim=8]",step')
    parser.add_argument("--optimizers", help="optimizer specs, comma separated: cge,rge[q=20]")
    parser.add_argument("--suite", help="suite name (tasks/NAME.toml) or path; default: quick")
    parser.add_argument("--seeds", type=int, help="repetitions per pair (default: the suite's, 3)")
    parser.add_argument("--evals", type=int, help="loss-evaluation budget per run")
    parser.add_argument("--grads", type=int, help="gradient-evaluation budget per run")
    parser.add_argument("--steps", type=int, help="optimizer-step budget per run")
    parser.add_argument("--seconds", type=float, help="wall-clock budget per run (seconds)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the suite's, cpu)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--no-leaderboard", action="store_true",
                        help="do not write OUT/leaderboard at the end")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 if any run failed")


def main(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    entries, seeds, device = _resolve(args, registry)
    _check_device(device)
    _check_dependencies(entries, registry)
    runs = harness.plan(entries, seeds, device)
    console = Console(stderr=True)
    out = Path(args.out)
    summary = harness.run_all(runs, registry, out, InProcessExecutor(), RichReporter(console))
    for failure in summary.failures:
        console.print(f"[red]failed:[/red] {escape(failure)}", highlight=False)
    console.print(summary.line(), highlight=False, markup=False)
    if not args.no_leaderboard and runs:
        written = leaderboard.write(out, out / "leaderboard")
        console.print(f"leaderboard: {out / 'leaderboard'} ({len(written['tasks'])} tasks)",
                      markup=False)
    return 1 if args.strict and summary.failed else 0


def _resolve(args: argparse.Namespace, registry):
    suite = None
    if args.suite or not (args.tasks or args.optimizers):
        suite = suites.load(args.suite or "quick", registry)
    elif not (args.tasks and args.optimizers):
        raise UsageError("give both --tasks and --optimizers, or a --suite "
                         "(zgbench run with no arguments runs the quick suite).")
    budget_override = dict(evals=args.evals, grads=args.grads, steps=args.steps,
                           seconds=args.seconds)
    optimizers = ([specs.resolve_optimizer(registry, o) for o in specs.split_list(args.optimizers)]
                  if args.optimizers else None)
    if args.tasks:
        tasks = [specs.resolve_task(registry, t) for t in specs.split_list(args.tasks)]
        entries = [(t, registry.task(t.name).cls.default_budget.override(**budget_override),
                    optimizers) for t in tasks]
    else:
        entries = [(t.spec, t.budget.override(**budget_override),
                    optimizers or t.optimizers or suite.optimizers) for t in suite.tasks]
    if any(not opts for _, _, opts in entries):
        raise UsageError("no optimizers to run: give --optimizers or list them in the suite.")
    seeds = args.seeds if args.seeds is not None else (suite.seeds if suite else 3)
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}.")
    device = args.device or (suite.device if suite else "cpu")
    return entries, seeds, device


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available here "
                         "(torch.cuda.is_available() is False): use --device cpu.")


def _check_dependencies(entries, registry) -> None:
    """Fail before running anything if a component's optional dependency is missing."""
    names = {("task", t.name) for t, _, _ in entries}
    names |= {("optimizer", o.name) for _, _, opts in entries for o in opts}
    for kind, name in sorted(names):
        entry = registry.task(name) if kind == "task" else registry.optimizer(name)
        entry.cls.check_available()
