"""--isolate's costs: a metered ``loss`` call across the sandbox's socket against the same call
in-process (sphere, d = 10 and 1,000; B = 1 and 64), and a run's start (an isolated run of a
few evaluations against the same run in-process).

Run with ``pytest tests/benchmarks/test_bench_sandbox.py --benchmark-enable``. The pipe's
trusted side is a real :func:`zgbench.sandbox.runner.serve` loop on a real Problem in another
process; this process is the optimizer's side (a :class:`~zgbench.sandbox.proxy.ProxyProblem`).
``extra_info`` of the start benchmarks holds the mode (bwrap or process). With benchmarks
disabled (CI) each runs once, as a test that the paths work.
"""

from __future__ import annotations

import multiprocessing
import socket

import pytest
import torch

from zgbench import specs
from zgbench.budget import Budget
from zgbench.executors import PoolExecutor
from zgbench.harness import execute, plan
from zgbench.sandbox import bwrap, wire
from zgbench.sandbox.proxy import ProxyProblem
from zgbench.testing import make_problem

BIG = Budget(evals=10**12)


def _server(sock: socket.socket, task: str) -> None:
    """The trusted side: a started Problem on ``task``, served until the client says done."""
    from zgbench.sandbox import runner

    torch.set_num_threads(1)
    problem = make_problem(task, budget=BIG)
    wire.send(sock, runner.public_view(problem))
    runner.serve(sock, problem)


@pytest.fixture(scope="module", params=[10, 1000], ids=lambda d: f"d={d}")
def remote(request):
    """A ProxyProblem on sphere[dim=d] whose problem lives in another process."""
    ours, theirs = socket.socketpair()
    context = multiprocessing.get_context("forkserver")
    process = context.Process(target=_server, args=(theirs, f"sphere[dim={request.param}]"),
                              daemon=True)
    process.start()
    theirs.close()
    doc, blobs = wire.receive(ours)
    proxy = ProxyProblem(ours, wire.decode(doc, blobs))
    yield request.param, proxy
    wire.send(ours, ["done", []])
    process.join(10)
    ours.close()


@pytest.mark.parametrize("rows", [1, 64], ids=lambda b: f"B={b}")
def test_loss_across_the_pipe(benchmark, remote, rows):
    dim, proxy = remote
    batch = torch.randn(rows, dim, dtype=proxy.dtype)
    values = benchmark(proxy.loss, batch, 7)
    assert values.shape == (rows,)
    benchmark.extra_info.update(dim=dim, rows=rows, where="pipe")


@pytest.mark.parametrize("dim", [10, 1000], ids=lambda d: f"d={d}")
@pytest.mark.parametrize("rows", [1, 64], ids=lambda b: f"B={b}")
def test_loss_in_process(benchmark, dim, rows):
    problem = make_problem(f"sphere[dim={dim}]", budget=BIG)
    batch = torch.randn(rows, dim, dtype=problem.dtype)
    values = benchmark(problem.loss, batch, 7)
    assert values.shape == (rows,)
    benchmark.extra_info.update(dim=dim, rows=rows, where="in-process")


def _tiny(registry, n: int = 1):
    return plan([(specs.resolve_task(registry, "sphere[dim=10]"), Budget(evals=16),
                  [specs.resolve_optimizer(registry, "random-search")])], n)


def test_start_in_process(benchmark, registry):
    run = _tiny(registry)[0]
    execute(run, registry)  # warm: torch and the anchors cache
    record = benchmark.pedantic(execute, args=(run, registry), rounds=3, iterations=1)
    assert record.status == "ok"


def test_start_isolated(benchmark, registry, tmp_path):
    run = _tiny(registry)[0]
    mode, _ = bwrap.resolve()
    with PoolExecutor(workers=1, isolate=True, threads=1) as executor:
        list(executor.map([run], registry, tmp_path))  # warm: the forkserver has torch

        def once():
            return list(executor.map([run], registry, tmp_path))[0][1]

        record = benchmark.pedantic(once, rounds=3, iterations=1)
    assert record.status == "ok", record.error
    benchmark.extra_info.update(mode=mode)
