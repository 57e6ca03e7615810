"""The leaderboard's figures are drawn only when what they show changed, and in parallel when
there are many: a second ``zgbench leaderboard`` on the same results redraws nothing, new
records of one task redraw that task's figures (and the cross-task ones) only."""

from __future__ import annotations

from pathlib import Path

import pytest

from zgbench import leaderboard
from zgbench.store import ResultStore
from tests.test_leaderboard import _record


def _results(tmp_path, tasks=("t1", "t2")):
    store = ResultStore(tmp_path / "results")
    for task in tasks:
        for seed in range(2):
            for name, value in (("alpha", 3.0), ("beta", 2.0)):
                store.put(_record(task, name, seed, value + seed / 10))
    return tmp_path / "results"


def _stamps(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def test_a_second_write_redraws_nothing_and_new_records_redraw_their_task(tmp_path):
    results, out = _results(tmp_path), tmp_path / "lb"
    leaderboard.write(results, out)
    first = _stamps(out)
    assert {"t1.png", "t2.png", "win_rate.png", "profiles.png"} <= set(first)
    assert all(leaderboard._stored_key(out / name) for name in first)
    leaderboard.write(results, out)
    assert _stamps(out) == first  # same records, same code: every picture kept

    store = ResultStore(results)
    store.put(_record("t2", "alpha", 5, 0.5))  # a new run of t2 only
    leaderboard.write(results, out)
    again = _stamps(out)
    redrawn = {name for name in first if again[name] != first[name]}
    assert {"t2.png", "t2.profile.png", "profiles.png"} <= redrawn  # all tasks' ECDF too
    assert not redrawn & {"t1.png", "t1.profile.png"}


def test_a_picture_without_its_key_is_redrawn(tmp_path):
    results, out = _results(tmp_path, tasks=("t1",)), tmp_path / "lb"
    leaderboard.write(results, out)
    (out / "t1.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # replaced by something else
    leaderboard.write(results, out)
    assert leaderboard._stored_key(out / "t1.png")


def test_the_key_follows_the_arguments():
    frame = {"label": "t", "metric": "m", "direction": "min", "data": {}, "anchors": {}}
    one = leaderboard.Plot("plot_task", Path("a.png"), frame)
    assert one.key == leaderboard.Plot("plot_task", Path("b.png"), dict(frame)).key
    assert one.key != leaderboard.Plot("plot_task", Path("a.png"), {**frame, "direction": "max"}).key


def test_plots_drawn_in_a_pool_are_those_drawn_here(tmp_path, monkeypatch):
    results = _results(tmp_path)
    leaderboard.write(results, tmp_path / "here")
    plots = []
    draw = leaderboard.draw
    monkeypatch.setattr(leaderboard, "draw", lambda described, workers=None: plots.extend(described))
    leaderboard.write(results, tmp_path / "pool")  # described, not drawn
    assert draw(plots, workers=2) == len(plots) >= 6
    for plot in plots:
        here = tmp_path / "here" / plot.path.name
        assert leaderboard._stored_key(plot.path) == leaderboard._stored_key(here) == plot.key


@pytest.mark.parametrize("mathtext,plain", [
    (r"$\mathdefault{10^{-3}}$", "10⁻³"),
    (r"$\mathdefault{10^{12}}$", "10¹²"),
    (r"$\mathdefault{-2\times10^{1}}$", "\u22122×10¹"),
    (r"$\mathdefault{0}$", "0"),
    (r"$\mathdefault{10^{0.30}}$", r"$\mathdefault{10^{0.30}}$"),  # not one of ours: as it is
    ("", ""),
])
def test_log_ticks_as_plain_text(mathtext, plain):
    assert leaderboard.plain_tick(mathtext) == plain
