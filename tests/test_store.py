"""One broken record breaks nothing: every command warns with its path, quarantines it and
goes on; the next run redoes it."""

import json
import shutil

import pytest

from zgbench import cli
from zgbench.store import RecordWarning, ResultStore

RUN = ["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search,fd", "--seeds", "1",
       "--evals", "20", "--no-leaderboard"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "results"
    assert cli.main(RUN + ["--out", str(out)]) == 0
    return out


@pytest.fixture
def broken(finished, tmp_path):
    """A copy of two finished runs, the first record truncated mid-file."""
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    path = sorted((results / "runs").glob("*.json"))[0]
    path.write_text(path.read_text()[:150])
    return results, path


def _quarantined(results, path, err, redone=False):
    assert path.exists() == redone and (results / "quarantine" / path.name).is_file()
    assert f"broken record {path}" in err.replace("\n", "") and "not valid JSON" in err


@pytest.mark.parametrize("command", [
    ["leaderboard", "{r}", "-o", "{r}/lb"],
    ["report", "{r}", "-o", "{r}/report"],
    ["compare", "{r}", "{r}"],
])
def test_readers_quarantine_a_truncated_record(broken, capsys, command):
    results, path = broken
    code = cli.main([part.format(r=results) for part in command])
    _quarantined(results, path, capsys.readouterr().err)
    assert code == 0


def test_run_redoes_a_truncated_record(broken, capsys):
    results, path = broken
    assert cli.main(RUN + ["--out", str(results)]) == 0
    err = capsys.readouterr().err
    _quarantined(results, path, err, redone=True)
    assert "1 done, 1 skipped" in err
    assert json.loads(path.read_text())["status"] == "ok"  # redone, whole again


def test_broken_shapes_are_set_aside(tmp_path):
    store = ResultStore(tmp_path)
    store.runs.mkdir(parents=True)
    (store.runs / "a.json").write_text("[1, 2]")
    (store.runs / "b.json").write_text(json.dumps({"schema": 1, "run_id": "b"}))
    (store.runs / "c.json").write_bytes(b"\xff\xfe")
    (store.runs / "old.json").write_text(json.dumps({"schema": 0}))  # another version: kept
    with pytest.warns(RecordWarning) as caught:
        assert list(store) == []
    assert sorted(p.name for p in store.quarantine.iterdir()) == ["a.json", "b.json", "c.json"]
    assert (store.runs / "old.json").exists()
    assert "a JSON list" in str(caught[0].message) and "no 'status'" in str(caught[1].message)


def test_quarantine_keeps_both_copies_and_get_reads_none(tmp_path):
    store = ResultStore(tmp_path)
    for _ in range(2):
        store.runs.mkdir(parents=True, exist_ok=True)
        store.path("r").write_text("{")
        with pytest.warns(RecordWarning, match="moved to"):
            assert store.get("r") is None and not store.finished("r")
    assert len(list(store.quarantine.iterdir())) == 2


# --------------------------------------------------------------- issue 23.9: newer, wrong types
READERS = [
    ["leaderboard", "{r}", "-o", "{r}/lb"],
    ["report", "{r}", "-o", "{r}/report"],
    ["compare", "{r}", "{r}"],
    ["show", "{r}"],
]


@pytest.fixture
def newer(finished, tmp_path):
    """A copy of the finished runs, the first record written by a future zgbench (schema 3,
    with a field this version does not know)."""
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    path = sorted((results / "runs").glob("*.json"))[0]
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, schema=3, provenance={"signed": "x"})))
    return results, path


@pytest.mark.parametrize("command", READERS + [RUN + ["--out", "{r}"]])
def test_a_record_of_a_newer_schema_is_refused_and_kept(newer, capsys, command):
    results, path = newer
    before = path.read_bytes()
    assert cli.main([part.format(r=results) for part in command]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "written by a newer zgbench (schema 3" in err and "upgrade zgbench" in err, err
    assert path.read_bytes() == before  # never overwritten, never quarantined
    assert not (results / "quarantine").exists()


def test_put_never_overwrites_a_newer_record(newer):
    results, path = newer
    store = ResultStore(results)
    with pytest.raises(Exception, match="newer zgbench"):
        store.put(dict(json.loads(path.read_text()), schema=2))
    assert json.loads(path.read_text())["schema"] == 3


WRONG_TYPES = {
    "gap": lambda r: r["final"]["metrics"].update(gap="abc"),
    "trajectory": lambda r: r.update(trajectory="x"),
    "metrics": lambda r: r["trajectory"][0].update(metrics=[1, 2]),
    "task metrics": lambda r: r["task"].update(metrics=["gap"]),
    "repetition": lambda r: r["identity"].update(repetition="first"),
}


@pytest.fixture
def mistyped(tmp_path_factory):
    """Six finished runs; five records get a wrong type each, one stays good."""
    out = tmp_path_factory.mktemp("typed") / "results"
    assert cli.main(["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                     "--seeds", "6", "--evals", "20", "--no-leaderboard", "--out", str(out)]) == 0
    paths = sorted((out / "runs").glob("*.json"))
    for path, spoil in zip(paths, WRONG_TYPES.values()):
        record = json.loads(path.read_text())
        spoil(record)
        path.write_text(json.dumps(record))
    return out, paths


@pytest.mark.parametrize("command", READERS[:3])
def test_records_of_wrong_types_are_quarantined_and_the_rest_is_read(mistyped, capsys, command):
    results, paths = mistyped
    assert cli.main([part.format(r=results) for part in command]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in (results / "quarantine").iterdir()) == \
        sorted(p.name for p in paths[:5])
    assert [p.name for p in (results / "runs").iterdir()] == [paths[5].name]
    for said in ("metric 'gap' is a string ('abc')", "'trajectory' is a string ('x')",
                 "metrics are a list", "task metrics is a list",
                 "identity repetition is a string ('first')"):
        assert said in err, err
