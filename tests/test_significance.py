"""Significance tests (zgbench/significance.py) against the libraries' own results and hand
values on fixed tables: Mann-Whitney with Holm's correction, Friedman, Nemenyi, the CD."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("scikit_posthocs", reason="the analysis extra: pip install 'zgbench[analysis]'")
from scipy import stats as scipy_stats  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

from zgbench import significance  # noqa: E402

SEEDS = {"A": [1.0, 2.0, 3.0, 4.0, 5.0], "B": [1.5, 2.5, 3.5, 4.5, 5.5],
         "C": [10.0, 11.0, 12.0, 13.0, 14.0]}


def runs(values=SEEDS, direction="min", task="t"):
    rows = [{"task": task, "optimizer": name, "status": "ok", "direction": direction,
             "value": v, "counted": True, "seed": i}
            for name, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_rank_sum_matches_scipy_and_statsmodels_holm():
    pairs = significance.rank_sum(runs()).set_index(["optimizer_a", "optimizer_b"])
    keys = [("A", "B"), ("A", "C"), ("B", "C")]
    raw = [scipy_stats.mannwhitneyu(SEEDS[a], SEEDS[b], alternative="two-sided").pvalue
           for a, b in keys]
    holm = multipletests(raw, method="holm")[1]
    for key, p, q in zip(keys, raw, holm):
        assert pairs.loc[key, "p"] == pytest.approx(p)
        assert pairs.loc[key, "p_holm"] == pytest.approx(q)
    # fully separated groups of 5: exact two-sided p = 2 / C(10, 5); Holm x3 and x2, monotone
    assert pairs.loc[("A", "C"), "p"] == pytest.approx(2 / 252)
    assert pairs.loc[("A", "C"), "p_holm"] == pytest.approx(3 * 2 / 252)
    assert pairs.loc[("A", "C"), "better"] == "A" and pairs.loc[("A", "C"), "significant"]
    assert not pairs.loc[("A", "B"), "significant"] and pairs.loc[("A", "B"), "better"] == ""


def test_three_seeds_can_never_be_significant():
    three = {name: vs[:3] for name, vs in SEEDS.items()}
    pairs = significance.rank_sum(runs(three))
    assert pairs["p"].min() == pytest.approx(0.1)  # 2 / C(6, 3)
    assert not pairs["significant"].any()


def test_max_metric_and_failures():
    values = {"A": [0.9, 0.8, 0.85, 0.95, 0.91], "B": [0.1, 0.2, -math.inf, 0.15, 0.12]}
    pairs = significance.rank_sum(runs(values, direction="max"))
    row = pairs.iloc[0]
    assert row["better"] == "A" and row["median_a"] == pytest.approx(0.9)
    assert row["p"] == pytest.approx(2 / 252)


def test_marks_tied_with_best():
    table = pd.DataFrame({"optimizer": ["A", "B", "C"], "rank": [1.0, 2.0, 3.0],
                          "median": [3.0, 3.5, 12.0], "counted": True})
    marked = significance.marks(table, significance.rank_sum(runs())).set_index("optimizer")
    assert marked["tied_with_best"].to_dict() == {"A": True, "B": True, "C": False}
    assert marked.loc["C", "loses_to"] == 2 and marked.loc["A", "beats"] == 1


def tables(matrix: dict[str, list[float]], direction="min"):
    """Task tables as the boards write them, from optimizer -> medians over tasks."""
    n = len(next(iter(matrix.values())))
    out = {}
    for t in range(n):
        medians = pd.Series({name: values[t] for name, values in matrix.items()})
        out[f"task{t}"] = pd.DataFrame({
            "optimizer": medians.index, "median": medians.to_numpy(),
            "rank": (medians if direction == "min" else -medians).rank(method="min").to_numpy(),
            "direction": direction, "counted": True})
    return out


def test_friedman_by_hand_and_against_scipy():
    # A < B < C on all four tasks: mean ranks 1, 2, 3; chi2 = 12N/(k(k+1)) sum R^2 - 3N(k+1) = 8
    result = significance.friedman(tables({"A": [1, 2, 3, 4], "B": [2, 3, 4, 5],
                                           "C": [3, 4, 5, 6]}))
    assert result.mean_ranks.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0}
    assert result.statistic == pytest.approx(8.0)
    assert result.p == pytest.approx(math.exp(-4.0))  # chi2 with 2 dof
    # Demsar (2006), table 5(a): q_0.05 = 2.343 for k = 3; CD = q sqrt(k(k+1)/(6N))
    assert result.cd == pytest.approx(2.343 * math.sqrt(3 * 4 / 24), abs=1e-3)
    # Nemenyi: z = |R_i - R_j| / sqrt(k(k+1)/(6N)), p = P(studentized range > z sqrt 2)
    se = math.sqrt(3 * 4 / (6 * 4))
    for a, b, d in (("A", "B", 1.0), ("A", "C", 2.0)):
        p = scipy_stats.studentized_range.sf(d / se * math.sqrt(2), 3, np.inf)
        assert result.nemenyi.loc[a, b] == pytest.approx(p, rel=1e-3)
    rng = np.random.default_rng(3)
    data = rng.normal(size=(6, 4)) + np.arange(4)
    result = significance.friedman(tables({n: list(data[:, j]) for j, n in enumerate("WXYZ")},
                                          direction="max"))
    expected = scipy_stats.friedmanchisquare(*(-data).T)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p == pytest.approx(expected.pvalue)
    assert result.mean_ranks.index[0] == "Z"  # the largest values, "max" metric: best


def test_critical_difference_matches_demsar_table():
    # k = 4: q_0.05 = 2.569; over 8 tasks CD = 1.658 (autorank 1.3 reports the same)
    assert significance.critical_difference(4, 8) == pytest.approx(1.658, abs=1e-3)


def test_friedman_complete_blocks_and_too_few():
    t = tables({"A": [1, 2, 3], "B": [2, 3, 4], "C": [3, 4, 5], "D": [1, 1, 1]})
    t["task0"] = t["task0"][t["task0"]["optimizer"] != "C"]  # C not ranked on task0
    t["task1"] = t["task1"][t["task1"]["optimizer"] != "D"]
    t["task2"] = t["task2"][t["task2"]["optimizer"] != "D"]  # D on 1 of 3: left out
    result = significance.friedman(t)
    assert result.left_out == ["D"] and result.tasks == ["task1", "task2"]
    few = significance.friedman(tables({"A": [1, 2], "B": [2, 3]}))
    assert few.reason and math.isnan(few.p)


def test_write_files(tmp_path):
    matrix = {"A": [1, 2, 3, 4], "B": [2, 3, 4, 5], "C": [3, 4, 5, 6]}
    boards = tables(matrix)
    frame = pd.concat([runs({n: [v[t] + s for s in (0.0, 0.1, 0.2)] for n, v in matrix.items()},
                            task=f"task{t}") for t in range(4)])
    written = significance.write(tmp_path, boards, frame, {label: "fam" for label in boards})
    folder = tmp_path / significance.FOLDER
    for name in ("pairs.csv", "tasks.csv", "friedman.csv", "ranks.csv", "cd_all.png",
                 "cd_fam.png", "nemenyi_all.csv"):
        assert (folder / name).is_file(), name
    assert len(written["pairs"]) == 4 * 3
