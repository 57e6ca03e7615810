"""The command line end to end, on small budgets; bad input exits with status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from zgbench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def zgbench(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "zgbench", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_list_shows_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("sphere", "step", "cliff", "random-search", "cge", "rge", "fd", "adam"):
        assert name in out
    assert "synthetic" in out and "dim=8" in out


def test_list_one_component_shows_each_parameter_with_its_help(capsys):
    assert main(["list", "cma-es"]) == 0
    out = capsys.readouterr().out
    assert "optimizer cma-es" in out and "sigma0" in out
    assert "initial step size" in out  # the parameter's help text
    assert "auto|true|false" in out  # its choices
    assert main(["list", "cma-ess"]) == 2
    err = capsys.readouterr().err
    assert "unknown task or optimizer 'cma-ess'" in err and "Did you mean 'cma-es'" in err


def test_run_then_leaderboard(tmp_path, capsys):
    args = ["run", "--tasks", "sphere[dim=4],step[dim=3]", "--optimizers",
            "random-search,rge[q=4],adam", "--seeds", "2", "--evals", "200", "--grads", "20",
            "--out", str(tmp_path / "res")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "12 runs: 10 done, 0 skipped (already finished), 0 failed, 2 n/a" in err
    assert main(args) == 0
    assert "12 runs: 0 done, 12 skipped (already finished), 0 failed" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "res"), "-o", str(tmp_path / "lb")]) == 0
    table = pd.read_csv(tmp_path / "lb" / "sphere_dim=4.csv")
    assert set(table["spec"]) == {"random-search", "rge[q=4]", "adam"}
    assert set(table["optimizer"]) == {"random-search", "rge", "adam"}
    assert (tmp_path / "lb" / "step_dim=3.png").stat().st_size > 1000
    assert (tmp_path / "res" / "leaderboard" / "overall.csv").exists()


def test_suite_file(tmp_path, capsys):
    suite = tmp_path / "mini.toml"
    suite.write_text(
        '[suite]\nseeds = 1\noptimizers = ["random-search"]\n'
        '[[tasks]]\nspec = "sphere[dim=2]"\nbudget = { evals = 50 }\n'
        '[[tasks]]\nname = "rastrigin"\nparams = { dim = 2 }\nbudget = { evals = 60 }\n'
        'optimizers = ["rge", "cge"]\n')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "r")]) == 0
    assert "3 runs: 3 done" in capsys.readouterr().err
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").glob("*.json")]
    assert sorted(r["final"]["evals"] for r in records) == [50, 60, 60]


@pytest.mark.parametrize("args, message", [
    (["run", "--tasks", "sphre", "--optimizers", "cge"], "Did you mean 'sphere'"),
    (["run", "--tasks", "sphere[dim=x]", "--optimizers", "cge"], "bad value 'x'"),
    (["run", "--tasks", "sphere", "--optimizers", "cgee"], "unknown optimizer 'cgee'"),
    (["run", "--tasks", "sphere"], "give both --tasks and --optimizers"),
    (["run", "--tasks", "sphere", "--optimizers", "cge", "--device", "cuda"], "CUDA is not available"),
    (["run", "--suite", "nonexistent"], "unknown suite 'nonexistent'"),
    (["run", "--tasks", "sphere", "--optimizers", "cge", "--evals", "0"], "must be positive"),
    (["list", "-p", "synthetic"], "only -p no:NAME"),
    (["-p", "synthetic", "list"], "only -p no:NAME"),
    (["leaderboard", "/nonexistent-results"], "no run records"),
])
def test_bad_input_exits_2(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_disable_plugin(capsys):
    assert main(["list", "tasks", "-p", "no:synthetic"]) == 0
    out = capsys.readouterr().out
    assert "│ sphere " not in out and "synthetic 0.1.0" not in out
    assert main(["list", "tasks"]) == 0
    assert "│ sphere " in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["-p", "no:synthetic", "list", "tasks"],  # before the subcommand, as pytest allows
    ["-p", "no:synthetic", "list", "tasks", "-p", "no:toys"],  # both places, both apply
])
def test_disable_plugin_before_the_command(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "│ sphere " not in out and "synthetic 0.1.0" not in out
    if "no:toys" in argv:
        assert "spline-toy" not in out


def test_missing_extra_message(monkeypatch, tmp_path, capsys):
    from zgbench.optimizers.baselines import RandomSearch

    monkeypatch.setattr(RandomSearch, "needs", ("a_module_that_is_not_installed",))
    monkeypatch.setattr(RandomSearch, "extra", "dfo")
    code = main(["run", "--tasks", "sphere", "--optimizers", "random-search", "--out",
                 str(tmp_path)])
    assert code == 2
    assert ("optimizer 'random-search' needs the extra dfo" in capsys.readouterr().err)


def test_subprocess_exit_status_and_help():
    result = zgbench("run", "--tasks", "nope", "--optimizers", "cge")
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr
    assert "cross product" in zgbench("run", "--help").stdout


def test_example_plugin_installed_from_plugins(tmp_path):
    """pip-install plugins/zgbench-example into a folder; its entry point makes it appear."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(ROOT / "plugins" / "zgbench-example")], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    listing = zgbench("list", env=env)
    assert listing.returncode == 0
    assert "example-regression" in listing.stdout and "spsa" in listing.stdout
    out = tmp_path / "res"
    run = zgbench("run", "--tasks", "example-regression,sphere[dim=4]", "--optimizers",
                  "spsa,random-search", "--seeds", "1", "--evals", "300", "--out", str(out),
                  env=env)
    assert run.returncode == 0, run.stderr
    assert "4 runs: 4 done" in run.stderr
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["optimizer"]["plugin"] for r in records} == {"example", "baselines"}
    blocked = zgbench("list", "-p", "no:example", env=env)
    assert "spsa" not in blocked.stdout


def test_list_shows_the_extra_in_the_install_line(monkeypatch, capsys):
    from zgbench.optimizers.baselines import RandomSearch

    monkeypatch.setattr(RandomSearch, "needs", ("a_module_that_is_not_installed",))
    monkeypatch.setattr(RandomSearch, "extra", "dfo")
    assert main(["list", "optimizers"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the table folds long cells
    assert "zgbench[dfo]" in out.replace("│", "").replace(" ", "")


def test_suite_skips_components_whose_extra_is_missing(monkeypatch, tmp_path, capsys):
    from zgbench.optimizers.baselines import RandomSearch
    from zgbench.tasks.synthetic import Step

    suite = tmp_path / "mini.toml"
    suite.write_text('[suite]\nseeds = 1\noptimizers = ["random-search", "fd"]\n'
                     '[[tasks]]\nspec = "sphere[dim=2]"\nbudget = { evals = 20 }\n'
                     '[[tasks]]\nspec = "step[dim=2]"\nbudget = { evals = 20 }\n')
    monkeypatch.setattr(Step, "needs", ("a_module_that_is_not_installed",))
    monkeypatch.setattr(Step, "extra", "pde")
    monkeypatch.setattr(RandomSearch, "needs", ("another_missing_module",))
    monkeypatch.setattr(RandomSearch, "extra", "dfo")
    code = main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"),
                 "--no-leaderboard"])
    err = capsys.readouterr().err
    assert code == 0
    assert "task 'step' needs the extra pde" in err and "pip install 'zgbench[pde]'" in err
    assert "optimizer 'random-search' needs the extra dfo" in err
    assert "1 runs: 1 done" in err  # sphere × fd only


def test_run_prints_the_overall_board_and_each_tasks_winner(tmp_path, capsys):
    assert main(["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,cma-es",
                 "--seeds", "1", "--evals", "200", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "Overall (mean rank" in err and "Winners" in err
    winners = err[err.index("Winners"):]
    assert "sphere[dim=4]" in winners and "gap (min)" in winners


def test_budget_bar_counts_in_the_runs_own_unit():
    from zgbench.budget import Budget
    from zgbench.progress import budget_unit

    assert budget_unit(Budget(evals=2000)) == ("evals", 2000)
    assert budget_unit(Budget(steps=30)) == ("steps", 30)
    assert budget_unit(Budget(seconds=2.5)) == ("seconds", 3)
    assert budget_unit(Budget(evals=2000, grads=200))[1] == 1000  # several limits: per mille


# ------------------------------------------------------------ issue 26.5: rough edges
def test_run_whose_output_is_not_a_terminal_prints_plain_progress_lines(tmp_path, capsys):
    assert main(["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,cma-es",
                 "--seeds", "1", "--evals", "200", "--out", str(tmp_path / "r"),
                 "--report", str(tmp_path / "html")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "runs: 2 planned"
    assert any(line.startswith("[2/2] ok sphere[dim=4] × ") and "ETA" in line for line in lines)
    assert any(line.startswith("runs: 2/2 done in ") for line in lines)
    assert lines[-1] == f"report: {tmp_path / 'html' / 'index.html'}"  # the summary's end


def _summary_results(tmp_path, caveat):
    """A results folder where random-search and cma-es tie on `step`, `lucky` ran on one task
    of four (partial coverage), and the suite declares a long caveat for cma-es."""
    from zgbench import declared, leaderboard
    from zgbench.store import ResultStore

    def record(task, name, seed, value):
        point = {"evals": 100, "grads": 0, "steps": 10, "seconds": 1.0, "metrics": {"gap": value}}
        return {"schema": 1, "run_id": f"{task}-{name}-{seed}",
                "identity": {"task": task, "optimizer": name, "seed": seed,
                             "budget": {"evals": 100}},
                "task": {"name": task, "label": task, "canonical": task, "primary_metric": "gap",
                         "metrics": {"gap": "min"}, "family": "synthetic"},
                "optimizer": {"name": name, "label": name, "canonical": name},
                "status": "ok", "error": None, "environment": {"hostname": "h"},
                "trajectory": [dict(point, evals=0, metrics={"gap": 9.0}), point],
                "final": point}

    values = {"step": {"random-search": 0.0, "cma-es": 0.0, "cge": 1.0},
              **{t: {"random-search": 2.0, "cma-es": 1.0, "cge": 3.0} for t in ("a", "b", "c")}}
    values["a"]["lucky"] = 0.5
    store = ResultStore(tmp_path / "results")
    for task, per in values.items():
        for name, value in per.items():
            for seed in range(3):
                store.put(record(task, name, seed, value))
    declared.save(tmp_path / "results", declared.Declarations(
        baseline="random-search", caveats={"cma-es": caveat}))
    return leaderboard.write(tmp_path / "results", tmp_path / "lb")


def test_end_of_run_summary_fits_100_columns_names_ties_and_partial_coverage(tmp_path):
    import io

    from rich.console import Console

    from zgbench.commands import run

    caveat = ("run here at 1/20 of the budget its claim was measured at, far below the "
              "setting its paper reports; read its position with that in mind")
    written = _summary_results(tmp_path, caveat)
    stream = io.StringIO()
    console = run.summary_console(Console(file=stream))
    console.print(run._results_table(written))
    console.print(run._overall_table(written["overall"]))
    run._say_caveats(console, written["overall"])
    text = stream.getvalue()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    step = [line for line in lines if line.startswith("│ step")]
    assert len(step) == 1 and "cma-es (1)" in step[0] and "random-search (" in step[0]
    board = [line for line in lines if line.startswith("│ 1   │ cma-es")]  # one line a row
    assert len(board) == 1 and board[0].rstrip("│ ").endswith("[1]")
    assert f"[1] {caveat}" in " ".join(text.split())
    assert "partial coverage" in text and "lucky (1/4)" in text


def test_list_one_component_shows_each_parameters_bounds(capsys):
    assert main(["list", "random-search"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("│")}
    assert "integer >= 1" in rows["batch"]  # a declared bound, with its type
    assert "step size > 0" in rows["sigma"]
    assert main(["list", "sphere"]) == 0
    out = capsys.readouterr().out
    assert "allowed values" in out and "any integer" in out  # none declared, and said so


def test_suite_and_tasks_keep_the_suites_budget_for_a_task_it_names(tmp_path, capsys):
    suite = tmp_path / "mini.toml"
    suite.write_text(
        '[suite]\nseeds = 1\noptimizers = ["random-search"]\n'
        '[[tasks]]\nspec = "sphere[dim=2]"\nbudget = { evals = 50 }\n'
        '[[tasks]]\nname = "rastrigin"\nparams = { dim = 2 }\nbudget = { evals = 60 }\n')
    out = tmp_path / "r"
    assert main(["run", "--suite", str(suite), "--tasks", "rastrigin,sphere[dim=2],step[dim=2]",
                 "--out", str(out), "--no-leaderboard"]) == 0
    records = {r["task"]["label"]: r for r in
               (json.loads(p.read_text()) for p in (out / "runs").glob("*.json"))}
    # `rastrigin` is the suite's only rastrigin: its instance and budget; sphere: the same
    # instance; step is not in the suite: its own default budget (and the suite's optimizers)
    assert records["rastrigin[dim=2]"]["final"]["evals"] == 60
    assert records["sphere[dim=2]"]["final"]["evals"] == 50
    from zgbench import plugins
    default = plugins.load().task("step").cls.default_budget
    assert records["step[dim=2]"]["identity"]["budget"]["evals"] == default.evals
    assert {r["optimizer"]["name"] for r in records.values()} == {"random-search"}


def test_leaderboard_report_and_show_default_to_results_and_show_advises_no_rerun_of_tasks_that_draw_nothing(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--tasks", "sphere[dim=2],procedural[res=16]", "--optimizers",
                 "random-search", "--seeds", "1", "--evals", "20", "--no-leaderboard"]) == 0
    assert main(["leaderboard"]) == 0 and (tmp_path / "results/leaderboard/overall.csv").is_file()
    assert main(["report"]) == 0 and (tmp_path / "results/report/index.html").is_file()
    capsys.readouterr()
    assert main(["show"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "results/pictures").is_dir()
    # sphere draws no picture: one plain line, and no advice to re-run it (201 such lines)
    assert "no pictures for tasks that draw none: sphere (1 runs)" in err
    assert "re-run" not in err
