"""Shared fixtures: a loaded registry (built-ins and installed plugins), one torch thread."""

from __future__ import annotations

import pytest
import torch

from zgbench import plugins


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """``--benchmark-enable`` runs in one process (as ``-n 0``): the suite's default two
    (pytest-xdist, pyproject.toml) would turn the benchmarks off, and would time them against
    each other."""
    if config.getoption("benchmark_enable", False) and getattr(config.option, "numprocesses", 0):
        config.option.numprocesses = 0


@pytest.fixture(scope="session")
def registry():
    return plugins.load()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' tensors are small: one intra-op thread is as fast, gives the same numbers on
    every machine, and is immune to oversubscribed cores, where OpenMP's waiting threads made
    small ops 10-30x slower (as `zgbench run --threads 1`, the CLI default)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
