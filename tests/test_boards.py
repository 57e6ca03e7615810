"""Overall boards by optimizer (issue 15.1): per-task specs aggregate into one row, the
coverage rule splits main and partial tables, families get their own boards, and the two
tracks sit side by side."""

import math
import re

import pandas as pd
import pytest

from zgbench import boards, leaderboard
from zgbench.store import ResultStore


def _record(task, name, seed, value, spec=None, family="synthetic", status="ok"):
    spec = spec or name
    point = {"evals": 100, "grads": 0, "steps": 10, "seconds": 1.0, "metrics": {"score": value}}
    start = dict(point, evals=0, metrics={"score": 10.0})
    return {
        # a run id is a file name: the store refuses brackets and '=' (see store._RUN_ID)
        "schema": 1, "run_id": re.sub(r"[^A-Za-z0-9._-]", "_", f"{task}-{spec}-{seed}"),
        "identity": {"task": task, "optimizer": spec, "seed": seed,
                     "budget": {"evals": 100}},
        "task": {"name": task, "label": task, "canonical": task, "primary_metric": "score",
                 "metrics": {"score": "min"}, "family": family},
        "optimizer": {"name": name, "label": spec, "canonical": spec},
        "status": status, "error": None if status == "ok" else "boom",
        "environment": {"hostname": "h"},
        "trajectory": [start, point] if status == "ok" else [],
        "final": point if status == "ok" else None,
    }


def _write(tmp_path, records):
    store = ResultStore(tmp_path / "results")
    for r in records:
        store.put(r)
    return leaderboard.write(tmp_path / "results", tmp_path / "lb")


def _suite(tasks, per_task):
    """``per_task``: task -> [(name, spec, value)], 3 seeds each (value + seed / 100)."""
    return [_record(task, name, s, value + s / 100, spec, family)
            for task, family in tasks for name, spec, value in per_task[task] for s in range(3)]


def test_a_per_task_spec_counts_for_its_optimizer(tmp_path):
    per_task = {
        "t1": [("cma-es", "cma-es[sigma0=0.02]", 1.0), ("rs", "rs", 2.0)],
        "t2": [("cma-es", "cma-es", 3.0), ("rs", "rs[sigma=0.05]", 2.0)],
    }
    written = _write(tmp_path, _suite([("t1", "synthetic"), ("t2", "synthetic")], per_task))
    overall = written["overall"].set_index("optimizer")
    assert sorted(overall.index) == ["cma-es", "rs"]  # one row per name, not per spec
    assert overall.loc["cma-es", "mean_rank"] == 1.5 and overall.loc["cma-es", "tasks_ranked"] == 2
    assert overall.loc["cma-es", "coverage"] == "2/2"
    t1 = pd.read_csv(tmp_path / "lb" / "t1.csv").set_index("optimizer")
    assert t1.loc["cma-es", "spec"] == "cma-es[sigma0=0.02]"  # the spec used is shown
    assert t1.loc["cma-es", "rank"] == 1
    # the statistics aggregate the same way: one interval per optimizer name
    assert overall.loc["cma-es", "rank_lo"] <= 1.5 <= overall.loc["cma-es", "rank_hi"]


def test_several_specs_of_one_optimizer_count_the_worst(tmp_path):
    per_task = {"t": [("cma-es", "cma-es[sigma0=0.02]", 1.0), ("cma-es", "cma-es", 3.0),
                      ("rs", "rs", 2.0)]}
    written = _write(tmp_path, _suite([("t", "synthetic")], per_task))
    table = written["tasks"]["t"]
    counted = table[table["counted"]].set_index("optimizer")
    assert list(counted.index) == ["rs", "cma-es"]
    assert counted.loc["cma-es", "spec"] == "cma-es" and counted.loc["cma-es", "rank"] == 2
    variant = table[~table["counted"]].iloc[0]
    assert variant["spec"] == "cma-es[sigma0=0.02]" and math.isnan(variant["rank"])
    assert variant["median"] == pytest.approx(1.01)  # still shown in the task's table
    overall = written["overall"].set_index("optimizer")
    assert overall.loc["cma-es", "mean_rank"] == 2 and overall.loc["rs", "wins"] == 1


def test_coverage_rule_splits_main_and_partial(tmp_path):
    tasks = [(f"t{i}", "synthetic") for i in range(4)]
    per_task = {f"t{i}": [("a", "a", 2.0), ("b", "b", 3.0)] for i in range(4)}
    per_task["t0"].append(("lucky", "lucky", 1.0))  # first on its only task
    per_task["t1"].append(("half", "half", 2.5))
    per_task["t2"].append(("half", "half", 2.5))
    written = _write(tmp_path, _suite(tasks, per_task))
    overall = written["overall"]
    assert boards.min_tasks(4) == 2 and boards.min_tasks(5) == 3 and boards.min_tasks(1) == 1
    main = overall[overall["board"] == "main"]
    partial = overall[overall["board"] == "partial"]
    assert list(main["optimizer"]) == ["a", "half", "b"]  # mean ranks 1.25, 2, 2.75
    assert list(main["position"]) == [1, 2, 3]
    assert list(partial["optimizer"]) == ["lucky"] and partial["position"].isna().all()
    assert partial["coverage"].iloc[0] == "1/4"
    # the main table comes first in overall.csv, the partial one after it
    csv = pd.read_csv(tmp_path / "lb" / "overall.csv")
    assert list(csv["board"]) == ["main"] * 3 + ["partial"]


def test_family_sub_boards(tmp_path):
    tasks = [("s1", "synthetic"), ("s2", "synthetic"), ("r1", "radiosity")]
    per_task = {"s1": [("a", "a", 1.0), ("b", "b", 2.0)], "s2": [("a", "a", 1.0), ("b", "b", 2.0)],
                "r1": [("semi", "semi[lr=0.01]", 1.0), ("full", "full", 2.0)]}
    written = _write(tmp_path, _suite(tasks, per_task))
    fam = pd.read_csv(tmp_path / "lb" / "families.csv")
    assert set(fam["family"]) == {"synthetic", "radiosity"}
    rad = fam[fam["family"] == "radiosity"].set_index("optimizer")
    # on the overall board the radiosity methods cover 1/3 tasks: partial; on their own: main
    assert (rad["board"] == "main").all() and rad.loc["semi", "position"] == 1
    assert rad.loc["semi", "coverage"] == "1/1" and rad["tasks"].iloc[0] == "r1"
    overall = written["overall"].set_index("optimizer")
    assert overall.loc["semi", "board"] == "partial" and overall.loc["a", "board"] == "main"


def test_family_of_old_records_comes_from_the_installed_task():
    record = _record("sphere", "a", 0, 1.0)
    del record["task"]["family"]
    assert leaderboard.family(record) == "synthetic"
    record["task"]["name"] = "no-such-task"
    assert leaderboard.family(record) == boards.OTHER


def test_every_builtin_task_declares_its_family():
    from zgbench import plugins

    registry = plugins.load()
    builtin = {name for name, _ in plugins.builtin_modules()}
    families = {name: entry.cls.family for name, entry in registry.tasks.items()
                if entry.plugin in builtin}
    assert families and boards.OTHER not in families.values(), families
    assert set(families.values()) <= {"synthetic", "graphics", "learning", "radiosity", "pde"}


def test_tracks_side_by_side_and_kendall_tau():
    default = pd.DataFrame({"optimizer": ["a", "b", "c"], "position": [1, 2, 3],
                            "mean_rank": [1.0, 2.0, 3.0], "coverage": ["2/2"] * 3})
    tuned = pd.DataFrame({"optimizer": ["b", "a", "c"], "position": [1, 2, 3],
                          "mean_rank": [1.0, 2.0, 3.0], "coverage": ["2/2"] * 3})
    table = boards.tracks_table({"default": default, "tuned": tuned}).set_index("optimizer")
    assert table.loc["b", "moved"] == 1 and table.loc["a", "moved"] == -1
    assert table.loc["c", "moved"] == 0
    assert boards.kendall_tau(table["default_position"], table["tuned_position"]) == \
        pytest.approx(1 / 3)
    assert boards.kendall_tau(default["position"], default["position"]) == 1.0


def test_leaderboard_command_writes_both_tracks_and_the_readme_table(tmp_path, capsys):
    from zgbench.cli import main

    for folder, specs in (("default", ("cma-es", "rs")), ("tuned", ("cma-es[sigma0=0.02]", "rs"))):
        store = ResultStore(tmp_path / folder)
        for task in ("t1", "t2"):
            for spec, value in zip(specs, (2.0, 1.0) if folder == "default" else (1.0, 2.0)):
                for s in range(2):
                    store.put(_record(task, spec.split("[")[0], s, value, spec))
    out = tmp_path / "lb"
    assert main(["leaderboard", str(tmp_path / "default"), "--tuned", str(tmp_path / "tuned"),
                 "-o", str(out), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "| optimizer | default_position |" in text
    assert "| cma-es | 2 | 2 | - | 1 | 1 | - | 2/2 | 1 |" in text
    tracks = pd.read_csv(out / "tracks.csv").set_index("optimizer")
    assert tracks.loc["cma-es", "moved"] == 1 and tracks.loc["rs", "moved"] == -1
    assert pd.read_csv(out / "tuned" / "t1.csv").set_index("optimizer").loc[
        "cma-es", "spec"] == "cma-es[sigma0=0.02]"


def _write_with_baseline(tmp_path, records, baseline):
    store = ResultStore(tmp_path / "results")
    for r in records:
        store.put(r)
    return leaderboard.write(tmp_path / "results", tmp_path / "lb", baseline=baseline)


def test_tied_optimizers_share_a_position_whatever_their_names(tmp_path):
    # issue 26.5: positions broke ties alphabetically (alpha 1, zeta 2 on identical results)
    per_task = {"t": [("zeta", "zeta", 1.0), ("alpha", "alpha", 1.0), ("mid", "mid", 2.0)]}
    overall = _write(tmp_path, _suite([("t", "synthetic")], per_task))["overall"]
    position = dict(zip(overall["optimizer"], overall["position"]))
    assert position == {"alpha": 1, "zeta": 1, "mid": 3}


def test_equal_mean_rank_is_decided_by_the_normalised_score(tmp_path):
    # both rank 1 on one task and 2 on the other; "bee" wins t2 by far, "ant" t1 by a hair
    per_task = {"t1": [("ant", "ant", 1.0), ("bee", "bee", 1.1), ("rs", "rs", 5.0)],
                "t2": [("ant", "ant", 4.0), ("bee", "bee", 1.0), ("rs", "rs", 5.0)]}
    written = _write_with_baseline(
        tmp_path, _suite([("t1", "synthetic"), ("t2", "synthetic")], per_task), "rs")
    overall = written["overall"].set_index("optimizer")
    assert overall.loc["ant", "mean_rank"] == overall.loc["bee", "mean_rank"] == 1.5
    assert overall.loc["bee", "norm_score"] < overall.loc["ant", "norm_score"]
    assert overall.loc["bee", "position"] == 1 and overall.loc["ant", "position"] == 2


def test_normalised_scores_stay_meaningful_when_the_baseline_finds_the_best(tmp_path):
    # issue 26.5: the baseline's median equal to the best known value made every tie score 0
    # and anything worse the clip (5); the start (10 here) now scales the score there
    values = {"rs": 1.0, "cma-es": 1.0, "worse": 3.0}
    records = [_record("step", name, s, value) for name, value in values.items()
               for s in range(3)]
    overall = _write_with_baseline(tmp_path, records, "rs")["overall"].set_index("optimizer")
    assert overall.loc["rs", "norm_score"] == 0 and overall.loc["cma-es", "norm_score"] == 0
    assert overall.loc["worse", "norm_score"] == pytest.approx((3.0 - 1.0) / (10.0 - 1.0))
    assert overall.loc["rs", "position"] == overall.loc["cma-es", "position"] == 1
