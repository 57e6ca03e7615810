"""The cost of running plugin code in a worker process (the default) against in-process.

Per call: the wall time of ``zgbench run`` with one small run, default against ``--in-process``
(fresh processes: the worker's forkserver imports torch and the plugins once per call), the
median of ``--repeat`` interleaved pairs. Per run: the same plan of many small runs in this
process, by a started worker against in-process (sending the run, its record and its pictures
back), the best of ``--repeat``.

    PYTHONPATH=. .venv/bin/python scripts/measure_workers.py [--runs 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli_seconds(extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zgbench", "run", "--tasks", "sphere[dim=4]",
                        "--optimizers", "random-search", "--seeds", "1", "--evals", "100",
                        "--out", out, "--no-leaderboard", *extra], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def _per_call(repeat: int) -> tuple[float, float]:
    """Median wall times of the two, interleaved so that the machine's load hits both alike."""
    pairs = [(_cli_seconds(["--in-process"]), _cli_seconds([])) for _ in range(repeat)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def _per_run(runs: int, repeat: int) -> tuple[float, float]:
    import torch

    from zgbench import plugins, specs
    from zgbench.budget import Budget
    from zgbench.executors import InProcessExecutor, PoolExecutor
    from zgbench.harness import plan, run_all

    torch.set_num_threads(1)
    registry = plugins.load()
    entries = [(specs.resolve_task(registry, "sphere[dim=4]"), Budget(evals=100),
                [specs.resolve_optimizer(registry, "random-search")])]
    work = plan(entries, seeds=runs)
    times = {"inprocess": float("inf"), "worker": float("inf")}
    with PoolExecutor(workers=1, threads=1) as worker:
        with tempfile.TemporaryDirectory() as out:  # start the worker (not timed)
            run_all(work[:1], registry, Path(out), worker)
        for _ in range(repeat):
            for name, executor in (("inprocess", InProcessExecutor()), ("worker", worker)):
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    run_all(work, registry, Path(out), executor)
                    times[name] = min(times[name], time.perf_counter() - start)
    return times["inprocess"] / runs, times["worker"] / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    call_in, call_worker = _per_call(args.repeat)
    run_in, run_worker = _per_run(args.runs, args.repeat)
    print("| cost | in-process | worker (default) | difference |")
    print("|---|---|---|---|")
    print(f"| per call (`zgbench run`, 1 run) | {call_in:.2f} s | {call_worker:.2f} s | "
          f"{call_worker - call_in:+.2f} s |")
    print(f"| per run (sphere[dim=4], 100 evals; {args.runs} runs) | {run_in * 1e3:.1f} ms | "
          f"{run_worker * 1e3:.1f} ms | {(run_worker - run_in) * 1e3:+.1f} ms |")


if __name__ == "__main__":
    main()
