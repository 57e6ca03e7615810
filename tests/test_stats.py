"""Leaderboard statistics on constructed data, against values computed by hand."""

import math
from math import comb

import numpy as np
import pandas as pd
import pytest

from zgbench import leaderboard, stats


def _record(task, optimizer, seed, value, status="ok", direction="min", path=None, calls=None,
            budget=None):
    """A record whose trajectory visits ``path`` (values) at ``calls`` and ends at ``value``."""
    path = path if path is not None else [10.0 if direction == "min" else -10.0, value]
    calls = calls if calls is not None else [0, 100][:len(path)]
    points = [{"evals": c, "grads": 0, "steps": 1, "seconds": 0.1, "task_seconds": 0.0,
               "optimizer_seconds": 0.0, "best_loss": v, "current_loss": v,
               "metrics": {"score": v}} for c, v in zip(calls, path)]
    return {
        "schema": 1, "run_id": f"{task}-{optimizer}-{seed}",
        "identity": {"task": task, "optimizer": optimizer, "seed": seed,
                     "budget": budget or {"evals": 100, "grads": None, "steps": None,
                                          "seconds": None}},
        "task": {"name": task, "label": task, "canonical": task, "primary_metric": "score",
                 "metrics": {"score": direction}},
        "optimizer": {"name": optimizer, "label": optimizer},
        "status": status, "error": None if status == "ok" else "boom",
        "environment": {"hostname": "h"},
        "trajectory": points if status == "ok" else [],
        "final": points[-1] if status == "ok" else None,
    }


# ----------------------------------------------------------------------------- primitives
def test_normalise_by_hand():
    values = np.array([1.0, 2.0, 3.0, 5.0, math.inf, math.nan, 0.0])
    out = stats.normalise(values, best=1.0, ref=3.0)
    # (v - 1) / (3 - 1), clipped to [0, 5]: below the best clips to 0, failures to the cap
    assert out[:5].tolist() == [0.0, 0.5, 1.0, 2.0, 5.0]
    assert math.isnan(out[5]) and out[6] == 0.0
    assert np.isnan(stats.normalise(values, best=1.0, ref=math.nan)).all()
    assert stats.normalise(np.array([1.0, 1.5]), best=1.0, ref=1.0).tolist() == [0.0, 5.0]


def test_competition_ranks_match_pandas():
    values = np.array([3.0, 1.0, 3.0, math.nan, 0.0, math.inf])
    expected = pd.Series(values).rank(method="min").to_numpy()
    got = stats.competition_ranks(values)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert got[~np.isnan(got)].tolist() == [3.0, 2.0, 3.0, 1.0, 5.0]
    assert expected[~np.isnan(expected)].tolist() == [3.0, 2.0, 3.0, 1.0, 5.0]


def _p_median_at_most(k, n=5):
    """P(median of n draws with replacement from 1..n <= k): at least (n+1)/2 draws <= k."""
    p = k / n
    return sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range((n + 1) // 2, n + 1))


def test_bootstrap_median_distribution_and_interval_by_hand():
    matrix = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    idx = stats.bootstrap_indices(5, 20000, seed=7)
    reps = stats.resampled_medians(matrix, idx)[:, 0]
    # exact bootstrap law of the median: P(median <= 1) = 181/3125
    assert _p_median_at_most(1) == pytest.approx(181 / 3125)
    for k in range(1, 5):
        p = _p_median_at_most(k)
        assert np.mean(reps <= k) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / 20000))
    # 80%: the 10% quantile is 2 (0.058 < 0.1 <= 0.317), the 90% quantile is 4 (0.5 < 0.9 <= 0.942)
    lo, hi = stats.interval(reps[:, None], confidence=0.8)
    assert (lo[0], hi[0]) == (2.0, 4.0)
    # 95%: 0.025 <= 0.058 gives 1; 0.942 < 0.975 gives 5
    lo, hi = stats.interval(reps[:, None], confidence=0.95)
    assert (lo[0], hi[0]) == (1.0, 5.0)
    # same seed, same replicates
    again = stats.resampled_medians(matrix, stats.bootstrap_indices(5, 20000, seed=7))[:, 0]
    assert np.array_equal(reps, again)


def test_interval_keeps_infinities():
    samples = np.array([[1.0, math.inf], [2.0, math.inf], [3.0, math.inf], [math.nan, math.inf]])
    lo, hi = stats.interval(samples, confidence=0.5)
    assert lo.tolist() == [1.0, math.inf] and hi.tolist() == [3.0, math.inf]


# ----------------------------------------------------------------------------- per task
def _task_records(direction="min"):
    sign = 1 if direction == "min" else -1
    rs = [_record("t", "random-search", s, sign * v, direction=direction) for s, v in
          enumerate([4.0, 6.0, 5.0])]
    # "a" passed through 0.5 mid-run: the best known value
    rs += [_record("t", "a", 0, sign * 1.0, direction=direction,
                   path=[sign * 10.0, sign * 0.5, sign * 1.0], calls=[0, 50, 100]),
           _record("t", "a", 1, sign * 2.0, direction=direction),
           _record("t", "a", 2, sign * 3.0, direction=direction)]
    rs += [_record("t", "b", 0, None, status="failed", direction=direction),
           _record("t", "b", 1, sign * 2.0, direction=direction),
           _record("t", "b", 2, sign * 2.5, direction=direction)]
    rs += [_record("t", "c", s, None, status="n/a", direction=direction) for s in range(3)]
    return rs


@pytest.mark.parametrize("direction", ["min", "max"])
def test_task_stats_by_hand(direction):
    records = _task_records(direction)
    ts = stats.task_stats(leaderboard.runs_frame(records), records, n_boot=4000,
                          baseline="random-search")
    table = ts.table.set_index("optimizer")
    sign = 1 if direction == "min" else -1
    assert table.loc["a", "best_known"] == sign * 0.5
    assert table.loc["a", "baseline_median"] == sign * 5.0
    # normalised medians: (v - 0.5) / (5 - 0.5); b's failure counts as the cap (5)
    assert table.loc["random-search", "norm_score"] == pytest.approx(1.0)
    assert table.loc["a", "norm_score"] == pytest.approx(1.5 / 4.5)
    assert table.loc["b", "norm_score"] == pytest.approx(2.0 / 4.5)  # median of 1.5/4.5, 2/4.5, 5
    assert "c" not in table.index  # n/a: not ranked
    # a's median interval (3 seeds: 1, 2, 3) spans the sample at 95%; the metric's sign kept
    lo, hi = sorted([sign * 1.0, sign * 3.0])
    assert (table.loc["a", "median_lo"], table.loc["a", "median_hi"]) == (lo, hi)
    # random search is worst on every seed it ran against a: its rank interval is the bottom
    assert table.loc["random-search", "rank_lo"] >= 2 and table.loc["random-search", "rank_hi"] == 3


def test_rank_interval_certain_and_uncertain():
    rs = [_record("u", "x", s, v) for s, v in enumerate([1.0, 1.0, 1.0, 1.0])]
    rs += [_record("u", "y", s, v) for s, v in enumerate([2.0, 2.0, 2.0, 2.0])]
    rs += [_record("u", "z", s, v) for s, v in enumerate([0.5, 3.0, 0.5, 3.0])]
    table = stats.task_stats(leaderboard.runs_frame(rs), rs).table.set_index("optimizer")
    # x always beats y: certain ranks relative to each other; z's median wanders from 0.5 to 3
    assert table.loc["x", "rank_hi"] <= 2 and table.loc["y", "rank_lo"] >= 2
    assert (table.loc["z", "rank_lo"], table.loc["z", "rank_hi"]) == (1.0, 3.0)
    # z's median replicates are 0.5, 1.75 or 3: the 95% interval is [0.5, 3]
    assert (table.loc["z", "median_lo"], table.loc["z", "median_hi"]) == (0.5, 3.0)


def test_overall_mean_score_and_rank():
    records = _task_records("min")
    # a second task where a is best and random search second: scores 0 and 1
    records += [_record("t2", "random-search", s, 3.0) for s in range(3)]
    records += [_record("t2", "a", s, 1.0, path=[3.0, 1.0]) for s in range(3)]
    analysis = stats.analyse(leaderboard.runs_frame(records), records, n_boot=500,
                             baseline="random-search")
    overall = analysis.overall.set_index("optimizer")
    assert overall.loc["a", "norm_score"] == pytest.approx((1.5 / 4.5 + 0.0) / 2)
    assert overall.loc["a", "tasks_scored"] == 2 and overall.loc["b", "tasks_scored"] == 1
    assert overall.loc["random-search", "norm_score"] == pytest.approx(1.0)
    # on t2 the ranks are certain (a 1, random search 2); on t they vary with the seeds
    assert overall.loc["a", "rank_lo"] >= 1.0 and overall.loc["a", "rank_hi"] <= 2.0
    assert overall.loc["random-search", "rank_lo"] >= 2.0


def test_analysis_is_deterministic():
    records = _task_records("min")
    runs = leaderboard.runs_frame(records)
    a, b = stats.analyse(runs, records), stats.analyse(runs, records)
    pd.testing.assert_frame_equal(a.overall, b.overall)
    pd.testing.assert_frame_equal(a.tasks["t"].table, b.tasks["t"].table)


def test_win_rates_by_hand():
    rs = [_record("t", "a", s, v) for s, v in enumerate([1.0, 2.0, 3.0])]
    rs += [_record("t", "b", s, v) for s, v in enumerate([2.0, 2.0, 1.0])]
    rs += [_record("t2", "a", 0, 0.5, direction="max"), _record("t2", "b", 0, 0.7, direction="max")]
    rs += [_record("t2", "b", 1, None, status="failed", direction="max"),
           _record("t2", "a", 1, 0.1, direction="max")]
    rate = stats.win_rates(leaderboard.runs_frame(rs))
    # t: a wins seed 0, ties seed 1, loses seed 2;
    # t2 ("max"): a loses seed 0, wins seed 1 (b failed)
    assert rate.loc["a", "b"] == pytest.approx((1 + 0.5 + 0 + 0 + 1) / 5)
    assert rate.loc["b", "a"] == pytest.approx(1 - rate.loc["a", "b"])
    assert math.isnan(rate.loc["a", "a"])


# ----------------------------------------------------------------------------- runtime ECDF
def test_runtimes_and_ecdf_by_hand():
    fast = _record("t", "fast", 0, 1.0, path=[100.0, 10.0, 1.0], calls=[0, 10, 100])
    slow = _record("t", "slow", 0, 20.0, path=[100.0, 50.0, 20.0], calls=[0, 10, 100])
    broken = _record("t", "slow", 1, None, status="failed")
    rt = stats.runtimes([fast, slow, broken], n_targets=3)
    # best known 1; median initial gap 99; closest approach 9: gaps 99 * (9/99)^(k/3), k = 1..3
    gaps = [99 * (9 / 99) ** (k / 3) for k in (1, 2, 3)]
    assert gaps[0] == pytest.approx(44.51, abs=0.01) and gaps[1] == pytest.approx(20.02, abs=0.01)
    assert rt.targets == pytest.approx([1 + g for g in gaps])
    assert rt.calls["fast"][0].tolist() == [10.0, 10.0, 10.0]  # gap 9 at 10 calls
    assert rt.calls["slow"][0].tolist() == [100.0, 100.0, math.inf]  # gap 19 at 100 calls
    assert rt.calls["slow"][1].tolist() == [math.inf] * 3  # a failure reaches nothing
    xs, ys = stats.ecdf([rt.calls["fast"]])
    assert xs.tolist() == [10.0] and ys == pytest.approx([1.0])
    xs, ys = stats.ecdf([rt.calls["slow"]])
    assert xs.tolist() == [100.0] and ys == pytest.approx([2 / 6])
    # budget fractions: 10 and 100 evaluations of a 100-evaluation budget
    assert rt.fractions["fast"][0].tolist() == [0.1, 0.1, 0.1]
    assert rt.fractions["slow"][0].tolist() == [1.0, 1.0, math.inf]


def test_profiles_weigh_tasks_equally():
    # t1: one run, no approach short of the best: the only target is the best (at 50 of 100)
    t1 = [_record("t1", "o", 0, 1.0, path=[10.0, 1.0], calls=[0, 50])]
    # t2: gaps 9 -> 6 -> 0 and 9 -> 8.5 -> 2: targets 1 + (sqrt(18), 2), both reached at 100
    t2 = [_record("t2", "o", 0, 1.0, path=[10.0, 7.0, 1.0], calls=[0, 50, 100]),
          _record("t2", "o", 1, 3.0, path=[10.0, 9.5, 3.0], calls=[0, 50, 100])]
    rts = [stats.runtimes(t1, n_targets=2), stats.runtimes(t2, n_targets=2)]
    assert rts[0].targets.tolist() == [1.0]
    assert rts[1].targets == pytest.approx([1 + math.sqrt(18), 3.0])
    frame = stats.profiles(rts)
    overall = frame[frame["scope"] == "all"]
    # t1's single pair weighs 1/2, each of t2's four pairs 1/8
    assert overall["x"].tolist() == [0.5, 1.0]
    assert overall["fraction"].tolist() == pytest.approx([0.5, 1.0])
    per_task = frame[frame["scope"] == "t2"]
    assert per_task["x"].tolist() == [100.0] and per_task["x_kind"].iloc[0] == "evals"


# ----------------------------------------------------------------------------- compare
def _stats_row(task, optimizer, median, lo, hi, direction="min", status="ok"):
    return {"task": task, "optimizer": optimizer, "metric": "score", "direction": direction,
            "median": median, "median_lo": lo, "median_hi": hi, "status": status}


def test_compare_verdicts():
    old = pd.DataFrame([_stats_row("t", "a", 1.0, 0.9, 1.1), _stats_row("t", "b", 1.0, 0.9, 1.1),
                        _stats_row("t", "c", 1.0, 0.5, 1.5),
                        _stats_row("m", "a", 0.8, 0.7, 0.9, "max"),
                        _stats_row("t", "gone", 1.0, 1.0, 1.0),
                        _stats_row("t", "d", 1.0, 0.9, 1.1)])
    new = pd.DataFrame([_stats_row("t", "a", 2.0, 1.8, 2.2),   # worse beyond both intervals
                        _stats_row("t", "b", 0.5, 0.4, 0.6),   # better
                        _stats_row("t", "c", 1.4, 1.2, 1.6),   # inside the old interval
                        _stats_row("m", "a", 0.5, 0.4, 0.6, "max"),  # "max": lower is worse
                        _stats_row("t", "d", math.inf, math.inf, math.inf),  # now fails
                        _stats_row("t", "new", 1.0, 1.0, 1.0)])
    verdict = stats.compare(old, new).set_index(["task", "optimizer"])["verdict"]
    assert verdict[("t", "a")] == "regressed" and verdict[("t", "b")] == "improved"
    assert verdict[("t", "c")] == "unchanged" and verdict[("m", "a")] == "regressed"
    assert verdict[("t", "d")] == "regressed"
    assert verdict[("t", "gone")] == "missing" and verdict[("t", "new")] == "added"


def test_task_where_every_pair_is_na():
    records = [_record("na", "adam", s, None, status="n/a") for s in range(2)]
    records += [_record("t", "a", 0, 1.0)]
    computed = leaderboard.compute(records)
    na = computed["tasks"]["na"].set_index("optimizer")
    assert na.loc["adam", "status"] == "n/a" and math.isnan(na.loc["adam", "rank_lo"])
    assert computed["overall"].set_index("optimizer").loc["adam", "n/a"] == 1


def test_gradients_and_evaluations_are_never_added_on_one_axis():
    # issue 26.5: curves and ECDFs put "oracle calls" = evals + grads on their x axis
    both = {"evals": 100, "grads": 10, "steps": None, "seconds": None}
    dfo = _record("t", "dfo", 0, 1.0, path=[10.0, 5.0, 1.0], calls=[0, 50, 100], budget=both)
    grad = _record("t", "adam", 0, 2.0, path=[10.0, 2.0], calls=[0, 0], budget=both)
    grad["trajectory"][1]["grads"] = 10  # 10 gradients, no evaluation: all of its budget
    assert stats.spend_axis([dfo, grad]) == "budget_fraction"
    rt = stats.runtimes([dfo, grad], n_targets=2)
    assert rt.axis == "budget_fraction" and rt.calls["adam"][0].tolist() == [1.0, 1.0]
    curves = leaderboard.curves([dfo, grad])
    assert curves["adam"]["calls"].max() == 1.0 and curves["dfo"]["calls"].max() == 1.0
    # one bounded counter: that counter, gradients spent beyond it switch to the fraction
    evals_only = [_record("t", "dfo", s, 1.0) for s in range(2)]
    assert stats.spend_axis(evals_only) == "evals"
    assert stats.spend_axis(evals_only + [grad]) == "budget_fraction"
    frame = stats.profiles([stats.runtimes([dfo, grad], n_targets=2)])
    assert set(frame[frame["scope"] == "t"]["x_kind"]) == {"budget_fraction"}
