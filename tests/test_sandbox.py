"""--isolate as a boundary (issue 24.3-4): the optimizer in a sandboxed process of its own,
the task and the ledger in the trusted worker, plain data on the wire between them.

Honest optimizers give the records they give in-process; every cheat of
tests/cheats_isolate.py ends violated or failed, or is counted honestly, and none ranks above
random-search on sphere[dim=10] at 1,000 evaluations."""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/cheats_isolate.py, importable by workers
import cheats_isolate  # noqa: E402

from zgbench import leaderboard, plugins, specs  # noqa: E402
from zgbench.budget import Budget  # noqa: E402
from zgbench.executors import PoolExecutor  # noqa: E402
from zgbench.harness import execute, plan, run_all  # noqa: E402
from zgbench.sandbox import bwrap, wire  # noqa: E402
from zgbench.store import ResultStore  # noqa: E402

BWRAP = bwrap.unavailable() is None
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"no bubblewrap sandbox here: "
                                 f"{bwrap.unavailable()}")


@pytest.fixture(scope="module")
def reg():
    return plugins.load(extra_plugins=[cheats_isolate])


def _plan(reg, task: str, optimizers: list[str], evals: int, seeds: int = 1):
    return plan([(specs.resolve_task(reg, task), Budget(evals=evals),
                  [specs.resolve_optimizer(reg, o) for o in optimizers])], seeds=seeds)


def _isolated(reg, runs, results: Path, workers: int = 2) -> dict[str, dict]:
    with PoolExecutor(workers=workers, isolate=True, threads=1, timeout=300) as executor:
        return {run.run_id: record.as_dict()
                for run, record in executor.map(runs, reg, results)}


#: What differs between two runs of the same code: clocks, dates, the process's environment.
TIMINGS = {"seconds", "task_seconds", "optimizer_seconds", "seconds_wall", "seconds_ledger",
           "seconds_charged", "started", "finished", "duration", "environment"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


# ------------------------------------------------------------------------ honest optimizers
def test_honest_records_are_identical_in_and_out_of_isolation(reg, tmp_path):
    runs = (_plan(reg, "sphere[dim=10]", ["random-search", "cma-es", "cge", "zerograds"], 300)
            + _plan(reg, "step[dim=10]", ["random-search", "zerograds"], 300))
    isolated = _isolated(reg, runs, tmp_path)
    for run in runs:
        inside = isolated[run.run_id]
        outside = execute(run, reg).as_dict()
        assert inside["status"] == outside["status"] == "ok", inside.get("error")
        assert inside["audit"]["evals_performed"] == 300 and not inside["audit"]["violations"]
        assert _without_timings(inside) == _without_timings(outside), run.describe()


def test_capability_results_cross_as_plain_data_or_handles(reg, tmp_path):
    """cge[reuse=true] on classify: ``layers`` returns named tuples (they cross) and a trace
    of the forward pass (a handle, passed back): the same record as in-process."""
    runs = _plan(reg, "classify", ["cge[reuse=true]"], 200)
    inside = next(iter(_isolated(reg, runs, tmp_path, workers=1).values()))
    assert inside["status"] == "ok", inside["error"]
    assert _without_timings(inside) == _without_timings(execute(runs[0], reg).as_dict())


def test_fallback_to_process_separation_is_said_once_and_identical(reg, tmp_path, monkeypatch):
    """Forced fallback (no bubblewrap): said once, and the same records."""
    from zgbench import executors

    monkeypatch.setenv(bwrap.ENV, "process")
    monkeypatch.setattr(executors, "_SAID_NO_BWRAP", [])
    runs = _plan(reg, "sphere[dim=10]", ["random-search", "cma-es"], 200)
    with pytest.warns(UserWarning, match="without the bubblewrap sandbox") as caught:
        isolated = _isolated(reg, runs, tmp_path)
        isolated.update(_isolated(reg, runs[:1], tmp_path / "again"))
    assert len([w for w in caught if "bubblewrap" in str(w.message)]) == 1
    for run in runs:
        assert _without_timings(isolated[run.run_id]) == _without_timings(
            execute(run, reg).as_dict())


def test_threads_of_one_optimizer_share_the_socket(reg, tmp_path):
    runs = _plan(reg, "sphere[dim=10]", ["honest-threads"], 1000)
    record = next(iter(_isolated(reg, runs, tmp_path, workers=1).values()))
    assert record["status"] == "ok" and not record["audit"]["violations"], record["error"]
    assert record["audit"]["evals_performed"] == record["audit"]["evals_charged"] == 1000


def test_bwrap_hides_folders_and_files(tmp_path, monkeypatch):
    folder, key = Path(__file__).parent, Path(__file__)  # outside /tmp, which is private
    command = bwrap.wrap(["true"], [folder, key, tmp_path], gpu=False)
    assert command[command.index(str(folder.resolve())) - 1] == "--tmpfs"
    assert command[command.index(str(key.resolve())) - 2:][:2] == ["--ro-bind", "/dev/null"]
    assert str(tmp_path) not in command and "--unshare-all" in command
    assert command[command.index("--") - 1] != "--dev-bind"


def test_a_checkout_below_tmp_is_bound_back_over_the_private_tmp(tmp_path, monkeypatch):
    """A clone and venv under /tmp (as a CI job's may be) stay visible, read-only, to the
    optimizer; a hidden folder inside them is still hidden; /tmp itself is never bound."""
    if not str(tmp_path.resolve()).startswith("/tmp/"):
        pytest.skip("pytest's tmp_path is not below /tmp here")
    checkout = tmp_path
    (checkout / "repo" / "results").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(checkout / "repo"), "/tmp", *sys.path])
    command = bwrap.wrap(["true"], [checkout / "repo" / "results"], gpu=False)
    binds = [command[i + 1] for i, c in enumerate(command) if c == "--ro-bind"]
    assert str((checkout / "repo").resolve()) in binds and "/tmp" not in binds[1:]
    hidden = command.index(str((checkout / "repo" / "results").resolve()))
    assert command[hidden - 1] == "--tmpfs" and hidden > command.index("--ro-bind", 3)


def test_required_bwrap_that_does_not_work_is_a_usage_error(monkeypatch):
    from zgbench.errors import UsageError

    monkeypatch.setenv(bwrap.ENV, "bwrap")
    monkeypatch.setattr(bwrap, "unavailable", lambda: "bubblewrap is not installed")
    with pytest.raises(UsageError, match="ZGBENCH_SANDBOX=process"):
        bwrap.resolve()
    monkeypatch.setenv(bwrap.ENV, "chroot")
    with pytest.raises(UsageError, match="auto, bwrap, process"):
        bwrap.resolve()


# ---------------------------------------------------------------------------- the wire
def test_the_wire_carries_plain_data_only():
    class Spy(torch.Tensor):
        pass

    batch = torch.arange(6, dtype=torch.float32).reshape(2, 3).as_subclass(Spy)
    value = {"a": [1, 2.5, None, "x", float("inf")], "t": (batch, np.ones(2)),
             "s": slice(1, None), "b": torch.ones(2, dtype=torch.bfloat16)}
    doc, arrays = wire.encode(value)
    back = wire.decode(doc, [bytes(a) for a in arrays])
    assert type(back["t"][0]) is torch.Tensor and torch.equal(back["t"][0], batch.as_subclass(
        torch.Tensor))
    assert type(back["t"][1]) is np.ndarray and back["s"] == slice(1, None)
    assert back["a"] == [1, 2.5, None, "x", float("inf")] and back["b"].dtype == torch.bfloat16
    with pytest.raises(wire.WireError, match="not plain data"):
        wire.encode(object())
    from collections import namedtuple

    part = namedtuple("LayerSlice", "name start stop")("conv1", 0, 10)
    doc, arrays = wire.encode([part])
    (mine,) = wire.decode(doc, [])
    assert mine.start == 0 and tuple(mine) == ("conv1", 0, 10)
    assert type(wire.decode(doc, [], wire.Handles())[0]) is tuple  # trusted side: no class


@pytest.mark.parametrize("doc, blobs, match", [
    (b"{not json", [], "not valid JSON"),
    (b'{"~a": 0, "k": "torch", "dt": "float32", "sh": [3]}', [b"\0" * 8], "cannot have"),
    (b'{"~a": 0, "k": "torch", "dt": "object", "sh": [1]}', [b"\0" * 8], "malformed array"),
    (b'{"~p": "os.system"}', [], "unknown tag"),
    (b"[1, 2]", [b"\0"], "no part of it refers"),
    (b'{"~h": 1}', [], "unknown handle"),
    (b"[" * 40 + b"]" * 40, [], "nested too deeply"),
])
def test_a_malformed_message_is_refused(doc, blobs, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(doc, blobs, wire.Handles())


def test_a_frame_past_the_limits_is_refused():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire._HEAD.pack(wire.MAGIC, wire.MAX_JSON + 1, 0))
        with pytest.raises(wire.WireError, match="too large"):
            wire.receive(b)
        a.sendall(b"HTTP" + b"\0" * 8)
        with pytest.raises(wire.WireError, match="bad message header"):
            wire.receive(b)


# ---------------------------------------------------------------------------- the cheats
SCORED = ["cheat-rebuild", "cheat-fork", "cheat-ledger", "cheat-patch", "cheat-subclass",
          "cheat-garbage", "cheat-memory", "cheat-thread"]


@needs_bwrap
def test_no_cheat_gains_anything_under_isolation(reg, tmp_path):
    results = tmp_path / "results"
    runs = _plan(reg, "sphere[dim=10]", SCORED + ["random-search"], 1000)
    records = _isolated(reg, runs, results)
    by_name = {r["optimizer"]["name"]: r for r in records.values()}
    for name, record in by_name.items():
        audit = record["audit"]
        assert record["status"] in ("ok", "violated", "failed"), name
        assert audit["evals_performed"] == audit["evals_charged"] <= 1000, (name, audit)
        assert not audit["budget_exceeded"], name
    assert by_name["cheat-garbage"]["status"] == "violated"
    assert "malformed" in by_name["cheat-garbage"]["error"]
    assert by_name["random-search"]["status"] == "ok"
    store = ResultStore(results)
    for record in records.values():
        store.put(record)
    table = leaderboard.task_table(leaderboard.runs_frame(list(ResultStore(results))))
    honest = table.loc[table["optimizer"] == "random-search", "rank"].item()
    for _, row in table.iterrows():
        if row["optimizer"] != "random-search":
            assert row["rank"] > honest, table


@needs_bwrap
def test_forks_are_charged_and_end_with_the_run(reg, tmp_path):
    runs = _plan(reg, "sphere[dim=10]", ["cheat-fork"], 1000)
    record = next(iter(_isolated(reg, runs, tmp_path).values()))
    audit = record["audit"]
    # every fork's calls are charged to the run; forks talking at once on the one socket may
    # garble a message (then the run ends violated) or a fork may read another's answer
    assert audit["evals_performed"] == audit["evals_charged"] <= 1000
    assert record["status"] in ("ok", "violated", "failed") and not audit["budget_exceeded"]
    assert record["status"] != "ok" or audit["evals_performed"] > 100  # the forks did spend


@pytest.mark.parametrize("mode", ["bwrap", "process"])
def test_no_process_or_thread_outlives_its_run(reg, tmp_path, monkeypatch, mode):
    """A fork in a session of its own (out of the process group) dies with the run: with
    its PID namespace under bwrap, as an orphan the trusted worker reaps (its subreaper)
    without; a non-daemon thread does not hold the run open."""
    if mode == "bwrap" and not BWRAP:
        pytest.skip(f"no bubblewrap sandbox here: {bwrap.unavailable()}")
    monkeypatch.setenv(bwrap.ENV, mode)
    assert not cheats_isolate.lingering()
    runs = _plan(reg, "sphere[dim=4]", ["cheat-linger"], 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback says so once
        record = next(iter(_isolated(reg, runs, tmp_path, workers=1).values()))
    assert record["status"] == "ok", record["error"]
    assert not cheats_isolate.lingering()


@needs_bwrap
def test_a_plugin_cannot_rewrite_records_on_disk(reg, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / cheats_isolate.MARKER).write_text("here")
    honest = _plan(reg, "sphere[dim=10]", ["random-search"], 100)
    run_all(honest, reg, results, PoolExecutor(workers=1, isolate=True, threads=1))
    before = {p.name: p.read_bytes() for p in (results / "runs").glob("*.json")}
    run_all(_plan(reg, "sphere[dim=10]", ["cheat-rewrite"], 100), reg, results,
            PoolExecutor(workers=1, isolate=True, threads=1))
    after = {p.name: p.read_bytes() for p in (results / "runs").glob("*.json")}
    assert all(after[name] == data for name, data in before.items())
    assert all(json.loads(d)["status"] == "ok" for d in after.values())


@needs_bwrap
def test_nothing_carries_over_between_isolated_runs(reg, tmp_path):
    """The memory cheat keeps its best θ in a module global and a file; a leftover thread
    haunts its process. Run twice, each run is the first: same record; the honest run after
    the thread is not violated."""
    existed = cheats_isolate.MEMORY.exists()
    runs = _plan(reg, "sphere[dim=10]", ["cheat-memory"], 200)
    first = _isolated(reg, runs, tmp_path / "a", workers=1)
    second = _isolated(reg, runs, tmp_path / "b", workers=1)
    assert _without_timings(first) == _without_timings(second)
    assert cheats_isolate.MEMORY.exists() == existed  # its file went to a private /tmp
    thread_then_honest = _plan(reg, "sphere[dim=10]", ["cheat-thread", "random-search"], 200)
    records = _isolated(reg, thread_then_honest, tmp_path / "c", workers=1)
    assert all(r["status"] == "ok" and not r["audit"]["violations"] for r in records.values())


@needs_bwrap
def test_the_optimizer_sees_no_network_and_a_read_only_disk(reg, tmp_path, monkeypatch):
    """... nor the results folder, nor the task's source, nor a file the organizer hides
    (an instance key: here tests/cheats_patch.py stands for one)."""
    monkeypatch.setenv(bwrap.HIDE_ENV, str(Path(__file__).with_name("cheats_patch.py")))
    results = tmp_path / "results"
    results.mkdir()
    (results / cheats_isolate.MARKER).write_text("here")
    runs = _plan(reg, "sphere[dim=4]", ["cheat-probe"], 20)
    record = next(iter(_isolated(reg, runs, results, workers=1).values()))
    assert record["status"] == "failed"
    facts = json.loads(record["error"].strip().splitlines()[-1].split("PROBE ", 1)[1])
    assert facts["network"].startswith("OSError") and facts["write_disk"].startswith("OSError")
    assert facts["results_visible"] is False and facts["tasks_importable"] is False
    assert facts["tmp_private"] is True and facts["hidden_file_bytes"] <= 0


def _install_as_entry_point(folder: Path) -> dict[str, str]:
    """tests/cheats_patch.py as an installed plugin (a dist-info with an entry point) for a
    subprocess's ``sys.path`` only; the environment that makes it visible."""
    info = folder / "cheat_patch-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cheat-patch\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zgbench]\ncheat-patch = cheats_patch\n")
    path = os.pathsep.join([str(folder), str(Path(__file__).parent), *sys.path])
    return dict(os.environ, PYTHONPATH=path)


def _cli(env: dict[str, str], out: Path, *flags: str) -> dict[str, dict]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "zgbench", "run", "--tasks", "sphere[dim=10]", "--optimizers",
         "random-search,cheat-import", "--evals", "1000", "--seeds", "1", "--threads", "1",
         "--no-leaderboard", "--out", str(out), *flags],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return {r["optimizer"]["name"]: r for r in ResultStore(out)}


@needs_bwrap
def test_a_plugin_patching_zgbench_at_import_patches_only_its_own_process(tmp_path):
    env = _install_as_entry_point(tmp_path / "site")
    # in-process the patch wins: random-search sabotaged, the honest record rewritten
    control = _cli(env, tmp_path / "inprocess", "--in-process")
    assert "sigma=50" in control["random-search"]["optimizer"]["canonical"]
    assert control["random-search"]["status"] == "violated"
    records = _cli(env, tmp_path / "isolated", "--isolate", "--workers", "2")
    honest = records["random-search"]
    assert honest["status"] == "ok" and "sigma=0.3" in honest["optimizer"]["canonical"]
    cheat = records["cheat-import"]
    assert cheat["status"] == "violated" and "malformed" in cheat["error"]
    assert cheat["audit"]["violations"]


def test_the_instance_key_file_is_hidden_from_optimizers(reg, tmp_path, monkeypatch):
    """zgbench run --isolate --instances secret --instance-key-file KEY: KEY joins the paths
    the optimizers' sandbox hides."""
    from zgbench.commands import run as run_command
    from zgbench.sandbox import runner

    monkeypatch.delenv(bwrap.HIDE_ENV, raising=False)  # restored afterwards
    key = tmp_path / "organizer.key"
    run_command._hide_from_optimizers(str(key))
    runs = _plan(reg, "sphere[dim=4]", ["random-search"], 10)
    settings = runner.settings("bwrap", runs, reg, tmp_path / "results", lambda plugin: None)
    assert str(key) in settings.hide and str(tmp_path / "results") in settings.hide
