"""Hostile data: a crafted results folder writes nothing outside the output folder, and a
planted CIFAR-10 batch runs no code."""

import json
import os
import pickle
import shutil
import struct
import warnings

import numpy as np
import pytest

from zgbench import cli
from zgbench.commands import show
from zgbench.errors import UsageError
from zgbench.paths import UnsafePath, inside
from zgbench.report import copy_artifacts
from zgbench.store import RecordWarning, ResultStore
from zgbench.tasks import _cifar
from zgbench.tasks.classify import Classify
from zgbench.testing import run_once


# ------------------------------------------------------------------ record paths (report, show)
def _files(root):
    return {p for p in root.rglob("*")}


@pytest.fixture
def crafted(tmp_path):
    """A results folder with one real run, a legit picture, and hostile artifact entries: a
    symlink deep inside the folder, a path through it with '..', an absolute path, and a
    picture that is itself a link to a file outside."""
    results = tmp_path / "results"
    record = run_once("sphere[dim=2]", "random-search", evals=20)
    rid = record["run_id"]
    legit = results / "artifacts" / rid / "fit.png"
    legit.parent.mkdir(parents=True)
    legit.write_bytes(b"\x89PNG legit")
    (results / "a" / "b" / "c" / "d").mkdir(parents=True)
    (results / "L").symlink_to(results / "a" / "b" / "c" / "d")
    (results / "x").mkdir()
    (results / "x" / "PWNED.txt").write_text("pwned")  # what L/../../../../x/ reaches
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    (results / "artifacts" / rid / "link.png").symlink_to(secret)
    record["artifacts"] = [f"artifacts/{rid}/fit.png", "L/../../../../x/PWNED.txt",
                           str(tmp_path / "abs.png"), f"artifacts/{rid}/link.png", "L/y.png"]
    ResultStore(results).put(record)
    return results, rid


def test_report_writes_nothing_outside_its_folder(crafted, tmp_path, capsys):
    results, rid = crafted
    out = tmp_path / "deep" / "1" / "2" / "out"
    out.parent.mkdir(parents=True)
    before = _files(tmp_path)
    assert cli.main(["report", str(results), "-o", str(out)]) == 0
    new = _files(tmp_path) - before
    assert new and all(out == p or out in p.parents for p in new), new - set(out.rglob("*"))
    assert (out / "artifacts" / rid / "fit.png").read_bytes() == b"\x89PNG legit"
    assert not (out / "artifacts" / rid / "link.png").exists()  # a link is not followed
    messages = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(messages) == 4 and all(rid in m for m in messages)
    assert any("'..'" in m for m in messages) and any("absolute" in m for m in messages)
    assert sum("symbolic link" in m for m in messages) == 2
    assert 'src="artifacts/' + rid + '/fit.png"' in (out / "index.html").read_text()


def test_copy_refuses_a_link_in_the_output_folder(crafted, tmp_path):
    """A link planted in the output folder (a report written over an old one) is not written
    through either."""
    results, rid = crafted
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "artifacts").symlink_to(elsewhere)
    with pytest.warns(RecordWarning) as caught:
        pictures = copy_artifacts(list(ResultStore(results)), results, out)
    assert list(elsewhere.iterdir()) == [] and pictures == {}
    assert f"'artifacts/{rid}/fit.png' passes through the symbolic link" in str(caught[0].message)


def test_show_skips_unsafe_artifacts(crafted):
    results, rid = crafted
    record = ResultStore(results).get(rid)
    with pytest.warns(RecordWarning):
        paths = show._artifact_paths(record, results)
    assert paths == [results.resolve() / "artifacts" / rid / "fit.png"]


@pytest.mark.parametrize("rel", ["", ".", "..", "a/../b", "/etc/passwd", "C:\\x", "a\\..\\..\\b",
                                 "a\x00b", None, 3])
def test_inside_refuses(tmp_path, rel):
    with pytest.raises(UnsafePath):
        inside(tmp_path, rel)


def test_inside_accepts_plain_paths(tmp_path):
    assert inside(tmp_path, "a/./b.png") == tmp_path.resolve() / "a" / "b.png"


def test_broken_run_id_cannot_name_a_folder(tmp_path):
    """Records name folders by run id (show writes OUT/runs/RUN_ID/): one that does not match
    its file name is set aside."""
    store = ResultStore(tmp_path)
    store.runs.mkdir(parents=True)
    record = run_once("sphere[dim=2]", "random-search", evals=10)
    (store.runs / "...json").write_text(json.dumps({**record, "run_id": ".."}))
    with pytest.warns(RecordWarning, match="not its file name"):
        assert list(store) == []


# ------------------------------------------------------------------------ CIFAR-10 pickles
def _str(b: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING or BINSTRING
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the official files (protocol 2, numpy 1 names)."""
    n, m = data.shape
    dtype = (b"cnumpy\ndtype\n" + _str(b"u1") + b"\x89\x88\x87R(" + _int(3) + _str(b"|")
             + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85"
             + _str(b"b") + b"\x87R(" + _int(1) + _int(n) + _int(m) + b"\x86" + dtype
             + b"\x89" + _str(data.tobytes()) + b"tb")
    items = (_str(b"batch_label") + _str(b"training batch 1 of 5") + _str(b"labels") + b"]("
             + b"".join(map(_int, labels)) + b"e" + _str(b"data") + array
             + _str(b"filenames") + b"](" + _str(b"img.png") * n + b"e")
    return b"\x80\x02}(" + items + b"u."


def test_cifar_reads_the_official_python2_format(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(data, [1, 2, 9]))
    images, labels = _cifar.read_batch(path)
    assert (images.reshape(3, -1) == data).all() and labels.tolist() == [1, 2, 9]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_planted_cifar_pickle_runs_nothing(tmp_path):
    from tests.test_classify import write_cifar10

    folder, _ = write_cifar10(tmp_path)
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Exploit(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UsageError, match=r"refused to unpickle \(it asks for (posix|os)\.system"):
            Classify(dataset="cifar10", data=str(folder))
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Exploit(marker)))  # the exploit itself works (the test can fail)
    assert marker.exists()


@pytest.mark.parametrize("payload", [b"\x80\x02N", b"garbage", pickle.dumps([1, 2])])
def test_truncated_or_foreign_cifar_pickle(tmp_path, payload):
    path = tmp_path / "test_batch"
    path.write_bytes(payload)
    with pytest.raises(UsageError, match="not a CIFAR-10 batch"):
        _cifar.read_batch(path)


# ------------------------------------------------- issue 23.10: output folders that are links
@pytest.fixture
def linked(crafted, tmp_path):
    """The crafted results folder, and a folder outside it that links will point to."""
    results, _ = crafted
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return results, elsewhere


@pytest.mark.parametrize("folder, command", [
    ("report", ["report", "{r}"]),
    ("leaderboard", ["leaderboard", "{r}"]),
    ("pictures", ["show", "{r}"]),
    ("artifacts", ["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                   "--seeds", "1", "--evals", "20", "--out", "{r}"]),
    ("leaderboard", ["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                     "--seeds", "1", "--evals", "20", "--out", "{r}"]),
])
def test_writers_refuse_a_linked_output_folder(linked, capsys, folder, command):
    results, elsewhere = linked
    if (results / folder).is_dir():
        shutil.rmtree(results / folder)
    (results / folder).symlink_to(elsewhere, target_is_directory=True)
    before = {p.name for p in (results / "runs").iterdir()}
    assert cli.main([part.format(r=results) for part in command]) == 2
    err = "".join(capsys.readouterr().err.split())  # rich may wrap inside a long path
    assert f"{results / folder}isasymboliclink" in err and "Removethelink" in err, err
    assert list(elsewhere.iterdir()) == []  # nothing written outside
    assert {p.name for p in (results / "runs").iterdir()} == before  # no run ran


def test_the_quarantine_is_never_a_link(linked, capsys):
    results, elsewhere = linked
    (results / "quarantine").symlink_to(elsewhere, target_is_directory=True)
    broken = results / "runs" / "broken.json"
    broken.write_text("{")
    assert cli.main(["leaderboard", str(results), "-o", str(results / "lb")]) == 0
    err = "".join(capsys.readouterr().err.split())
    assert "quarantineisasymboliclink" in err and "leftinplace" in err, err
    assert broken.exists() and list(elsewhere.iterdir()) == []


def test_a_link_inside_an_output_folder_is_refused(linked, capsys):
    """Not only the folder: any part below the results folder (leaderboard/tuned, a link
    planted in a folder written before)."""
    results, elsewhere = linked
    (results / "report").mkdir()
    (results / "report" / "deeper").symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["report", str(results), "-o", str(results / "report" / "deeper")]) == 2
    assert "isasymboliclink" in "".join(capsys.readouterr().err.split())
    assert list(elsewhere.iterdir()) == []


def test_an_explicit_output_folder_may_be_a_link(linked, capsys):
    """``-o LINK`` is the user's own choice (as the results folder itself may be a link)."""
    results, elsewhere = linked
    link = results.parent / "my-board"
    link.symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["leaderboard", str(results), "-o", str(link)]) == 0
    assert (elsewhere / "overall.csv").is_file()
