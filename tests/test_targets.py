"""Fixed-target analysis (zgbench/targets.py) on synthetic records with known runtimes:
targets, runtimes, aRT with success counts and ECDFs computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zgbench import targets


def record(task, optimizer, seed, evals, values, status="ok", start=10.0, reference=0.0,
           direction="min", family="fam", grads=None):
    """A record whose trajectory visits ``values`` at ``evals`` (steps = evals / 10,
    seconds = evals / 100, gradients ``grads`` or none)."""
    grads = grads or [0] * len(evals)
    points = [{"evals": e, "grads": g, "steps": e // 10, "seconds": e / 100,
               "metrics": {"score": v}} for e, g, v in zip(evals, grads, values)]
    return {
        "run_id": f"{task}-{optimizer}-{seed}",
        "identity": {"task": task, "optimizer": optimizer, "repetition": seed},
        "task": {"name": task, "label": task, "canonical": task, "primary_metric": "score",
                 "metrics": {"score": direction}, "family": family},
        "optimizer": {"name": optimizer, "label": optimizer},
        "status": status, "trajectory": points, "final": points[-1] if status == "ok" else None,
        "start": {"score": start}, "reference": {"score": reference},
    }


def two_optimizers(task="t", family="fam"):
    """A: run 0 reaches 1.0 at 20 evaluations and 0.1 at 40; run 1 reaches 1.0 at 20 and
    never 0.1 (ends at 50); run 2 failed after 30 (reaches nothing, though its values would).
    B: one run that never moves (ends at 100)."""
    return [
        record(task, "A", 0, [0, 10, 20, 40], [10, 5, 0.5, 0.05], family=family),
        record(task, "A", 1, [0, 10, 20, 50], [10, 2, 0.8, 0.8], family=family),
        record(task, "A", 2, [0, 30], [10, 0.01], status="failed", family=family),
        record(task, "B", 0, [0, 100], [10, 10], family=family),
    ]


def test_targets_are_log_spaced_between_start_and_reference():
    values = targets.target_values(10.0, 0.0, "min")
    assert len(values) == 51
    expected = 10.0 * 10.0 ** (-8.0 * np.arange(1, 52) / 51)
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert values[-1] == pytest.approx(1e-7)  # 1e-8 of the gap, above the reference
    up = targets.target_values(0.1, 0.9, "max", n=2, decades=1.0)
    np.testing.assert_allclose(up, [0.9 - 0.8 * 10 ** -0.5, 0.9 - 0.08], rtol=1e-12)
    assert targets.target_values(1.0, 2.0, "min") is None  # reference worse than start
    assert targets.target_values(1.0, math.nan, "min") is None


def test_runtimes_and_art_by_hand():
    rt, why = targets.task_runtimes(two_optimizers(), n=2, decades=2.0)
    assert why == "ok"
    np.testing.assert_allclose(rt.targets, [1.0, 0.1])
    a = rt.runs["optimizer"] == "A"
    np.testing.assert_array_equal(rt.hits["evals"][a.to_numpy()],
                                  [[20, 40], [20, math.inf], [math.inf, math.inf]])
    np.testing.assert_array_equal(rt.hits["steps"][a.to_numpy()][0], [2, 4])
    np.testing.assert_array_equal(rt.spent["evals"][a.to_numpy()], [40, 50, 30])
    table = targets.art_table(rt).set_index(["optimizer", "target_index"])
    # aRT = (20 + 20 + 30) / 2 and (40 + 50 + 30) / 1; B never succeeds
    assert table.loc[("A", 1), "art_evals"] == pytest.approx(35.0)
    assert table.loc[("A", 2), "art_evals"] == pytest.approx(120.0)
    assert table.loc[("A", 1), "art_seconds"] == pytest.approx(0.35)
    assert table.loc[("A", 1), "art_steps"] == pytest.approx(3.5)
    assert table.loc[("A", 1), "successes"] == 2 and table.loc[("A", 2), "successes"] == 1
    assert table.loc[("A", 1), "runs"] == 3
    assert table.loc[("B", 1), "art_evals"] == math.inf and table.loc[("B", 1), "successes"] == 0


def test_max_metric_reaches_targets_upwards():
    runs = [record("acc", "A", 0, [0, 10, 20], [0.1, 0.85, 0.95], start=0.1, reference=0.9,
                   direction="max")]
    rt, _ = targets.task_runtimes(runs, n=2, decades=1.0)  # targets 0.647, 0.82
    np.testing.assert_array_equal(rt.hits["evals"][0], [10, 10])


def test_no_targets_say_why():
    flat = [record("t", "A", 0, [0, 10], [1, 1], start=1.0, reference=2.0)]
    assert targets.task_runtimes(flat) == (None, "reference not better than start")
    none = [{**flat[0], "reference": None}]
    assert targets.task_runtimes(none) == (None, "no reference")


def test_ecdf_per_task_and_family_by_hand():
    second = [record("u", "A", 0, [0, 10], [10, 0.0])]  # both targets at 10 evaluations
    computed = targets.compute(two_optimizers() + second, n=2, decades=2.0)
    ecdf = computed["ecdf"]
    task = ecdf[(ecdf["scope"] == "t") & (ecdf["optimizer"] == "A") & (ecdf["axis"] == "evals")]
    # 3 runs x 2 targets: 2 pairs by 20 evaluations, 3 by 40
    np.testing.assert_allclose(task[["x", "fraction"]].to_numpy(), [[20, 2 / 6], [40, 3 / 6]])
    family = ecdf[(ecdf["scope_kind"] == "family") & (ecdf["optimizer"] == "A")
                  & (ecdf["axis"] == "evals")]
    # tasks weigh the same: u's 2 pairs at 10 give 1/2, then t's pairs add 1/12 each
    np.testing.assert_allclose(family[["x", "fraction"]].to_numpy(),
                               [[10, 0.5], [20, 0.5 + 2 / 12], [40, 0.5 + 3 / 12]])
    # A spends no gradients: no curve on that axis
    assert ecdf[(ecdf["optimizer"] == "A") & (ecdf["axis"] == "grads")].empty


def test_write_files_and_sections(tmp_path):
    from zgbench import analysis

    computed = targets.write(tmp_path, two_optimizers() + two_optimizers("u"))
    folder = tmp_path / targets.FOLDER
    for name in ("tasks.csv", "art.csv", "runtimes.csv", "ecdf.csv", "t.png", "u.png",
                 "family_fam.png"):
        assert (folder / name).is_file(), name
    assert len(computed["runtimes_table"]) == 2 * 4 * targets.N_TARGETS
    (section,) = analysis.sections(tmp_path)
    assert section.csvs[0] == "targets/tasks.csv" and "targets/family_fam.png" in section.pngs


def test_leaderboard_writes_the_analysis_folders(tmp_path):
    """``zgbench leaderboard`` writes targets/ (and significance/ with the analysis extra)
    beside its boards, from the runs the boards count."""
    from zgbench import analysis, leaderboard
    from zgbench.store import ResultStore

    store = ResultStore(tmp_path / "results")
    for r in two_optimizers() + two_optimizers("u"):
        store.put({**r, "schema": 2, "environment": {"hostname": "h"}})
    leaderboard.write(tmp_path / "results", tmp_path / "lb")
    titles = [s.title for s in analysis.sections(tmp_path / "lb")]
    assert titles[0] == "Fixed-target runtimes"
    assert (tmp_path / "lb" / "targets" / "art.csv").is_file()
    try:
        import scikit_posthocs  # noqa: F401
    except ImportError:
        return
    assert titles[1] == "Significance"
    assert (tmp_path / "lb" / "significance" / "pairs.csv").is_file()


def test_an_unchanged_leaderboard_rerun_skips_the_analyses_and_a_new_run_redoes_them(tmp_path):
    """The analyses' files carry the key of their inputs: a rerun over the same records
    writes nothing again; one more record rewrites them."""
    import pandas as pd

    from zgbench import leaderboard
    from zgbench.store import ResultStore

    store = ResultStore(tmp_path / "results")
    for r in two_optimizers():
        store.put({**r, "schema": 2, "environment": {"hostname": "h"}})
    leaderboard.write(tmp_path / "results", tmp_path / "lb")
    art = tmp_path / "lb" / "targets" / "art.csv"
    art.write_text("sentinel")  # a rerun that wrote the analyses again would replace it
    leaderboard.write(tmp_path / "results", tmp_path / "lb")
    assert art.read_text() == "sentinel"
    for r in two_optimizers("u"):
        store.put({**r, "schema": 2, "environment": {"hostname": "h"}})
    leaderboard.write(tmp_path / "results", tmp_path / "lb")
    assert art.read_text() != "sentinel" and "u" in set(pd.read_csv(art)["task"])
