"""Executors: throughput of the cross product (runs per minute) on the synthetic part of the
quick suite, in-process vs a pool of 2 workers vs Ray (local instance, 2 CPUs); and the
per-run overhead Ray adds, from tiny runs executed one at a time.

Run with ``pytest tests/benchmarks/test_bench_executors.py --benchmark-enable``: each timed
round runs the whole plan into a fresh results folder after one warm-up round (pool and Ray
workers started, torch imported); ``extra_info`` holds the run count, runs per minute, the
cold (first-round) seconds and, for the one-at-a-time tiny runs, the wall time per run spent
outside ``execute()`` (executor and store; the difference between Ray and in-process is what
Ray adds per run, independent of how fast the shared CPU runs the work itself). With
benchmarks disabled (CI) the plans shrink to a few runs.
"""

import atexit
import itertools
import time

import pytest

from zgbench import specs
from zgbench import suite as suites
from zgbench.budget import Budget
from zgbench.executors import InProcessExecutor, PoolExecutor, RayExecutor
from zgbench.harness import plan, run_all
from zgbench.store import ResultStore

OPTIMIZERS = ["random-search", "fd", "rge", "cge", "adam"]
_folders = itertools.count()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance (127.0.0.1, 2 CPUs), shared with tests/test_executors.py when both
    run in one process, stopped when the process exits."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'zgbench[ray]'")
    if not ray.is_initialized():
        from zgbench.executors import ray_session

        session = ray_session(num_cpus=2)
        session.__enter__()
        atexit.register(session.__exit__, None, None, None)
    return ray


def _subset(registry, full: bool):
    """The quick suite's synthetic tasks (with their quick budgets) x the core optimizers."""
    quick = suites.load("quick", registry)
    tasks = [t for t in quick.tasks if registry.task(t.spec.name).plugin == "synthetic"]
    names = OPTIMIZERS if full else OPTIMIZERS[:2]
    optimizers = [specs.resolve_optimizer(registry, o) for o in names]
    entries = [(t.spec, t.budget, optimizers) for t in (tasks if full else tasks[:1])]
    return plan(entries, 3 if full else 1)


def _tiny(registry, n: int):
    """``n`` runs that do almost nothing: what remains is the executor's own cost."""
    task = specs.resolve_task(registry, "sphere[dim=2]")
    optimizer = specs.resolve_optimizer(registry, "random-search")
    return plan([(task, Budget(evals=4), [optimizer])], n)


def _measure(benchmark, runs, registry, executor, tmp_path, sequential=False):
    rounds = []

    def once():
        folder = tmp_path / f"r{next(_folders)}"
        start = time.perf_counter()
        summary = run_all(runs, registry, folder, executor)
        elapsed = time.perf_counter() - start
        assert summary.done + summary.na == len(runs) and summary.failed == 0
        inside = sum(r["duration"] for r in ResultStore(folder))  # time spent in execute()
        rounds.append((elapsed, inside))

    once()  # warm-up: workers started, torch and torch._dynamo imported
    cold = rounds.pop()[0]
    benchmark.pedantic(once, rounds=3 if benchmark.enabled else 1, iterations=1)
    mean = sum(e for e, _ in rounds) / len(rounds)
    benchmark.extra_info.update(runs=len(runs), runs_per_minute=round(60 * len(runs) / mean, 1),
                                cold_seconds=round(cold, 2))
    if sequential:  # wall time per run outside execute(): the executor's and the store's cost
        outside = sum(e - i for e, i in rounds) / len(rounds) / len(runs)
        benchmark.extra_info["ms_per_run_outside_execute"] = round(1000 * outside, 2)


def test_throughput_inprocess(benchmark, registry, tmp_path):
    benchmark.group = "throughput: quick synthetic subset"
    _measure(benchmark, _subset(registry, benchmark.enabled), registry, InProcessExecutor(),
             tmp_path)


def test_throughput_pool_2(benchmark, registry, tmp_path):
    benchmark.group = "throughput: quick synthetic subset"
    _measure(benchmark, _subset(registry, benchmark.enabled), registry, PoolExecutor(workers=2),
             tmp_path)


def test_throughput_ray(benchmark, registry, ray_cluster, tmp_path):
    benchmark.group = "throughput: quick synthetic subset"
    _measure(benchmark, _subset(registry, benchmark.enabled), registry, RayExecutor(), tmp_path)


def test_overhead_inprocess(benchmark, registry, tmp_path):
    benchmark.group = "per-run overhead: tiny runs one at a time"
    _measure(benchmark, _tiny(registry, 40 if benchmark.enabled else 2), registry,
             InProcessExecutor(), tmp_path, sequential=True)


def test_overhead_ray(benchmark, registry, ray_cluster, tmp_path):
    benchmark.group = "per-run overhead: tiny runs one at a time"
    _measure(benchmark, _tiny(registry, 40 if benchmark.enabled else 2), registry,
             RayExecutor(max_in_flight=1), tmp_path, sequential=True)
