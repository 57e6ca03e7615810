"""scripts/gpu-check.sh on the CPU at its smallest sizes (no GPU is lent to the CI): the JSON
names every registered task and optimizer, each checked, and the Markdown report is written;
a failing or hanging item or section is recorded and the rest go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_gpu_check_on_cpu_small(tmp_path, registry):
    out = tmp_path / "report"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--device", "cpu", "--small",
         "--only", "env,tasks-quick,optimizers", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"env", "tasks-quick", "optimizers"}

    tasks = {item["item"].split("[")[0]: item for item in sections["tasks-quick"]["items"]}
    assert set(tasks) == set(registry.tasks)
    for name, item in tasks.items():
        assert item["status"] == "ok", (name, item.get("error"))
        data = item["data"]
        assert data["agree"] and data["rel_diff"] <= data["tolerance"], (name, data)
        assert data["evals_per_s"] > 0 and data["peak_mib"] is None  # n/a on the CPU
        assert data["why"]  # every tolerance says why

    optimizers = {item["item"]: item for item in sections["optimizers"]["items"]}
    assert set(registry.optimizers) <= set(optimizers)
    for name, item in optimizers.items():
        assert item["status"] == "ok", (name, item.get("error"))
        assert item["data"]["steps"] >= 1, (name, item["data"])  # at least one whole step

    markdown = (out / "gpu-check.md").read_text()
    assert "## Tasks at the quick sizes" in markdown and "## Every optimizer" in markdown
    assert all(f"| {name} |" in markdown for name in registry.optimizers)
    assert json.loads((out / "machine.json").read_text())[0]["device_name"]


def test_failing_and_hanging_items_are_recorded(tmp_path):
    results = tmp_path / "items.jsonl"
    ctx = gpu_check.Context(gpu_check.Options(device="cpu", small=True), results, limit=6.0)
    ctx.plan(["bad", "slow", "good"])
    ctx.item("bad", lambda: 1 / 0, after=2)
    ctx.item("slow", lambda: time.sleep(30), after=1, factor=0.5)  # its limit: about 1 s
    ctx.item("good", lambda: {"x": 1})
    section: dict = {"items": []}
    assert gpu_check._read_items(results, section) == ["bad", "slow", "good"]
    bad, slow, good = section["items"]
    assert bad["status"] == "failed" and "ZeroDivisionError" in bad["error"]
    assert slow["status"] == "timeout" and slow["seconds"] < 5
    assert good["status"] == "ok" and good["data"] == {"x": 1}


def test_section_past_its_limit_is_killed_and_reported(tmp_path):
    opts = gpu_check.Options(device="cpu", small=True, out=str(tmp_path))
    (tmp_path / "options.json").write_text(json.dumps(opts.__dict__))
    t0 = time.perf_counter()
    section = gpu_check.run_section("tasks-quick", 0.5, opts, tmp_path)
    assert time.perf_counter() - t0 < 15
    assert section["status"] == "timeout" and "time ran out" in section["error"]
    report = {"options": opts.__dict__, "command": "test", "started": "now", "seconds": 1.0,
              "sections": {"tasks-quick": section}}
    gpu_check.write_outputs(report, tmp_path)
    markdown = (tmp_path / "gpu-check.md").read_text()
    assert "| tasks-quick | timeout |" in markdown and "was killed" in markdown


def test_stuck_item_is_killed_and_the_section_goes_on(tmp_path, monkeypatch):
    """An item stuck past its limit (native code: no Python time-out reaches it) costs that
    item only: its process is killed and a fresh one does the items after it."""
    calls = []

    def fake_child(name, limit, opts, scratch, skip, index):
        calls.append(list(skip))
        lines = [{"plan": ["a", "b", "c"]}]
        if index == 0:  # does a, hangs in b
            lines += [{"start": "a", "limit": 5, "at": 0}, {"item": "a", "status": "ok"},
                      {"start": "b", "limit": 5, "at": 0}]
            outcome = ("timeout", "item 'b' ran past its limit", "log of the first process")
        else:  # told to skip a and b, does c
            lines += [{"start": "c", "limit": 5, "at": 0}, {"item": "c", "status": "ok"}]
            outcome = ("ok", None, None)
        path = scratch / f"{name}.{index + 1}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return outcome

    monkeypatch.setattr(gpu_check, "_child", fake_child)
    section = gpu_check.run_section("env", 100.0, gpu_check.Options(device="cpu"), tmp_path)
    assert calls == [[], ["a", "b"]]
    items = {i["item"]: i for i in section["items"]}
    assert [items[k]["status"] for k in "abc"] == ["ok", "timeout", "ok"]
    assert "log of the first process" in items["b"]["error"]
    assert section["status"] == "timeout" and section["children"] == 2


def test_overrun_names_the_stuck_item(tmp_path):
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps({"start": "x", "limit": 1.0, "at": time.time() - 60}) + "\n")
    assert "'x'" in gpu_check._overrun(results)
    with results.open("a") as handle:
        handle.write(json.dumps({"item": "x", "status": "timeout"}) + "\n")
    assert gpu_check._overrun(results) is None
    results.write_text(json.dumps({"start": "y", "limit": 60.0, "at": time.time()}) + "\n")
    assert gpu_check._overrun(results) is None


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit, match="unknown section"):
        gpu_check.options_from(gpu_check.parse_args(["--only", "tasks,env"]))


def test_wrapper_help():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--help"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0 and "--small" in proc.stdout
