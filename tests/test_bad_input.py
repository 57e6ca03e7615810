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


# ------------------------------------------------------------------------------ issue 23.8
@pytest.mark.parametrize("task, message", [
    ("sphere[dim=inf]", "bad value 'inf' for parameter 'dim' of task 'sphere': expected an integer"),
    ("sphere[dim=1e400]", "bad value '1e400' for parameter 'dim' of task 'sphere': expected an integer"),
    ("cliff[height=inf]", "parameter 'height' of task 'cliff': use a finite number"),
    ("cliff[height=-inf]", "parameter 'height' of task 'cliff': use a finite number"),
])
def test_non_finite_parameters_on_the_command_line(task, message, tmp_path, capsys):
    args = RUN[:]
    args[args.index("sphere[dim=2]")] = task
    _fails(args + ["--out", str(tmp_path)], capsys, message)
    assert not (tmp_path / "runs").exists()


def _suite_file(tmp_path, text: str | bytes) -> list[str]:
    path = tmp_path / "s.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["run", "--suite", str(path), "--out", str(tmp_path / "r"), "--no-leaderboard"]


@pytest.mark.parametrize("text, message", [
    ('[suite]\noptimizers = ["random-search"]\n[[tasks]]\nname = "sphere"\nparams = {dim = inf}',
     "bad value inf for parameter 'dim' of task 'sphere'"),
    ('[suite]\noptimizers = ["random-search"]\n[[tasks]]\nname = "cliff"\n'
     "params = {height = inf}", "parameter 'height' of task 'cliff': use a finite number"),
    ('[suite]\noptimizers = [{name = "random-search", params = {sigma = inf}}]\n[[tasks]]\n'
     'name = "sphere"', "parameter 'sigma' of optimizer 'random-search': use a finite number > 0"),
    ('[suite]\noptimizers = [{name = "random-search", params = {sigma = nan}}]\n[[tasks]]\n'
     'name = "sphere"', "parameter 'sigma' of optimizer 'random-search': use a number > 0"),
    ('[suite]\ndevice = "meta"\noptimizers = ["random-search"]\n[[tasks]]\nname = "sphere"',
     "device 'meta' cannot run tasks: use cpu, cuda or cuda:N"),
    ('[suite]\noptimizers = ["random-search"]\n[[tasks]]\nspec = "sphere[dim=2]"\n'
     "params = {dim = 3}", "parameter 'dim' is given twice: dim=2 in spec 'sphere[dim=2]' "
                           "and dim = 3 in params; keep one"),
    ('[suite]\noptimizers = ["random-search"]\n[[tasks]]\nspec = "sphere[dim=2]"\n[[tasks]]\n'
     'spec = "sphere[dim=2]"', "sphere[dim=2] × random-search is planned twice"),
    (b'[suite]\ndescription = "caf\xe9"\noptimizers = ["random-search"]\n[[tasks]]\n'
     b'name = "sphere"', "not UTF-8 text (byte 26: b'\\xe9'); save it as UTF-8"),
])
def test_bad_suites_exit_2(text, message, tmp_path, capsys):
    _fails(_suite_file(tmp_path, text), capsys, message)
    assert not (tmp_path / "r" / "runs").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--device", "meta", "device 'meta' cannot run tasks"),
    ("--tasks", "sphere[dim=2],sphere[dim=2]", "sphere[dim=2] × random-search is planned twice"),
    ("--optimizers", "random-search,random-search", "is planned twice"),
    ("--out", "", "--out is empty"),
])
def test_bad_run_options_exit_2(flag, value, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --out "" must not write here
    args = RUN[:] + ["--out", str(tmp_path / "r")]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    _fails(args, capsys, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["leaderboard", ""], ["report", ""], ["show", ""],
                                     ["compare", "", "x"]])
def test_empty_paths_of_readers_exit_2(command, capsys):
    _fails(command, capsys, "is empty ('')")


def test_a_dollar_in_a_label_draws(tmp_path, capsys):
    """``$`` in a label is drawn verbatim, not parsed as mathtext (which raised while saving
    every later leaderboard's plots)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import faults

    from zgbench import plugins
    from zgbench.budget import Budget
    from zgbench.executors import InProcessExecutor
    from zgbench.harness import plan, run_all

    registry = plugins.load(extra_plugins=[faults])
    task = specs.resolve_task(registry, r"labelled[dim=2,note=/tmp/$\foo$]")
    runs = plan([(task, Budget(evals=20), [specs.resolve_optimizer(registry, "random-search")])],
                seeds=2)
    run_all(runs, registry, tmp_path, InProcessExecutor())
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    pngs = sorted((tmp_path / "leaderboard").glob("labelled*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)  # curves, profile


def test_non_finite_numbers_are_stored_as_null(tmp_path):
    import json

    store = ResultStore(tmp_path)
    record = {"schema": 2, "run_id": "r1", "status": "ok", "identity": {}, "task": {},
              "optimizer": {}, "duration": float("inf"),
              "final": {"metrics": {"gap": float("nan")}, "best_loss": float("-inf")}}
    path = store.put(record)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    stored = json.loads(path.read_text(), parse_constant=refuse)
    assert stored["duration"] is None and stored["final"]["metrics"]["gap"] is None
    assert stored["final"]["best_loss"] is None
    assert store.get("r1")["final"]["metrics"] == {"gap": None}
