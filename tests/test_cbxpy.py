"""The ``cbxpy`` optimizer: CBXpy's own CBO dynamics on the metered problem."""

import numpy as np
import pytest

pytest.importorskip("cbx")

from test_dfo import run_once, trajectory  # noqa: E402  (the DFO tests' helpers)


def test_reaches_the_sphere_optimum_and_spends_the_budget_exactly():
    gaps = []
    for seed in range(3):
        record = run_once("sphere[dim=10]", "cbxpy", evals=20000, seed=seed)
        assert record["status"] == "ok", record["error"]
        assert record["final"]["evals"] == 20000
        assert record["trajectory"][0]["metrics"]["gap"] > 10
        gaps.append(record["final"]["metrics"]["gap"])
    assert float(np.median(gaps)) < 1e-2, gaps
    odd = run_once("sphere[dim=5]", "cbxpy", evals=333)
    assert odd["status"] == "ok" and odd["final"]["evals"] == 333


def test_deterministic_under_seed():
    first = run_once("sphere[dim=5]", "cbxpy", evals=400, seed=3)
    again = run_once("sphere[dim=5]", "cbxpy", evals=400, seed=3)
    other = run_once("sphere[dim=5]", "cbxpy", evals=400, seed=4)
    assert trajectory(first) == trajectory(again) != trajectory(other)
