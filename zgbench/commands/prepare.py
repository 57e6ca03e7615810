"""Pre-compute what tasks cache on disk (reference renders, reference simulations, data).

Tasks compute expensive deterministic data on first use and cache it (see zgbench/cache.py);
this command builds each task instance once per seed so later runs start at once, e.g. before
a cluster run or on a machine with no time limit.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console

from zgbench import specs
from zgbench import suite as suites
from zgbench.cli import load_registry
from zgbench.lazy import lazy

harness = lazy("zgbench.harness")

HELP = "pre-compute the cached data of tasks (references, data sets) for a suite or task list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", help="task specs, comma separated (default: the suite's)")
    parser.add_argument("--suite", help="suite name or path (default: quick)")
    parser.add_argument("--seeds", type=int, help="repetitions to prepare (default: the suite's)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the suite's)")


def main(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    suite = None if args.tasks else suites.load(args.suite or "quick", registry)
    tasks = ([specs.resolve_task(registry, t) for t in specs.split_list(args.tasks)]
             if args.tasks else [t.spec for t in suite.tasks])
    seeds = args.seeds or (suite.seeds if suite else 3)
    device = args.device or (suite.device if suite else "cpu")
    console = Console(stderr=True)
    for spec in tasks:
        cls = registry.task(spec.name).cls
        cls.check_available()
        for r in range(seeds):
            start = time.perf_counter()
            # the harness's task seed, so the cached instances are the ones runs use
            cls(device=device, seed=harness.task_seed(spec, r), **spec.kwargs)
            console.print(f"{spec.label} seed {r}: ready in {time.perf_counter() - start:.1f} s",
                          markup=False)
    return 0
