"""Time of one training step of the neural radiance cache: full gradient vs semi-gradient.

Cho and Cho (2024) report 25-30 % less time per iteration for the semi-gradient (its right
side is evaluated under no-grad). One step = a ``residual`` call on a fresh key (Mitsuba
sampling and tracing, network queries), the surrogate's backward and an Adam step: on the
quick instance of each scene (256 points, M = 4) and on the Cornell box with the papers'
M = 32 (1024 points). Measure with::

    .venv/bin/pytest tests/benchmarks/test_bench_radiosity.py --benchmark-enable
"""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("mitsuba")

from zgbench.optimizers.semigradient import (  # noqa: E402
    DualBuffer, FullGradient, SemiGradient, Weighted)

SCENES = ("cornell-box", "glossy", "hidden-light")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """The quick instances (the task's defaults) and an M = 32 one, with a cheap reference."""
    from zgbench.tasks.radiosity import Radiosity

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZGBENCH_CACHE", str(tmp_path_factory.mktemp("zgcache")))
        # one torch thread: comparable figures on a shared machine, where OpenMP's spinning
        # threads make these small tensor ops up to 10x slower (Mitsuba keeps its own pool)
        torch.set_num_threads(1)
        found = {scene: Radiosity(scene=scene, ref_spp=16) for scene in SCENES}
        found["m32"] = Radiosity(scene="cornell-box", batch=1024, m=32, ref_spp=16)
        yield found
    torch.set_num_threads(threads)


def bench_step(benchmark, task, method) -> None:
    theta = torch.nn.Parameter(task.initial())
    opt = torch.optim.Adam([theta], lr=1e-3)
    keys = itertools.count()

    def step():
        res = task.residual(theta, next(keys), detach=method.requested())
        opt.zero_grad(set_to_none=True)
        method.surrogate(res).backward()
        opt.step()

    step()  # compile Mitsuba's kernels outside the measurement
    benchmark(step)
    assert torch.isfinite(theta).all()


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("method", [FullGradient(), SemiGradient(), DualBuffer(),
                                    Weighted(w=0.5)], ids=lambda m: m.name)
def test_step(benchmark, tasks, scene, method):
    bench_step(benchmark, tasks[scene], method)


@pytest.mark.parametrize("method", [FullGradient(), SemiGradient()], ids=lambda m: m.name)
def test_step_m32(benchmark, tasks, method):
    """M = 32 as in the papers: the network, not the tracing, dominates the step."""
    bench_step(benchmark, tasks["m32"], method)
