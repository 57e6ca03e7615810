"""The tuning protocol (issue 15.2): exactly N trials per (task, optimizer), on tuning seeds
disjoint from the evaluation seeds, deterministic for a seed, into a suite file; bad ranges
and non-tunable parameters exit 2 with the fix."""

import sys

import pandas as pd
import pytest

from zgbench import plugins, suite, tuning
from zgbench.cli import main
from zgbench.params import Param
from zgbench.store import ResultStore

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest.importorskip("optuna")

TUNE = ["tune", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,cma-es",
        "--trials", "3", "--tune-seeds", "2", "--evals", "60", "--seeds", "2"]


def _tune(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(TUNE + ["--out", str(out), *extra]) == 0
    return out


def test_exactly_n_trials_per_pair_on_disjoint_seeds(tmp_path):
    out = _tune(tmp_path, "tune")
    trials = pd.read_csv(out / "tune.csv")
    assert trials.groupby("optimizer").size().to_dict() == {"cma-es": 3, "random-search": 3}
    assert trials.groupby("optimizer")["chosen"].any().all()
    assert list(trials[trials.optimizer == "cma-es"]["spec"])[0] == "cma-es"  # trial 0: defaults
    records = list(ResultStore(out))
    # every distinct trial spec ran --tune-seeds runs, all on tuning repetitions
    assert len(records) == 2 * trials.groupby("optimizer")["spec"].nunique().sum()
    assert all(r["identity"]["repetition"] >= tuning.TUNE_OFFSET for r in records)
    # the tuned suite evaluates on seeds 0..S-1 into its own folder: nothing shared
    data = tomllib.loads((out / "tuned.toml").read_text())
    assert data["suite"]["seeds"] == 2 and data["tasks"][0]["budget"] == {"evals": 60, "grads": 200}
    chosen = set(trials[trials.chosen]["spec"])
    assert set(data["tasks"][0]["optimizers"]) == chosen
    registry = plugins.load()
    loaded = suite.load(str(out / "tuned.toml"), registry)
    assert {o.label for o in loaded.tasks[0].optimizers} == chosen
    assert main(["run", "--suite", str(out / "tuned.toml"), "--out", str(tmp_path / "eval"),
                 "--no-leaderboard"]) == 0
    evaluation = list(ResultStore(tmp_path / "eval"))
    assert sorted({r["identity"]["repetition"] for r in evaluation}) == [0, 1]
    tuning_seeds = {s for r in records for s in r["seeds"].values()}
    assert not tuning_seeds & {s for r in evaluation for s in r["seeds"].values()}
    assert not {r["run_id"] for r in records} & {r["run_id"] for r in evaluation}


def test_tuning_is_deterministic_for_a_seed_and_resumes(tmp_path):
    a, b = _tune(tmp_path, "a"), _tune(tmp_path, "b")
    frame_a, frame_b = pd.read_csv(a / "tune.csv"), pd.read_csv(b / "tune.csv")
    pd.testing.assert_frame_equal(frame_a, frame_b)
    body = lambda p: [l for l in (p / "tuned.toml").read_text().splitlines() if l[:1] != "#"]
    assert body(a) == body(b)
    runs = len(list(ResultStore(a)))
    _tune(tmp_path, "a")  # the same command again: every trial resumes, nothing new runs
    assert len(list(ResultStore(a))) == runs
    pd.testing.assert_frame_equal(pd.read_csv(a / "tune.csv"), frame_a)
    other = _tune(tmp_path, "c", "--seed", "1")
    assert list(pd.read_csv(other / "tune.csv")["spec"]) != list(frame_a["spec"])


@pytest.mark.parametrize("bad, fix", [
    ("cma-es.restarts=1:5", "is not declared tunable of optimizer 'cma-es'; tunable: sigma0"),
    ("cma-es.nope=1:5", "is not a parameter"),
    ("cma-es.sigma0=1:0.1", "give LOW < HIGH"),
    ("cma-es.sigma0=0:1", "use a number > 0"),  # a step size is positive
    ("cma-es.sigma0=0:1:linear", "use a number > 0"),
    ("cma-es.sigma0=abc:1", "expected a step size"),
    ("cma-es.sigma0=abs:0.1:abs:1", "write OPTIMIZER.PARAM=LOW:HIGH"),
    ("cma-es.sigma0", "write OPTIMIZER.PARAM=LOW:HIGH"),
    ("cma-es.sigma0=0.1:1:cubic", "write OPTIMIZER.PARAM=LOW:HIGH"),
    ("nevergrad.sigma=0.1:1", "'nevergrad' is not being tuned"),
])
def test_bad_range_or_non_tunable_parameter_exits_2_with_the_fix(tmp_path, capsys, bad, fix):
    code = main(TUNE + ["--out", str(tmp_path / "t"), "--range", bad])
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert code == 2 and fix in text, text
    assert not (tmp_path / "t").exists()  # checked before any trial ran


def test_a_range_on_the_command_line_moves_the_search(tmp_path):
    out = _tune(tmp_path, "r", "--range", "cma-es.sigma0=0.5:0.6:linear")
    trials = pd.read_csv(out / "tune.csv")
    later = trials[(trials.optimizer == "cma-es") & (trials.trial > 0)]["spec"]
    values = [float(s.split("=")[1].rstrip("]")) for s in later]
    assert values and all(0.5 <= v <= 0.6 for v in values)


def test_param_tune_declarations_are_checked():
    assert Param(0.1, tune=(1e-3, 1.0), log=True).tune == (1e-3, 1.0)
    assert Param("a", choices=("a", "b"), tune=True).tune is True
    for bad in (dict(tune=(1.0, 0.1)), dict(tune=(0.0, 1.0), log=True), dict(tune=True)):
        with pytest.raises(TypeError):
            Param(0.1, **bad)
    with pytest.raises(TypeError):
        Param("x", tune=(0, 1))


def test_space_leaves_parameters_the_spec_sets_fixed():
    from zgbench.specs import resolve_optimizer

    registry = plugins.load()
    names = lambda text: [d.name for d in tuning.space(registry, resolve_optimizer(registry, text))]
    assert set(names("rge")) == {"step", "lr", "mu", "q"}
    assert set(names("rge[lr=0.01,step=adam]")) == {"mu", "q"}


def test_a_refused_combination_is_a_spent_worst_trial(tmp_path):
    """smoothing refuses sigma < sigma_min: such a suggestion still counts as one of the N
    trials, with the worst value, and never becomes the tuned spec."""
    from zgbench.budget import Budget
    from zgbench.executors import InProcessExecutor
    from zgbench.specs import resolve_optimizer, resolve_task

    registry = plugins.load()
    dims = [tuning.Dimension("sigma", float, 1e-4, 5e-3, log=True)]
    result = tuning.tune_pair(registry, resolve_task(registry, "sphere[dim=2]"), Budget(evals=20),
                              resolve_optimizer(registry, "smoothing"), dims, tmp_path,
                              InProcessExecutor(), trials=3)
    assert len(result.trials) == 3 and result.best.label == "smoothing"
    assert [t["value"] for t in result.trials[1:]] == [float("inf")] * 2
    assert all(t["repetitions"].startswith("invalid:") for t in result.trials[1:])
