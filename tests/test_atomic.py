"""Half-written files (issue 23.11): on a full disk every output is whole or absent, never
cut off: a task's pictures, the leaderboard's figures and tables, records.

The disk is a real tiny tmpfs where this process may mount one (root on Linux); elsewhere
those tests skip, and the ones that inject ENOSPC into the writer run everywhere."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import faults  # noqa: E402

from zgbench import leaderboard, plugins, specs  # noqa: E402
from zgbench.budget import Budget  # noqa: E402
from zgbench.executors import InProcessExecutor  # noqa: E402
from zgbench.harness import plan, run_all  # noqa: E402
from zgbench.store import ResultStore  # noqa: E402


@pytest.fixture(scope="module")
def registry():
    return plugins.load(extra_plugins=[faults])


def _mount(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: room for records and tables, not for a 1 MiB picture."""
    disk = tmp_path / "disk"
    if not _mount(disk, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _run(registry, results: Path, task: str, seeds: int = 1):
    runs = plan([(specs.resolve_task(registry, task), Budget(evals=20),
                  [specs.resolve_optimizer(registry, "random-search")])], seeds=seeds)
    return run_all(runs, registry, results, InProcessExecutor())


def _leftovers(root: Path) -> list[Path]:
    """Temporary files and folders of atomic writes left behind."""
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".old"))]


def test_a_picture_cut_off_by_a_full_disk_is_not_kept(registry, small_disk):
    summary = _run(registry, small_disk, "drawing[dim=2]")
    assert summary.failed == 1
    record = next(iter(ResultStore(small_disk)))  # the record still fits: the run is failed
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not list(small_disk.rglob("result.png")) and not _leftovers(small_disk)
    assert record["artifacts"] == []


def test_a_picture_that_fits_is_moved_into_place(registry, tmp_path):
    summary = _run(registry, tmp_path, "drawing[dim=2,size=100000]")
    assert summary.done == 1
    record = next(iter(ResultStore(tmp_path)))
    paths = [tmp_path / rel for rel in record["artifacts"]]
    assert [p.name for p in paths] == ["result.png", "recommendation.npy"]
    assert paths[0].stat().st_size == 100000 // 2**16 * 2**16 + 2**16
    assert not _leftovers(tmp_path)


def test_figures_and_tables_on_a_full_disk_are_whole_or_absent(registry, small_disk, tmp_path):
    _run(registry, small_disk, "sphere[dim=2]", seeds=2)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk, then free about 24 KiB:
        try:                                      # tables fit, figures do not
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(size - 24 * 2**10, 0))
    with pytest.raises(OSError) as caught:
        leaderboard.write(small_disk, small_disk / "leaderboard")
    assert caught.value.errno == errno.ENOSPC
    for png in (small_disk / "leaderboard").glob("*.png"):  # any that fit is complete
        assert png.read_bytes().endswith(b"IEND\xaeB`\x82"), png
    assert not _leftovers(small_disk)


def test_a_writer_failing_half_way_leaves_nothing(tmp_path, monkeypatch):
    """Without a tmpfs: the low-level write fails with ENOSPC after part of the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zgbench import outputs

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        outputs.save_figure(fig, tmp_path / "plot.png")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []


def test_a_task_failing_half_way_through_its_pictures_leaves_nothing(tmp_path):
    from zgbench import outputs

    def draw(where):
        path = Path(where) / "result.png"
        with open(path, "wb") as f:
            f.write(b"\x89" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "result.png").write_bytes(b"old")
    with pytest.raises(OSError):
        outputs.task_pictures(draw, tmp_path / "pics")
    assert (tmp_path / "pics" / "result.png").read_bytes() == b"old"  # the old one stays
    assert [p.name for p in tmp_path.iterdir()] == ["pics"]
