"""``zgbench export``: COCO's files read back by cocopp, IOHprofiler's by iohinspector, with
one run's numbers checked against its record."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from zgbench import cli
from zgbench.store import ResultStore

EVALS = [0, 10, 20, 40]
VALUES = [10.0, 5.0, 0.5, 0.05]


def record(task, optimizer, seed, evals, values, direction="min", grads=None, reference=0.0,
           status="ok"):
    grads = grads or [0] * len(evals)
    points = [{"evals": e, "grads": g, "steps": max(e, g) // 10, "seconds": e / 100 + g / 10,
               "metrics": {"score": v}} for e, g, v in zip(evals, grads, values)]
    return {
        "schema": 2, "run_id": f"{task}-{optimizer}-{seed}",
        "identity": {"task": task, "optimizer": optimizer, "repetition": seed},
        "task": {"name": task, "label": task, "canonical": f"{task}[dim=3]",
                 "params": {"dim": 3}, "primary_metric": "score",
                 "metrics": {"score": direction}, "family": "synthetic"},
        "optimizer": {"name": optimizer, "label": optimizer}, "status": status,
        "trajectory": points if status == "ok" else [],
        "final": points[-1] if status == "ok" else None,
        "start": {"score": values[0] if values else 10.0}, "reference": {"score": reference},
    }


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.put(record("bowl", "a", 0, EVALS, VALUES))
    store.put(record("bowl", "a", 1, [0, 10, 30], [10.0, 2.0, 1.5]))
    store.put(record("bowl", "a", 2, [], [], status="failed"))
    store.put(record("bowl", "g", 0, [0, 0, 0], [10.0, 1.0, 0.1], grads=[0, 5, 10]))
    store.put(record("acc", "a", 0, [0, 10, 20], [0.1, 0.6, 0.8], direction="max",
                     reference=0.9))
    return tmp_path / "results"


def test_coco_export_reads_back_in_cocopp(results, tmp_path, capsys):
    out = tmp_path / "coco"
    assert cli.main(["export", "--format", "coco", str(results), "-o", str(out)]) == 0
    assert "left out (no evals spent): g" in capsys.readouterr().out
    cocopp = pytest.importorskip("cocopp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = cocopp.pproc.DataSetList(str(out / "a"))
    bowl = next(ds for ds in datasets if ds.funcId == 2)  # functions in sorted order: acc, bowl
    assert bowl.dim == 3 and bowl.algId == "a" and list(bowl.instancenumbers) == [1, 2]
    # run 1 (instance 1): f - fopt with fopt = the reference 0; best so far at each evaluation
    np.testing.assert_allclose(bowl.finalfunvals, [0.05, 1.5])
    times = bowl.detEvals([1.9, 0.1])  # first evaluation reaching each gap, per run
    np.testing.assert_allclose(times[0], [20, 30])
    assert times[1][0] == 40 and np.isnan(times[1][1])
    funvals = {int(row[0]): row[1] for row in bowl.funvals}  # the .tdat rows, run 1
    assert funvals[1] == 10.0 and funvals[10] == 5.0 and funvals[20] == 0.5
    acc = next(ds for ds in datasets if ds.funcId == 1)  # "max": the gap to 0.9, lower better
    np.testing.assert_allclose(acc.finalfunvals, [0.1])
    assert "failed runs left out: 1" in open(out / "a" / "bbobexp_f2.info").read()


def test_ioh_export_reads_back_in_iohinspector(results, tmp_path):
    out = tmp_path / "ioh"
    assert cli.main(["export", "--format", "ioh", str(results), "-o", str(out),
                     "--axis", "grads"]) == 0
    assert not (out / "a").exists()  # spends no gradients: left out on this axis
    iohinspector = pytest.importorskip("iohinspector")
    manager = iohinspector.DataManager()
    manager.add_folder(str(out / "g"))
    data = manager.load(monotonic=False, include_meta_data=True).sort("evaluations")
    assert data["algorithm_name"].unique().to_list() == ["g"]
    assert data["dimension"].to_list() == [3, 3, 3] and data["instance"].to_list() == [1, 1, 1]
    assert data["evaluations"].to_list() == [1, 5, 10]  # θ₀ counts as evaluation 1
    np.testing.assert_allclose(data["raw_y"].to_numpy(), [10.0, 1.0, 0.1])
    np.testing.assert_allclose(data["seconds"].to_numpy(), [0.0, 0.5, 1.0])
    index = json.loads(next((out / "g").glob("IOHprofiler_f2_*.json")).read_text())
    assert index["maximization"] is False and index["scenarios"][0]["runs"][0]["best"]["y"] == 0.1


def test_ioh_keeps_the_metric_and_its_direction(results, tmp_path):
    out = tmp_path / "ioh"
    assert cli.main(["export", "--format", "ioh", str(results), "-o", str(out)]) == 0
    index = json.loads((out / "a" / "IOHprofiler_f1_acc.json").read_text())
    assert index["maximization"] is True
    assert index["scenarios"][0]["runs"][0]["best"] == {"evals": 20, "y": 0.8, "x": []}
    rows = (out / "a" / "data_f1_acc" / "IOHprofiler_f1_DIM3.dat").read_text().splitlines()
    assert rows[0].split() == ["evaluations", "raw_y", "grads", "steps", "seconds"]
    assert [r.split()[:2] for r in rows[1:]] == [["1", "0.1"], ["10", "0.6"], ["20", "0.8"]]


def test_bad_input_is_a_usage_error(results, tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("")
    assert cli.main(["export", "--format", "coco", str(results), "-o", str(out)]) == 2
    assert "is not empty" in " ".join(capsys.readouterr().err.split())
    assert cli.main(["export", "--format", "coco", str(tmp_path / "none"), "-o",
                     str(tmp_path / "new")]) == 2
