"""Tune every optimizer with the same number of trials per task; write the tuned suite.

Each (task, optimizer) pair gets exactly --trials Optuna TPE trials over the parameters the
optimizer declares tunable (zgbench list NAME shows them: "tune LOW..HIGH"); each trial runs
--tune-seeds ordinary runs at the task's budget on tuning repetitions (1000000 + r), disjoint
from the evaluation seeds 0..S-1, into --out (resumable), never into the results being
ranked. The output is a suite file with the chosen specs: run it into its own folder for the
tuned track (protocol: zgbench/tuning.py).

Examples:
  zgbench tune --tasks "sphere[dim=4]" --optimizers random-search,cma-es --trials 20 --evals 500
  zgbench tune --suite quick --trials 20 --out results/tune --suite-out tasks/quick-tuned.toml
  zgbench run --suite tasks/quick-tuned.toml --out results/quick-tuned
  zgbench report results/quick --tuned results/quick-tuned -o leaderboards/quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from zgbench.cli import add_baseline_argument, load_registry
from zgbench.commands import run as run_command
from zgbench.errors import UsageError
from zgbench.lazy import lazy
from zgbench.store import atomic_write_text

torch = lazy("torch")
tuning = lazy("zgbench.tuning")
executors = lazy("zgbench.executors")

HELP = "give every optimizer the same number of tuning trials per task; write a tuned suite"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", help='task specs, comma separated: "sphere[dim=8]",step')
    parser.add_argument("--optimizers", help="optimizer specs, comma separated; parameters a "
                        "spec sets stay fixed, the declared tunable rest is searched")
    parser.add_argument("--suite", help="suite name or path to tune (default: quick)")
    parser.add_argument("--trials", type=int, required=True,
                        help="trials per (task, optimizer): the same for everyone")
    parser.add_argument("--tune-seeds", type=int, default=1,
                        help="runs per trial, on tuning repetitions 1000000.. (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--range", action="append", default=[], metavar="OPT.PARAM=LO:HI",
                        help="move a declared range: cma-es.sigma0=0.01:1[:log|:linear]")
    parser.add_argument("--seeds", type=int,
                        help="evaluation seeds written into the tuned suite (default: the suite's)")
    for name in ("evals", "grads", "steps"):
        parser.add_argument(f"--{name}", type=int, help=f"{name} budget per run")
    parser.add_argument("--seconds", type=float, help="wall-clock budget per run (seconds)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the suite's, cpu)")
    parser.add_argument("--out", default="results/tune",
                        help="folder of the tuning runs' records (default: results/tune)")
    parser.add_argument("--suite-out", help="tuned suite file (default: OUT/tuned.toml)")
    parser.add_argument("--in-process", action="store_true",
                        help="debugging: run the trials' plugin code in this process (default: "
                             "one worker process, reused, as zgbench run)")
    add_baseline_argument(parser)


def main(args: argparse.Namespace) -> int:
    tuning.check_available()
    registry = load_registry(args)
    if args.trials < 1 or args.tune_seeds < 1:
        raise UsageError(f"--trials and --tune-seeds must be at least 1, got {args.trials} and "
                         f"{args.tune_seeds}.")
    entries, seeds, device, declarations = run_command._resolve(args, registry)
    run_command._check_device(device)
    run_command._check_dependencies(entries, registry)
    ranges = tuning.parse_ranges(args.range)
    tuned_names = {o.name for _, _, opts in entries for o in opts}
    for name in ranges:
        if name not in tuned_names:
            raise UsageError(f"--range {name}.*: optimizer {name!r} is not being tuned; tuned: "
                             f"{', '.join(sorted(tuned_names))}.")
    plans = [(task, budget, [(o, tuning.space(registry, o, ranges.get(o.name))) for o in opts])
             for task, budget, opts in entries]  # every range checked before any trial
    torch.set_num_threads(1)
    out = Path(args.out)
    console = Console(stderr=True)
    results, tuned_entries, started = [], [], time.perf_counter()
    with (executors.InProcessExecutor() if args.in_process
          else executors.PoolExecutor(workers=1, threads=1)) as ex:
        _tune(args, registry, plans, out, device, console, ex, results, tuned_entries)
    seconds = time.perf_counter() - started
    suite_out = Path(args.suite_out) if args.suite_out else out / "tuned.toml"
    header = [f"Tuned by `zgbench tune`: {args.trials} TPE trials (seed {args.seed}) per task "
              f"and optimizer, {args.tune_seeds} run(s) each on tuning repetitions "
              f"{tuning.TUNE_OFFSET}+; trial records in {out}.",
              "Evaluate it into its own results folder: the boards' tuned track."]
    atomic_write_text(suite_out, tuning.suite_toml(
        tuned_entries, seeds=seeds, device=device, header=header,
        description=f"tuned track ({args.trials} trials per task and optimizer)",
        declarations=declarations))
    atomic_write_text(out / "tune.csv", tuning.trials_frame(results).to_csv(index=False))
    console.print(f"{sum(len(r.trials) for r in results)} trials in {seconds:.1f} s -> "
                  f"{suite_out} (trials: {out / 'tune.csv'})", markup=False, highlight=False)
    return 0


def _tune(args, registry, plans, out: Path, device: str, console: Console, executor,
          results: list, tuned_entries: list) -> None:
    """Tune every (task, optimizer) pair of ``plans`` with ``executor``; append the results
    and each task's chosen specs."""
    for task, budget, pairs in plans:
        chosen = []
        for optimizer, dims in pairs:
            if not dims or not tuning.compatible(registry, task, optimizer):
                chosen.append(optimizer)
                console.print(f"{escape(task.label)} × {escape(optimizer.label)}: kept (nothing "
                              "to tune or incompatible)", highlight=False)
                continue
            result = tuning.tune_pair(registry, task, budget, optimizer, dims, out,
                                      executor, trials=args.trials,
                                      reps=args.tune_seeds, seed=args.seed, device=device)
            results.append(result)
            chosen.append(result.best)
            console.print(f"{escape(task.label)} × {escape(optimizer.label)}: "
                          f"{len(result.trials)} trials -> {escape(result.best.label)}",
                          highlight=False)
        tuned_entries.append((task, budget, chosen))
