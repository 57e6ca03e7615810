"""Start-up of the ``zgbench`` command, as a user meets it: a fresh process per call.

``zgbench --help``, a usage error and ``zgbench list`` (from the registry metadata cache,
filled by a first call) against ``python -c "import torch"``, the yardstick of issue 27: the
first three import no torch. Run with
``pytest tests/benchmarks/test_bench_startup.py --benchmark-enable`` and compare the means
within the group (the ratios are what to quote; the machine's load moves all of them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import zgbench

ROOT = Path(zgbench.__file__).parent.parent
GROUP = "start-up: a fresh process"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """This checkout first on the path, and a registry cache of its own, filled once."""
    cache = tmp_path_factory.mktemp("cache")
    environ = {**os.environ, "ZGBENCH_CACHE": str(cache),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    _call(["-m", "zgbench", "list"], environ)
    return environ


@pytest.fixture(autouse=True)
def _measuring_only(benchmark):
    """A measurement, not a check (tests/test_startup.py checks what these commands import):
    with benchmarks disabled, the test suite's default, it does not spend the suite's time."""
    if benchmark.disabled:
        pytest.skip("a start-up measurement: run with --benchmark-enable")


def _call(args: list[str], env: dict[str, str], status: int = 0) -> None:
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, timeout=300)
    assert done.returncode == status, done.stderr.decode()[-2000:]


@pytest.mark.parametrize("args,status", [
    (["-c", "import torch"], 0),
    (["-m", "zgbench", "--help"], 0),
    (["-m", "zgbench", "run", "--workers"], 2),  # a usage error
    (["-m", "zgbench", "list"], 0),  # from the cache the fixture filled
], ids=["import-torch", "help", "usage-error", "list-cached"])
def test_start_up(benchmark, env, args, status):
    benchmark.group = GROUP
    benchmark.pedantic(_call, args=(args, env, status), rounds=5, warmup_rounds=1)
