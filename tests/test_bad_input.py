"""Bad input exits with status 2 and a message naming the problem and the fix, before anything
runs: never a traceback, never after the first run."""

import errno

import pytest

from zgbench import specs
from zgbench.cli import main
from zgbench.params import Param
from zgbench.store import ResultStore

RUN = ["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search", "--seeds", "1",
       "--evals", "20", "--no-leaderboard"]


def _fails(args, capsys, *messages):
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    for message in messages:
        assert message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_seconds_must_be_positive_and_finite(value, tmp_path, capsys):
    _fails(RUN + ["--seconds", value, "--out", str(tmp_path)], capsys,
           "budget seconds must be positive", "leave it out for no time limit")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_threads_must_be_at_least_one(extra, tmp_path, capsys):
    _fails(RUN + ["--threads", "0", "--out", str(tmp_path)] + extra, capsys,
           "--threads must be at least 1, got 0")


@pytest.mark.parametrize("spec, message", [
    ("random-search[batch=0]", "parameter 'batch' of optimizer 'random-search': use a number >= 1"),
    ("random-search[sigma=-0.1]", "parameter 'sigma' of optimizer 'random-search': use a number > 0"),
    ("cge[mu=nan]", "parameter 'mu' of optimizer 'cge': use a number > 0"),
    ("rge[q=0]", "'q' of optimizer 'rge': use a number >= 1"),
    ("fd[lr=0]", "'lr' of optimizer 'fd': use a number > 0"),
    ("adam[lr=-1]", "'lr' of optimizer 'adam'"),
    ("mezo[weight_decay=-1]", "'weight_decay' of optimizer 'mezo': use a number >= 0"),
    ("zerograds[lr_phi=0]", "'lr_phi' of optimizer 'zerograds'"),
    ("cbo[alpha_factor=nan]", "'alpha_factor' of optimizer 'cbo': use a number (not NaN)"),
])
def test_optimizer_params_out_of_range(spec, message, tmp_path, capsys):
    args = RUN[:]
    args[args.index("random-search")] = spec
    _fails(args + ["--out", str(tmp_path)], capsys, message)


def _suite(tmp_path, head="", task=""):
    if "optimizers =" not in task:
        task += '\noptimizers = ["random-search"]'
    path = tmp_path / "s.toml"
    path.write_text(f'[suite]\n{head}\n[[tasks]]\nspec = "sphere[dim=2]"\n{task}\n')
    return ["run", "--suite", str(path), "--out", str(tmp_path / "r"), "--no-leaderboard"]


@pytest.mark.parametrize("head, task, message", [
    ('seeds = "abc"', "", "seeds must be a whole number of at least 1, got 'abc' (e.g. seeds = 3)"),
    ("seeds = 0", "", "seeds must be a whole number of at least 1, got 0"),
    ("seeds = true", "", "seeds must be a whole number"),
    ('optimizers = "random-search"', "", "optimizers must be a list, got 'random-search': write ["),
    ("", 'optimizers = "random-search"', "[[tasks]] #1: optimizers must be a list"),
    ("", 'budget = { evals = "many" }', "[[tasks]] #1: budget evals must be positive (a number), "
                                        "got 'many' (e.g. evals = 2000)"),
    ("", "budget = { evals = 2.5 }", "budget evals must be a whole number, got 2.5"),
    ("", 'budget = "lots"', "[[tasks]] #1: budget must be a table, got 'lots'"),
    ("", "params = 3", "[[tasks]] #1: params must be a table"),
    ("device = 3", "", "device must be a string, got 3"),
])
def test_bad_suite_values(head, task, message, tmp_path, capsys):
    _fails(_suite(tmp_path, head, task), capsys, message)


def test_suite_tasks_must_be_tables(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('tasks = "sphere"\n[suite]\noptimizers = ["random-search"]\n')
    _fails(["run", "--suite", str(path)], capsys, "tasks must be a list, got 'sphere'")
    path.write_text('tasks = ["sphere"]\n[suite]\noptimizers = ["random-search"]\n')
    _fails(["run", "--suite", str(path)], capsys, "[[tasks]] #1 must be a table")


def test_unwritable_results_folder_before_starting(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails(RUN + ["--out", str(blocker / "results")], capsys, "cannot write records to",
           "Not a directory", "Choose another --out")


def test_read_only_results_folder(tmp_path, capsys, monkeypatch):
    # the tests may run as root, for whom no folder is read-only: refuse the probe like a
    # read-only mount would
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    _fails(RUN + ["--out", str(tmp_path)], capsys, "cannot write records to",
           "Read-only file system")


def test_full_disk_before_starting(tmp_path, capsys, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=2**20))
    _fails(RUN + ["--out", str(tmp_path)], capsys, "is on a full disk (1.0 MiB free)")
    assert list(ResultStore(tmp_path)) == []


def test_disk_full_during_the_run(tmp_path, capsys, monkeypatch):
    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultStore, "put", full)
    _fails(RUN + ["--out", str(tmp_path)], capsys, "No space left on device",
           "run the same command again; finished runs are kept")


def test_param_bounds_are_shown_and_checked(registry):
    param = Param(16, "samples", ge=1, lt=100)
    param.name = "batch"
    assert param.describe() == "batch=16 (>= 1 and < 100)"
    assert param.coerce("99", "x") == 99
    assert not param.admits(100) and not param.admits(float("nan")) and not param.admits(0)
    assert "batch=16 (>= 1)" in [p.describe() for p in
                                 registry.optimizer("random-search").cls.declared_params().values()]
    assert specs.resolve_optimizer(registry, "random-search[batch=1]").kwargs["batch"] == 1
