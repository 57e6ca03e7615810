"""Suites that discriminate (issue 22, item 6): a task separates where some optimizer's
median interval lies clear of both the start's and the baseline's.

By hand on constructed records (every interval known: with 3 seeds the 95% percentile
interval of a median is the seeds' range), then one tiny real run through ``zgbench run``
where one task separates and one does not.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from zgbench import declared, leaderboard, stats
from zgbench.cli import main


def _record(optimizer, seed, value, start, direction="min"):
    """A finished run of task ``t`` whose start θ₀ scored ``start`` and which ended at
    ``value`` (primary metric ``score``)."""
    point = {"evals": 100, "grads": 0, "steps": 1, "seconds": 0.1, "metrics": {"score": value}}
    return {
        "schema": 1, "run_id": f"t-{optimizer}-{seed}",
        "identity": {"task": "t", "optimizer": optimizer, "seed": seed,
                     "budget": {"evals": 100, "grads": None, "steps": None, "seconds": None}},
        "task": {"name": "t", "label": "t", "canonical": "t", "primary_metric": "score",
                 "metrics": {"score": direction}},
        "optimizer": {"name": optimizer, "label": optimizer}, "status": "ok", "error": None,
        "environment": {"hostname": "h"}, "start": {"score": start},
        "trajectory": [{**point, "evals": 0, "metrics": {"score": start}}, point],
        "final": point,
    }


def _records(values, starts=(10.0, 12.0, 14.0), direction="min"):
    sign = 1.0 if direction == "min" else -1.0
    return [_record(name, seed, sign * v, sign * starts[seed], direction)
            for name, row in values.items() for seed, v in enumerate(row)]


def _stats(records, baseline="random-search"):
    return stats.task_stats(leaderboard.runs_frame(records), records, baseline=baseline)


@pytest.mark.parametrize("direction", ["min", "max"])
def test_separation_by_hand(direction):
    # a: every seed below every seed of the start and of random search; b: clear of the
    # start but overlapping random search; c: overlapping the start
    records = _records({"random-search": [4.0, 5.0, 6.0], "a": [1.0, 2.0, 3.0],
                        "b": [3.0, 4.5, 9.0], "c": [9.0, 11.0, 13.0]}, direction=direction)
    ts = _stats(records)
    table = ts.table.set_index("optimizer")
    sign = 1.0 if direction == "min" else -1.0
    assert ts.start == tuple(sorted([sign * 10.0, sign * 14.0]))
    assert (table["start_lo"] == ts.start[0]).all() and (table["start_hi"] == ts.start[1]).all()
    assert table["beats_start"].to_dict() == {"a": True, "b": True, "c": False,
                                              "random-search": True}
    assert table["beats_baseline"].to_dict() == {"a": True, "b": False, "c": False,
                                                 "random-search": None}
    assert ts.separates is True
    without_a = [r for r in records if r["optimizer"]["name"] != "a"]
    assert _stats(without_a).separates is False


def test_touching_intervals_overlap_and_the_baseline_never_separates_alone():
    records = _records({"random-search": [1.0, 2.0, 3.0], "a": [3.0, 3.0, 3.0]},
                       starts=(10.0, 10.0, 10.0))
    ts = _stats(records)
    assert ts.table.set_index("optimizer")["beats_baseline"]["a"] is False  # 3 touches 3
    assert ts.separates is False  # random search beats the start, but it is the baseline


def test_without_a_baseline_the_start_decides_and_without_a_start_nothing():
    records = _records({"a": [1.0, 2.0, 3.0], "b": [9.0, 11.0, 13.0]})
    assert _stats(records, baseline=None).separates is True
    assert _stats(records, baseline="random-search").separates is True  # it did not run
    unknown = [{k: v for k, v in r.items() if k != "start"} for r in records]
    for r in unknown:
        r["trajectory"] = r["trajectory"][1:]  # no zero-spend checkpoint either
    ts = _stats(unknown)
    assert ts.separates is None and ts.table["beats_start"].isna().all()


def test_leaderboard_tables_and_records_agree():
    records = _records({"random-search": [4.0, 5.0, 6.0], "a": [1.0, 2.0, 3.0]})
    flat = _records({"random-search": [4.0, 5.0, 6.0], "a": [4.0, 5.0, 6.0]})
    for r in flat:
        r["task"] = {**r["task"], "label": "u", "canonical": "u"}
        r["run_id"] = "u" + r["run_id"]
    tables = leaderboard.compute(records + flat,
                                 declared.Declarations(baseline="random-search"))["tasks"]
    assert tables["t"]["separates"].all() and not tables["u"]["separates"].any()
    assert leaderboard.not_separating(tables) == ["u"]
    assert leaderboard.separation(records + flat, "random-search") == {"t": True, "u": False}


def test_a_tiny_run_names_the_task_that_does_not_separate(tmp_path, capsys, monkeypatch):
    """sphere[dim=4] at 300 evaluations: cma-es ends far below the start and random search
    on every seed. sphere[dim=3] at 2 evaluations: nobody moves far enough to separate."""
    monkeypatch.setenv("ZGBENCH_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "sep.toml"
    suite.write_text(
        '[suite]\nseeds = 3\noptimizers = ["random-search", "cma-es"]\n'
        'baseline = "random-search"\n'
        '[[tasks]]\nspec = "sphere[dim=4]"\nbudget = { evals = 300 }\n'
        '[[tasks]]\nspec = "sphere[dim=3]"\nbudget = { evals = 2 }\n')
    out = tmp_path / "res"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "does not separate" in line]
    assert len(lines) == 1 and "sphere[dim=3]" in lines[0] and "sphere[dim=4]" not in lines[0]

    board = out / "leaderboard"
    good = pd.read_csv(board / "sphere_dim=4.csv").set_index("optimizer")
    flat = pd.read_csv(board / "sphere_dim=3.csv").set_index("optimizer")
    assert good["separates"].all() and not flat["separates"].any()
    assert bool(good.loc["cma-es", "beats_start"]) and bool(good.loc["cma-es", "beats_baseline"])
    # the start's interval: the range of the three instances' starts (3 seeds)
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    starts = [r["start"]["gap"] for r in records if r["task"]["label"] == "sphere[dim=4]"]
    assert good["start_lo"].iloc[0] == pytest.approx(min(starts), rel=1e-6)
    assert good["start_hi"].iloc[0] == pytest.approx(max(starts), rel=1e-6)
