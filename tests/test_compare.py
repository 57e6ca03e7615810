"""The regression gate `zgbench compare OLD NEW` on real runs: exit 0 when nothing got worse,
1 on a regression, 2 on bad input."""

import pandas as pd
import pytest

from zgbench import cli

RUN = ["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,rge", "--seeds", "3",
       "--no-leaderboard"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, evals in (("old", 1500), ("same", 1500), ("starved", 40)):
        assert cli.main(RUN + ["--evals", str(evals), "--out", str(root / name)]) == 0
    return root


def test_same_results_pass_and_starved_budget_regresses(folders, capsys, tmp_path):
    assert cli.main(["compare", str(folders / "old"), str(folders / "same")]) == 0
    assert "2 unchanged" in capsys.readouterr().out
    # rge with 40 evaluations instead of 1500 ends far from the optimum on every seed
    csv = tmp_path / "diff.csv"
    code = cli.main(["compare", str(folders / "old"), str(folders / "starved"), "-o", str(csv)])
    assert code == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "rge" in out
    diff = pd.read_csv(csv).set_index("optimizer")
    assert diff.loc["rge", "verdict"] == "regressed"
    assert diff.loc["rge", "new_median"] > diff.loc["rge", "old_hi"]
    # and back: the full budget is an improvement over the starved one
    assert cli.main(["compare", str(folders / "starved"), str(folders / "old")]) == 0
    assert "improved" in capsys.readouterr().out


def test_leaderboard_folder_as_reference(folders, tmp_path, capsys):
    board = tmp_path / "board"
    assert cli.main(["leaderboard", str(folders / "old"), "-o", str(board)]) == 0
    assert cli.main(["compare", str(board), str(folders / "same")]) == 0
    assert cli.main(["compare", str(board / "stats.csv"), str(folders / "starved")]) == 1


def _err(capsys):
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_bad_input_exits_2(folders, tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path / "nowhere"), str(folders / "old")]) == 2
    assert "neither a results folder" in _err(capsys)
    (tmp_path / "runs").mkdir()
    assert cli.main(["compare", str(tmp_path), str(folders / "old")]) == 2
    assert "no run records" in _err(capsys)
    bad = tmp_path / "bad.csv"
    bad.write_text("task,optimizer\nsphere,rge\n")
    assert cli.main(["compare", str(bad), str(folders / "old")]) == 2
    assert "lacks the columns" in _err(capsys)
    other = tmp_path / "other.csv"
    pd.DataFrame([{"task": "elsewhere", "optimizer": "rge", "metric": "gap", "direction": "min",
                   "median": 1.0, "median_lo": 0.5, "median_hi": 2.0, "status": "ok"}]).to_csv(
        other, index=False)
    assert cli.main(["compare", str(other), str(folders / "old")]) == 2
    assert "no task/optimizer pair in common" in _err(capsys)


def test_warns_when_budgets_or_versions_differ_and_hides_missing_pairs(folders, tmp_path,
                                                                       capsys):
    cli.main(["compare", str(folders / "old"), str(folders / "starved")])
    out = " ".join(capsys.readouterr().out.split())
    assert "spent 1500 evals before and 40 now: budgets differ" in out
    board = tmp_path / "board"
    assert cli.main(["leaderboard", str(folders / "old"), "-o", str(board)]) == 0
    machine = board / "machine.json"
    machine.write_text(machine.read_text().replace('"torch": "', '"torch": "0.0-'))
    stats = pd.read_csv(board / "stats.csv")
    extra = stats.iloc[[0]].assign(optimizer="gone-optimizer")
    pd.concat([stats, extra]).to_csv(board / "stats.csv", index=False)
    assert cli.main(["compare", str(board), str(folders / "same")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "torch differs" in out
    assert "gone-optimizer" not in out and "1 missing" in out  # counted, not listed
    assert cli.main(["compare", str(board), str(folders / "same"), "--all"]) == 0
    listed = "".join(capsys.readouterr().out.split()).replace("│", "")  # cells fold
    assert "missing" in listed.split("Changes")[1].split("unchanged,")[0]  # the row is listed


def test_compare_prints_its_table_by_default(folders, capsys):
    # issue 26.5: with nothing moved, compare printed only "2 unchanged"
    assert cli.main(["compare", str(folders / "old"), str(folders / "same")]) == 0
    out = capsys.readouterr().out
    assert "Changes (median" in out
    rows = [line for line in out.splitlines() if "sphere[dim=4]" in line]
    assert len(rows) == 2 and all("unchanged" in row for row in rows)
