"""Records: the typed dataclass and its JSON form, schema-1 folders, the code fingerprint."""

import hashlib
import importlib.util
import json
import shutil
import sys

import pytest

from zgbench import cli, fingerprint, plugins
from zgbench.commands import run as run_command
from zgbench.harness import RunSpec, execute
from zgbench.record import SCHEMA, Record, migrate, repetition, run_id
from zgbench.specs import resolve_optimizer, resolve_task
from zgbench.store import RecordWarning, ResultStore

RUN = ["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search,fd", "--seeds", "1",
       "--evals", "20", "--no-leaderboard"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "results"
    assert cli.main(RUN + ["--out", str(out)]) == 0
    return out


def _as_schema_1(results):
    """Rewrite every record of ``results`` as zgbench wrote them before schema 2."""
    for path in (results / "runs").glob("*.json"):
        data = json.loads(path.read_text())
        data["identity"]["seed"] = data["identity"].pop("repetition")
        data["schema"] = 1
        del data["code"]
        path.write_text(json.dumps(data))


def test_round_trip(tmp_path):
    registry = plugins.load()
    spec = RunSpec(resolve_task(registry, "sphere[dim=2]"),
                   resolve_optimizer(registry, "random-search"), 1,
                   registry.task("sphere").cls.default_budget.override(evals=10))
    record = execute(spec, registry)
    assert record.status == "ok" and record.repetition == 1 and record.schema == SCHEMA == 2
    assert record.code["task"] == fingerprint.source_hash(registry.task("sphere").cls)
    assert len(record.code["optimizer"]) == fingerprint.DIGITS
    data = json.loads(json.dumps(record.as_dict(), allow_nan=False))
    assert data["identity"]["repetition"] == 1 and "seed" not in data["identity"]
    assert Record.from_dict(data) == record
    store = ResultStore(tmp_path)
    store.put(record)
    assert list(store.records()) == [record] and store.get(record.run_id) == data


def test_run_ids_are_those_of_schema_1():
    """Schema 2 renamed the identity's key; the run id hashes the old spelling, so folders
    written before still resume (this is the formula zgbench 0.1.0 always used)."""
    identity = {"task": "sphere[dim=2]", "optimizer": "cge", "repetition": 3,
                "budget": {"evals": 20, "grads": None, "steps": None, "seconds": None},
                "device": "cpu", "zgbench": "0.1.0"}
    old = {**{k: v for k, v in identity.items() if k != "repetition"}, "seed": 3}
    text = json.dumps(old, sort_keys=True, separators=(",", ":"))
    assert run_id(identity) == hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    assert run_id(identity) != run_id({**identity, "repetition": 4})


def test_migrate_and_repetition():
    old = {"schema": 1, "run_id": "x", "identity": {"seed": 2, "task": "t"}}
    new = migrate(old)
    assert new["schema"] == 2 and new["identity"] == {"repetition": 2, "task": "t"}
    assert old["identity"] == {"seed": 2, "task": "t"}  # the input is left alone
    assert repetition(old) == repetition(new) == 2


def test_a_schema_1_folder_resumes_ranks_and_compares(finished, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    _as_schema_1(results)
    records = list(ResultStore(results))
    assert len(records) == 2 and all(r["identity"]["repetition"] == 0 for r in records)
    assert cli.main(RUN + ["--out", str(results)]) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "0 done, 2 skipped" in err
    assert err.count("predate the code fingerprint") == 1 and "--rerun-stale" in err
    assert all(json.loads(p.read_text())["schema"] == 1 for p in (results / "runs").iterdir())
    assert cli.main(["leaderboard", str(results), "-o", str(tmp_path / "lb")]) == 0
    assert "random-search" in (tmp_path / "lb" / "overall.csv").read_text()
    assert cli.main(["compare", str(results), str(finished)]) == 0
    assert cli.main(["report", str(results), "-o", str(tmp_path / "report")]) == 0
    assert "random-search" in (tmp_path / "report" / "index.html").read_text()
    assert cli.main(RUN + ["--out", str(results), "--rerun-stale"]) == 0  # asked: redone
    assert "2 done, 0 skipped" in capsys.readouterr().err.replace("\n", " ")
    assert {json.loads(p.read_text())["schema"] for p in (results / "runs").iterdir()} == {2}


def test_a_broken_schema_2_record_is_quarantined(tmp_path):
    store = ResultStore(tmp_path)
    store.runs.mkdir(parents=True)
    (store.runs / "b.json").write_text(json.dumps({"schema": 2, "run_id": "b", "status": "ok"}))
    with pytest.warns(RecordWarning, match="no 'identity'"):
        assert list(store) == []
    assert [p.name for p in store.quarantine.iterdir()] == ["b.json"]


PLUGIN = '''
import torch

from zgbench import Budget, Task, hookimpl

SCALE = {scale}


class Bowl(Task):
    """A quadratic bowl from a plugin written by the test."""

    name = "tmp-bowl"
    metrics = {{"loss": "min"}}
    primary_metric = "loss"
    default_budget = Budget(evals=20)

    def setup(self):
        self.dim = 2

    def initial(self):
        return torch.ones(self.dim)

    def loss(self, thetas, key):
        return SCALE * (thetas ** 2).sum(1)

    def evaluate(self, theta):
        return {{"loss": float(SCALE * (theta ** 2).sum())}}


@hookimpl
def zgbench_tasks():
    return [Bowl]
'''


def _registry(path, scale, monkeypatch):
    """Write the plugin with ``scale``, import it afresh and use it as zgbench run's registry
    (each zgbench run is a new process: the fingerprint's per-process cache starts empty)."""
    path.write_text(PLUGIN.format(scale=scale))
    spec = importlib.util.spec_from_file_location("tmp_bowl_plugin", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tmp_bowl_plugin", module)
    spec.loader.exec_module(module)
    fingerprint._file_hash.cache_clear()
    registry = plugins.load(extra_plugins=[module])
    monkeypatch.setattr(run_command, "load_registry", lambda args, described=False: registry)
    return registry


def test_changed_plugin_source_warns_and_rerun_stale_redoes_only_that_pair(
        tmp_path, monkeypatch, capsys):
    out, source = tmp_path / "results", tmp_path / "tmp_bowl_plugin.py"
    argv = ["run", "--tasks", "tmp-bowl,sphere[dim=2]", "--optimizers", "random-search",
            "--seeds", "1", "--evals", "20", "--no-leaderboard", "--out", str(out)]
    _registry(source, 1.0, monkeypatch)
    assert cli.main(argv) == 0
    before = {p.name: p.read_text() for p in (out / "runs").iterdir()}
    capsys.readouterr()

    assert cli.main(argv) == 0  # nothing changed: no warning
    assert "older version" not in capsys.readouterr().err

    _registry(source, 2.0, monkeypatch)  # the task's code changed
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "1 finished run ran an older version" in err and "tmp-bowl × random-search" in err
    assert "sphere" not in err.split("older version")[1].split(":")[0]
    assert "0 done, 2 skipped" in err and "predate" not in err
    assert {p.name: p.read_text() for p in (out / "runs").iterdir()} == before  # kept

    assert cli.main(argv + ["--rerun-stale"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().err.replace("\n", " ")
    after = {p.name: json.loads(p.read_text()) for p in (out / "runs").iterdir()}
    changed = [name for name in after if json.dumps(after[name], indent=1, sort_keys=True)
               != before[name]]
    assert len(after) == 2 and len(changed) == 1
    redone = after[changed[0]]
    assert redone["task"]["name"] == "tmp-bowl"
    assert redone["code"]["task"] == hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    assert not list(out.glob("runs/.*.tmp"))  # replaced atomically: no temporary left

    assert cli.main(argv) == 0  # fresh again
    assert "older version" not in capsys.readouterr().err
