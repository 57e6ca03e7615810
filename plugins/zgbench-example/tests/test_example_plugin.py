"""The plugin's own tests: what a plugin author should check before publishing."""

from zgbench.testing import run_once


def test_spsa_improves_regression():
    record = run_once("example-regression", "spsa", evals=2000)
    assert record["status"] == "ok", record["error"]
    first, last = record["trajectory"][0], record["trajectory"][-1]
    assert last["metrics"]["test_mse"] < 0.2 * first["metrics"]["test_mse"]
    assert last["evals"] == 2000
