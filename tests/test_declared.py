"""The suite declares its boards' baseline and caveats; the core names no optimizer."""

import json
import math

import pandas as pd
import pytest

from zgbench import plugins, tuning
from zgbench.cli import main
from zgbench.declared import Declarations
from zgbench.errors import UsageError
from zgbench.specs import resolve_optimizer, resolve_task
from zgbench.budget import Budget
from zgbench.suite import parse, tomllib

SUITE = """
[suite]
seeds = 2
optimizers = ["random-search", "rge", "cge"]
baseline = "random-search"

[suite.caveats]
cge = "9 evaluations per step: read claim deepzero-cge-vs-rge"

[[tasks]]
spec = "sphere[dim=4]"
budget = { evals = 200 }

[[tasks]]
spec = "step[dim=4]"
budget = { evals = 200 }
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("declared")
    (root / "s.toml").write_text(SUITE)
    assert main(["run", "--suite", str(root / "s.toml"), "--out", str(root / "r")]) == 0
    return root


def _overall(folder):
    return pd.read_csv(folder / "overall.csv", keep_default_na=False).set_index("optimizer")


def _score(folder, optimizer, task="sphere[dim=4]"):
    """The normalised score on the sphere (where the baseline is not the best known)."""
    long = pd.read_csv(folder / "stats.csv")
    return float(long[(long["task"] == task) & (long["optimizer"] == optimizer)]["norm_score"].iloc[0])


def test_run_keeps_the_suites_declarations_and_the_boards_use_them(results):
    data = json.loads((results / "r" / "suite.json").read_text())
    assert data == {"suite": "s", "baseline": "random-search",
                    "caveats": {"cge": "9 evaluations per step: read claim deepzero-cge-vs-rge"}}
    assert _score(results / "r" / "leaderboard", "random-search") == pytest.approx(1.0)
    overall = _overall(results / "r" / "leaderboard")
    assert overall.loc["cge", "caveat"].startswith("9 evaluations per step")
    assert overall.loc["rge", "caveat"] == ""
    families = pd.read_csv(results / "r" / "leaderboard" / "families.csv")
    assert "caveat" in families.columns


def test_baseline_flag_replaces_the_declared_one(results):
    out = results / "lb-cge"
    assert main(["leaderboard", str(results / "r"), "-o", str(out), "--baseline", "cge"]) == 0
    assert _score(out, "cge") == pytest.approx(1.0)
    assert json.loads((out / "suite.json").read_text())["baseline"] == "cge"


def test_a_baseline_that_did_not_run_exits_2_with_the_names(results, capsys):
    assert main(["leaderboard", str(results / "r"), "-o", str(results / "x"),
                 "--baseline", "cma-es"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "'cma-es' has no runs" in err and "cge, random-search, rge" in err


def test_without_a_declared_baseline_there_is_no_normalised_score(results, tmp_path):
    plain = tmp_path / "plain"
    assert main(["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,rge",
                 "--seeds", "2", "--evals", "100", "--out", str(plain)]) == 0
    assert not (plain / "suite.json").exists()
    overall = pd.read_csv(plain / "leaderboard" / "overall.csv")
    assert overall["norm_score"].isna().all() and "caveat" not in overall.columns


def test_suite_baseline_must_be_a_known_plain_name():
    registry = plugins.load()
    head = "[suite]\nbaseline = {!r}\n[[tasks]]\nspec = \"sphere\"\n"
    with pytest.raises(UsageError, match="names an optimizer, not a spec"):
        parse(tomllib.loads(head.format("random-search[sigma=0.1]")), registry, "s", "s.toml")
    with pytest.raises(UsageError, match="random-search"):  # unknown: the known ones listed
        parse(tomllib.loads(head.format("random-serch")), registry, "s", "s.toml")
    with pytest.raises(UsageError, match=r"\[suite.caveats\]"):
        parse(tomllib.loads("[suite]\ncaveats = 3\n[[tasks]]\nspec = \"sphere\"\n"), registry,
              "s", "s.toml")


def test_the_tuned_suite_keeps_baseline_and_caveats():
    registry = plugins.load()
    entries = [(resolve_task(registry, "sphere[dim=4]"), Budget(evals=100),
                [resolve_optimizer(registry, "cge[lr=0.05]")])]
    text = tuning.suite_toml(entries, seeds=3, device="cpu", description="t", header=["h"],
                             declarations=Declarations("s", "random-search", {"cge": "a \"b\""}))
    suite = parse(tomllib.loads(text), registry, "t", "t.toml")
    assert suite.baseline == "random-search" and suite.caveats == {"cge": 'a "b"'}
    assert not math.isnan(suite.seeds)
