"""A new user's install: the wheel with only the `dfo` extra, in a fresh virtual environment,
run from another folder. `zgbench run` with no arguments must run what is installed and
skip, with the install line, the tasks whose extra is missing (here `pde` and `graphics`).

This is the real thing, not a monkeypatched import: it builds the wheel, creates the venv
and installs into it (about 45 s with pip's cache, then 30 s for the run). The venv gets no
pip of its own (this pip installs into it with --python) and pip compiles no bytecode ahead
(--no-compile: Python compiles what the run imports, a fraction of torch's files): the same
install without ensurepip and without compiling every installed file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"  # no network round trip per pip call
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def test_wheel_with_only_the_dfo_extra_runs_what_is_installed(tmp_path):
    wheels = tmp_path / "wheels"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
                 str(ROOT))
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("zgbench-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # torch first, pinned (a plain requirement could pull a CUDA build), as scripts/setup.sh
    for requirement in ("torch==2.13.0", f"{wheel}[dfo]"):
        install = _run(sys.executable, "-m", "pip", "--python", str(python), "install",
                       "--quiet", "--no-compile", requirement)
        assert install.returncode == 0, install.stderr[-3000:]
    where = tmp_path / "elsewhere"  # not the checkout: no tasks/ folder beside it
    where.mkdir()
    zgbench = str(env_dir / "bin" / "zgbench")
    run = _run(zgbench, "run", "--seeds", "1", "--out", "res", cwd=where)
    assert run.returncode == 0, run.stderr[-3000:]
    err = " ".join(run.stderr.split())  # rich folds long lines
    assert "task 'pde-sol' needs the extra pde" in err and "pip install 'zgbench[pde]'" in err
    assert "pip install 'zgbench[graphics]'" in err  # radiosity: Mitsuba is not installed
    records = [json.loads(p.read_text()) for p in (where / "res" / "runs").glob("*.json")]
    assert len(records) > 50 and not [r for r in records if r["status"] == "failed"]
    assert {r["task"]["name"] for r in records} >= {"sphere", "classify", "mesh-fit"}
    assert (where / "res" / "leaderboard" / "overall.csv").is_file()
    listing = _run(zgbench, "list", "tasks", cwd=where)
    assert "zgbench[pde]" in "".join(listing.stdout.split()).replace("│", "")
