"""Leaderboard ranking on constructed records: medians, failures, n/a, ties, overall."""

import json
import math

import pandas as pd
import pytest

from zgbench import leaderboard
from zgbench.store import ResultStore


def _record(task, optimizer, seed, value, status="ok", direction="min", evals=100):
    point = {"evals": evals, "grads": 0, "steps": 10, "seconds": 1.0, "task_seconds": 0.5,
             "optimizer_seconds": 0.5, "best_loss": value, "current_loss": value,
             "metrics": {"score": value}}
    start = dict(point, evals=0, metrics={"score": 10.0 if direction == "min" else 0.0})
    return {
        "schema": 1, "run_id": f"{task}-{optimizer}-{seed}",
        "identity": {"task": task, "optimizer": optimizer, "seed": seed},
        "task": {"name": task, "label": task, "canonical": task, "primary_metric": "score",
                 "metrics": {"score": direction}},
        "optimizer": {"name": optimizer, "label": optimizer},
        "status": status, "error": None if status == "ok" else "boom",
        "environment": {"hostname": "h", "torch": "t"},
        "trajectory": [start, point] if status == "ok" else [],
        "final": point if status == "ok" else None,
    }


def _records():
    rs = []
    for seed, (a, b, c) in enumerate([(1.0, 2.0, 2.0), (3.0, 2.0, 2.0), (2.0, 2.0, 2.0)]):
        rs += [_record("t1", "a", seed, a), _record("t1", "b", seed, b), _record("t1", "c", seed, c)]
    # t2 ("max" metric): a fails twice, b is best, c is n/a
    rs += [_record("t2", "a", 0, 0.9, direction="max"),
           _record("t2", "a", 1, None, status="failed", direction="max"),
           _record("t2", "a", 2, None, status="failed", direction="max")]
    rs += [_record("t2", "b", s, 0.5 + s / 10, direction="max") for s in range(3)]
    rs += [_record("t2", "c", s, None, status="n/a", direction="max") for s in range(3)]
    return rs


def test_task_tables():
    runs = leaderboard.runs_frame(_records())
    t1 = leaderboard.task_table(runs[runs.task == "t1"]).set_index("optimizer")
    assert t1.loc["a", "median"] == 2.0 and t1.loc["a", "q25"] == 1.5 and t1.loc["a", "q75"] == 2.5
    # all three medians are 2.0: a tie shares the best rank
    assert list(t1["rank"]) == [1.0, 1.0, 1.0]
    t2 = leaderboard.task_table(runs[runs.task == "t2"]).set_index("optimizer")
    assert t2.loc["b", "rank"] == 1 and t2.loc["b", "median"] == pytest.approx(0.6)
    assert t2.loc["a", "rank"] == 2 and t2.loc["a", "median"] == -math.inf  # failures are worst
    assert t2.loc["a", "runs_failed"] == 2 and t2.loc["a", "runs_ok"] == 1
    assert t2.loc["c", "status"] == "n/a" and pd.isna(t2.loc["c", "rank"])


def test_overall_and_files(tmp_path):
    store = ResultStore(tmp_path / "results")
    for record in _records():
        store.put(record)
    written = leaderboard.write(tmp_path / "results", tmp_path / "lb")
    overall = written["overall"].set_index("optimizer")
    assert overall.loc["b", "mean_rank"] == 1.0 and overall.loc["b", "wins"] == 2
    assert overall.loc["a", "mean_rank"] == 1.5 and overall.loc["a", "wins"] == 1
    assert overall.loc["c", "n/a"] == 1 and overall.loc["c", "tasks_ranked"] == 1
    assert written["overall"]["optimizer"].iloc[0] == "b"
    names = {p.name for p in (tmp_path / "lb").iterdir()}
    assert {"t1.csv", "t2.csv", "t1.png", "t2.png", "overall.csv", "machine.json"} <= names
    assert json.loads((tmp_path / "lb" / "machine.json").read_text()) == [{"hostname": "h", "torch": "t"}]
    csv = pd.read_csv(tmp_path / "lb" / "t1.csv")
    assert list(csv.columns[:4]) == ["rank", "optimizer", "spec", "median"]


def test_curves_hold_values_between_checkpoints():
    r1 = _record("t", "a", 0, 1.0)
    r2 = _record("t", "a", 1, 3.0, evals=50)
    data = leaderboard.curves([r1, r2])["a"]
    assert list(data["calls"]) == [0, 50, 100]
    assert list(data["median"]) == [10.0, 6.5, 2.0]


def test_statistics_extend_the_files(tmp_path):
    store = ResultStore(tmp_path / "results")
    for record in _records():
        store.put(record)
    written = leaderboard.write(tmp_path / "results", tmp_path / "lb")
    names = {p.name for p in (tmp_path / "lb").iterdir()}
    assert {"stats.csv", "win_rate.csv", "win_rate.png", "profiles.csv", "profiles.png",
            "t1.profile.png", "t2.profile.png"} <= names
    t1 = pd.read_csv(tmp_path / "lb" / "t1.csv").set_index("optimizer")
    # a: values 1, 3, 2 over three seeds; its bootstrap interval of the median spans them
    assert (t1.loc["a", "median_lo"], t1.loc["a", "median_hi"]) == (1.0, 3.0)
    assert (t1.loc["b", "median_lo"], t1.loc["b", "median_hi"]) == (2.0, 2.0)
    assert t1["norm_score"].isna().all()  # no random-search baseline: no normalised score
    overall = written["overall"].set_index("optimizer")
    assert (overall["rank_lo"] <= overall["mean_rank"]).all()
    assert (overall["mean_rank"] <= overall["rank_hi"]).all()
    # win rate a over b: t1 seeds win/lose/tie, t2 ("max") seed 0 win, seeds 1-2 failures lose
    rate = pd.read_csv(tmp_path / "lb" / "win_rate.csv", index_col=0)
    assert rate.loc["a", "b"] == pytest.approx((1 + 0 + 0.5 + 1 + 0 + 0) / 6)
    long = pd.read_csv(tmp_path / "lb" / "stats.csv")
    assert set(long["task"]) == {"t1", "t2"} and len(long) == 6


@pytest.mark.parametrize("seeds", [2, 4, 6])
@pytest.mark.parametrize("direction", ["min", "max"])
def test_half_failing_never_ranks_above_an_honest_optimizer(tmp_path, seeds, direction):
    """Issue 18.5: with an even number of seeds, {0.09, inf} must not have median 0.09."""
    good, honest = (0.09, 0.5) if direction == "min" else (0.91, 0.5)
    rs = []
    for s in range(seeds):
        failing = s >= seeds // 2
        rs.append(_record("t", "half", s, None if failing else good,
                          status="failed" if failing else "ok", direction=direction))
        rs.append(_record("t", "honest", s, honest, direction=direction))
        rs.append(_record("t", "random-search", s, honest + (0.1 if direction == "min" else -0.1),
                          direction=direction))
    store = ResultStore(tmp_path / "results")
    for r in rs:
        store.put(r)
    written = leaderboard.write(tmp_path / "results", tmp_path / "lb", baseline="random-search")
    table = written["tasks"]["t"].set_index("optimizer")
    worst = math.inf if direction == "min" else -math.inf
    assert table.loc["half", "median"] == worst
    assert table.loc["honest", "rank"] < table.loc["half", "rank"]
    # the bootstrap agrees: the half-failing median interval reaches the worst value, and its
    # normalised score is the cap, worse than the honest optimizer's
    assert worst in (table.loc["half", "median_lo"], table.loc["half", "median_hi"])
    assert table.loc["half", "norm_score"] == 5.0 > table.loc["honest", "norm_score"]
    overall = written["overall"].set_index("optimizer")
    assert overall.loc["honest", "mean_rank"] < overall.loc["half", "mean_rank"]


def test_worse_quantile_interpolates_finite_and_takes_the_worse_at_failures():
    from zgbench import stats

    inf = math.inf
    assert stats.worse_median([0.09, inf]) == inf
    assert stats.worse_median([1.0, 2.0, inf, inf]) == inf
    assert stats.worse_median([1.0, 2.0, 3.0, inf]) == 2.5  # finite middle: interpolated
    assert stats.worse_median([1.0, 3.0]) == 2.0
    assert stats.worse_quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    assert math.isnan(stats.worse_median([math.nan, math.nan]))
    assert stats.worse_median([math.nan, 1.0, inf]) == inf  # NaN = missing seed, ignored
    matrix = [[1.0, inf], [1.0, 2.0]]
    assert stats.worse_median(matrix, axis=1).tolist() == [inf, 1.5]


def test_nan_metric_is_the_worst_value_and_every_file_is_written(tmp_path):
    """Issue 18.6: a task returning NaN (stored as null) for its metric at some checkpoints
    and at the end: the run counts as the worst value, plots skip the points, and every file
    (overall.csv included) is written."""
    rs = []
    for s in range(3):
        bad = _record("t", "nan-opt", s, 1.0)
        for point in bad["trajectory"]:
            point["metrics"] = {"score": None}
        rs += [bad, _record("t", "fine", s, 2.0 + s), _record("t", "random-search", s, 5.0)]
    half = _record("t", "half-nan", 0, 0.5)
    half["trajectory"][0]["metrics"] = {"score": None}  # NaN at the start, finite at the end
    rs += [half, _record("t", "half-nan", 1, 0.5), _record("t", "half-nan", 2, 0.5)]
    for s in range(2):  # a task on which every metric is NaN: nothing to plot on a log axis
        only = _record("u", "nan-opt", s, 1.0)
        for point in only["trajectory"]:
            point["metrics"] = {"score": None}
        rs.append(only)
    store = ResultStore(tmp_path / "results")
    for r in rs:
        store.put(r)
    written = leaderboard.write(tmp_path / "results", tmp_path / "lb")
    table = written["tasks"]["t"].set_index("optimizer")
    assert table.loc["nan-opt", "median"] == math.inf
    assert table.loc["nan-opt", "rank"] == 4 and table.loc["half-nan", "rank"] == 1
    names = {p.name for p in (tmp_path / "lb").iterdir()}
    assert {"overall.csv", "t.csv", "t.png", "u.csv", "u.png", "stats.csv",
            "profiles.png"} <= names
    assert written["tasks"]["u"]["median"].tolist() == [math.inf]
    data = leaderboard.curves(rs)
    assert "half-nan" in data and data["half-nan"]["median"].notna().any()


def test_machine_json_holds_the_cpu_memory_and_library_versions(tmp_path):
    # issue 26.5: machine.json named the host and torch only
    from importlib.metadata import version

    from zgbench.testing import run_once

    ResultStore(tmp_path / "r").put(run_once("sphere[dim=2]", "random-search", evals=20))
    leaderboard.write(tmp_path / "r", tmp_path / "lb")
    (machine,) = json.loads((tmp_path / "lb" / "machine.json").read_text())
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1 and machine["memory_gib"] > 0
    assert machine["torch"] == version("torch")
    for dist, key in (("cma", "pycma"), ("nevergrad", "nevergrad"), ("mitsuba", "mitsuba"),
                      ("phiflow", "phiflow")):
        try:
            assert machine[key] == version(dist)
        except ImportError:  # PackageNotFoundError: the extra is not installed here
            assert machine[key] is None
