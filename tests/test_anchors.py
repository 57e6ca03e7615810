"""Start and reference on every board (issue 22): records, cache, CSV columns, plots, summary.

Real runs on cheap synthetic instances through ``zgbench run``; the reference of a synthetic
instance is its known optimum, so the expected values are known without re-running it.
"""

from __future__ import annotations

import json
import math
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest

from zgbench import hookimpl, plugins
from zgbench.cli import main
from zgbench.harness import RunSpec, execute
from zgbench.budget import Budget
from zgbench.record import Record, start_metrics
from zgbench.specs import resolve_optimizer, resolve_task
from zgbench.tasks.synthetic import Sphere


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache, so each test computes its references itself."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ZGBENCH_CACHE", str(folder))
    return folder


def _suite(tmp_path):
    """sphere[dim=4] with 200 evaluations (both optimizers improve) and sphere[dim=3] with one
    evaluation, where random search's only evaluated point is its incumbent θ₀."""
    path = tmp_path / "anchors.toml"
    path.write_text(
        '[suite]\nseeds = 2\noptimizers = ["random-search", "cma-es"]\n'
        '[[tasks]]\nspec = "sphere[dim=4]"\nbudget = { evals = 200 }\n'
        '[[tasks]]\nspec = "sphere[dim=3]"\nbudget = { evals = 1 }\n'
        'optimizers = ["random-search"]\n')
    return path


def _records(folder):
    return [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]


def test_records_csv_columns_and_summary(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--suite", str(_suite(tmp_path)), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    stalled = [line for line in err.splitlines() if "no optimizer improved on the start" in line]
    assert len(stalled) == 1 and "sphere[dim=3]" in stalled[0]
    assert "sphere[dim=4]" not in stalled[0]

    records = _records(out)
    assert len(records) == 6
    for r in records:
        assert r["start"] == r["trajectory"][0]["metrics"]  # the zero-spend checkpoint's
        assert r["sanity"]["start"]["gap"] == pytest.approx(r["start"]["gap"], rel=1e-6)
        assert r["reference"] == {"gap": 0.0, "distance": 0.0}
        assert r["reference_note"] == "the known optimum x*"

    table = pd.read_csv(out / "leaderboard" / "sphere_dim=4.csv").set_index("optimizer")
    assert {"start", "reference", "final_over_start"} <= set(table.columns)
    mine = [r for r in records if r["task"]["label"] == "sphere[dim=4]"]
    starts = {r["identity"]["repetition"]: r["start"]["gap"] for r in mine}
    assert len(starts) == 2
    assert table["start"].iloc[0] == pytest.approx(np.median(list(starts.values())), rel=1e-6)
    assert (table["start"] == table["start"].iloc[0]).all()
    assert (table["reference"] == 0.0).all()
    for name, row in table.iterrows():
        ratios = [r["final"]["metrics"]["gap"] / r["start"]["gap"] for r in mine
                  if r["optimizer"]["name"] == name]
        assert row["final_over_start"] == pytest.approx(np.median(ratios), rel=1e-6)
        assert row["final_over_start"] < 1.0
    flat = pd.read_csv(out / "leaderboard" / "sphere_dim=3.csv")
    assert flat["final_over_start"].iloc[0] == pytest.approx(1.0)


def test_reference_is_computed_once_per_instance(tmp_path, cache, monkeypatch):
    calls = []
    original = Sphere.reference

    def counted(self):
        calls.append(self.seed)
        return original(self)

    monkeypatch.setattr(Sphere, "reference", counted)
    args = ["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,cma-es",
            "--seeds", "1", "--evals", "50", "--no-leaderboard",
            "--in-process"]  # the calls are counted in this process
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert len(calls) == 1  # two runs of one instance: one reference
    assert main(args + ["--out", str(tmp_path / "b"), "--seeds", "2"]) == 0
    assert len(calls) == 2  # a new results folder: seed 0 from the cache, seed 1 computed
    assert len(list((cache / "anchors").glob("*.json"))) == 2
    first = {r["identity"]["repetition"]: r["reference"] for r in _records(tmp_path / "a")}
    again = {r["identity"]["repetition"]: r["reference"] for r in _records(tmp_path / "b")}
    assert again[0] == first[0]


class BrokenReference(Sphere):
    """A third-party task whose ``reference`` predates the contract (an image tensor, as
    radiosity's attribute once was): calling it fails, the run must not."""

    name = "broken-reference"

    def setup(self):
        super().setup()
        self.reference = self.x_star.clone()


def test_a_task_whose_reference_fails_keeps_its_run():
    module = types.ModuleType("brokenref")
    module.zgbench_tasks = hookimpl(lambda: [BrokenReference])
    registry = plugins.load(extra_plugins=[module])
    run = RunSpec(resolve_task(registry, "broken-reference[dim=3]"),
                  resolve_optimizer(registry, "random-search"), 0, Budget(evals=40))
    with pytest.warns(UserWarning, match="no reference"):
        record = execute(run, registry)
    data = record.as_dict()
    assert record.status == "ok"
    assert data["start"] == data["trajectory"][0]["metrics"]
    assert "reference" not in data and "sanity" not in data  # unknown, not "none"


class SlowReference(Sphere):
    """A reference that would outlast the run's hard limit."""

    name = "slow-reference"

    def reference(self):
        time.sleep(30)
        return super().reference()


def test_a_reference_past_the_runs_limit_is_given_up_and_the_run_kept():
    module = types.ModuleType("slowref")
    module.zgbench_tasks = hookimpl(lambda: [SlowReference])
    registry = plugins.load(extra_plugins=[module])
    run = RunSpec(resolve_task(registry, "slow-reference[dim=3]"),
                  resolve_optimizer(registry, "random-search"), 0, Budget(evals=40))
    t0 = time.perf_counter()
    with pytest.warns(UserWarning, match="no reference"):
        record = execute(run, registry, timeout=2.0)
    assert time.perf_counter() - t0 < 10  # within the limit (plus the watchdog's second)
    assert record.status == "ok" and record.reference_note is None


def test_two_workers_computing_one_reference_at_once(tmp_path, cache):
    """Two pool workers start the two runs of one instance together: both compute its
    reference and write the same cache file atomically; both records carry it."""
    out = tmp_path / "pool"
    assert main(["run", "--workers", "2", "--tasks", "classify[width=4,batch=32]",
                 "--optimizers", "random-search,cge", "--seeds", "1", "--evals", "40",
                 "--no-leaderboard", "--out", str(out)]) == 0
    records = _records(out)
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert records[0]["reference"] == records[1]["reference"]
    assert records[0]["reference"]["accuracy"] > 0.7
    assert len(list((cache / "anchors").glob("*.json"))) == 1


def test_records_without_anchors_read_as_before():
    """A record written before the anchors: no new keys, start from its first checkpoint."""
    point = {"evals": 0, "grads": 0, "steps": 0, "seconds": 0.0, "metrics": {"gap": 3.0}}
    old = {"schema": 2, "run_id": "x", "identity": {"repetition": 0}, "task": {},
           "optimizer": {}, "status": "ok", "trajectory": [point, dict(point, evals=5)]}
    record = Record.from_dict(old)
    assert record.start is None and record.reference_note is None
    data = record.as_dict()
    assert not {"start", "sanity", "reference", "reference_note"} & set(data)
    assert start_metrics(data) == {"gap": 3.0}
    assert start_metrics({**old, "trajectory": []}) is None
    record.start, record.sanity = {"gap": 3.0}, {"start": {"gap": 3.0}}
    record.reference, record.reference_note = None, ""
    data = record.as_dict()  # a task without a reference: null with its (empty) note
    assert data["reference"] is None and data["reference_note"] == ""
    assert Record.from_dict(json.loads(json.dumps(data))).as_dict() == data


def test_plot_draws_start_and_reference(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from zgbench import leaderboard

    frame = pd.DataFrame({"calls": [0.0, 10.0, 100.0], "median": [5.0, 2.0, 1.0],
                          "q25": [4.0, 1.5, 0.8], "q75": [6.0, 2.5, 1.2]})
    fig, ax = plt.subplots()
    drawn = leaderboard._anchor_lines(ax, {"start": 5.0, "reference": 0.5,
                                           "reference_note": "Adam"}, "min")
    labels = [line.get_label() for line in ax.get_lines()]
    plt.close(fig)
    assert drawn == [5.0, 0.5]
    assert labels == ["start θ₀ (median over instances)", "reference: Adam"]
    path = tmp_path / "t.png"
    leaderboard.plot_task("t", "gap", "min", {"a": frame}, path,
                          {"start": 5.0, "reference": math.nan, "reference_note": ""})
    assert path.stat().st_size > 1000


def test_reference_cache_key_follows_the_task_helpers(tmp_path, monkeypatch):
    """A task's reference is computed with its package's helper modules (mesh-fit's soft
    rasterizer): editing a helper the task module imports changes the key, as editing the
    task module does; a module of another package does not count."""
    import importlib

    from zgbench import fingerprint

    pkg = tmp_path / "helperpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helper.py").write_text("K = 1\n")
    (pkg / "taskmod.py").write_text("import json\nfrom helperpkg import _helper\n\n"
                                    "class T:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = importlib.import_module("helperpkg.taskmod").T
    before = fingerprint.source_hash_with_helpers(cls)
    assert before != fingerprint.source_hash(cls)
    (pkg / "_helper.py").write_text("K = 2\n")
    fingerprint._file_hash.cache_clear()
    assert fingerprint.source_hash_with_helpers(cls) != before
    for name in ("helperpkg", "helperpkg._helper", "helperpkg.taskmod"):
        sys.modules.pop(name, None)
