"""Secret instances (issue 24.5): ``--instances secret`` salts task seeds with the organizer's
key (HMAC), which never travels with a run; records say which instance set they ran on, and
a board ranks one set."""

import os
import pickle

import pytest

from zgbench import cli, leaderboard, plugins, specs
from zgbench.budget import Budget
from zgbench.errors import UsageError
from zgbench.harness import RunSpec, on_instances, task_seed
from zgbench.record import Record
from zgbench.seeding import KEY_ENV, InstanceKey, instance_set, load_instance_key
from zgbench.store import ResultStore

KEY = "0123456789abcdef-organizer-key"


@pytest.fixture(scope="module")
def run():
    reg = plugins.load()
    return RunSpec(specs.resolve_task(reg, "sphere[dim=2]"),
                   specs.resolve_optimizer(reg, "random-search"), 1, Budget(evals=20))


def test_secret_seeds_come_from_the_key_and_only_the_seeds_travel(run):
    key, other = InstanceKey(KEY.encode()), InstanceKey(b"another key, 16 bytes or more")
    (secret,) = on_instances([run], key)
    public = run.seeds()
    seeds = secret.seeds()
    assert seeds["task"] != public["task"] == task_seed(run.task, 1)
    assert seeds["eval_key"] != public["eval_key"]
    assert seeds["optimizer"] == public["optimizer"]  # the optimizer's streams stay public
    assert on_instances([run], key)[0].seeds() == seeds  # deterministic
    assert on_instances([run], other)[0].seeds()["task"] != seeds["task"]
    assert key.id != other.id and len(key.id) == 12 and KEY not in repr(key)
    assert secret.run_id != run.run_id  # never resumes or replaces a public run
    assert secret.identity()["instances"] == f"secret:{key.id}"
    assert "instances" not in run.identity()  # public run ids are unchanged
    shipped = pickle.dumps(secret)  # what an executor sends a worker
    assert KEY.encode() not in shipped and KEY not in repr(secret)


def test_the_key_comes_from_the_environment_or_a_file_outside_the_results(tmp_path):
    environ = {KEY_ENV: KEY, "OTHER": "x"}
    key = load_instance_key(tmp_path / "results", environ=environ)
    assert key.secret == KEY.encode() and KEY_ENV not in environ  # not inherited further
    with pytest.raises(UsageError, match=f"set {KEY_ENV} or give --instance-key-file"):
        load_instance_key(tmp_path / "results", environ={})
    with pytest.raises(UsageError, match="at least 16"):
        load_instance_key(tmp_path, environ={KEY_ENV: "short"})
    results = tmp_path / "results"
    results.mkdir()
    (results / "key").write_text(KEY)
    with pytest.raises(UsageError, match="inside the results folder"):
        load_instance_key(results, results / "key", environ={})
    (tmp_path / "key").write_text(KEY + "\n")
    assert load_instance_key(results, tmp_path / "key", environ={}).secret == KEY.encode()
    with pytest.raises(UsageError, match="cannot read"):
        load_instance_key(results, tmp_path / "absent", environ={})


def _run(out, *flags):
    return cli.main(["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                     "--evals", "20", "--seeds", "1", "--out", str(out), "--in-process",
                     "--no-leaderboard", *flags])


def test_run_on_secret_instances(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    assert _run(tmp_path / "secret", "--instances", "secret") == 0
    assert KEY_ENV not in os.environ  # dropped before any run or worker started
    (record,) = ResultStore(tmp_path / "secret")
    key = InstanceKey(KEY.encode())
    assert record["instances"] == "secret" and record["instance_key"] == key.id
    assert record["status"] == "ok"
    assert record["seeds"]["task"] == key.seed("task", record["task"]["canonical"], 0)
    assert _run(tmp_path / "public") == 0
    (public,) = ResultStore(tmp_path / "public")
    assert public["instances"] == "public" and "instance_key" not in public
    assert public["seeds"]["task"] != record["seeds"]["task"]
    assert public["final"]["metrics"] != record["final"]["metrics"]  # another instance


@pytest.mark.parametrize("flags, message", [
    (["--instances", "secret"], KEY_ENV),
    (["--instance-key-file", "/nonexistent"], "add --instances secret"),
    (["--instances", "secret", "--instance-key-file", "{out}/key"], "inside the results"),
])
def test_secret_instance_flags_are_checked(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.delenv(KEY_ENV, raising=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "key").write_text(KEY)
    flags = [f.format(out=out) for f in flags]
    assert _run(out, *flags) == 2
    assert message in " ".join(capsys.readouterr().err.split())  # unwrapped


def test_a_results_folder_and_a_board_hold_one_instance_set(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path) == 0
    monkeypatch.setenv(KEY_ENV, KEY)
    assert _run(tmp_path, "--instances", "secret") == 2
    assert "own --out folder" in " ".join(capsys.readouterr().err.split())
    (public,) = ResultStore(tmp_path)
    secret = {**public, "run_id": "0" * 16, "instances": "secret", "instance_key": "abc"}
    with pytest.raises(UsageError, match="mix instance sets"):
        leaderboard.runs_frame([public, secret])
    assert instance_set([secret]) == "secret:abc"
    old = {k: v for k, v in public.items() if k != "instances"}  # written before the field
    assert instance_set([old, public]) == "public"
    assert Record.from_dict(old).instances == "public"
