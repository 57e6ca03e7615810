"""Figures kept by a hash of what they show (zgbench.figcache): a rebuild from equal data
copies the picture instead of drawing it; any change in the data draws anew."""

import math

import numpy as np
import pandas as pd
import pytest

from zgbench import figcache, leaderboard


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZGBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "figures"


@pytest.fixture
def drawn(monkeypatch):
    """The paths plot_task really drew (matplotlib ran), in order."""
    calls = []
    original = leaderboard.plot_task

    def counting(label, metric, direction, data, path, anchors=None):
        calls.append(path)
        original(label, metric, direction, data, path, anchors)

    counting.__module__ = original.__module__  # keyed as the leaderboard's function
    counting.__qualname__ = original.__qualname__
    monkeypatch.setattr(leaderboard, "plot_task", counting)
    return calls


def _data(scale=1.0):
    values = np.array([300.0, 10.0, 1e-3]) * scale
    return {"a": pd.DataFrame({"calls": [0.0, 10.0, 20.0], "median": values,
                               "q25": values * 0.8, "q75": values * 1.2})}


def test_equal_data_is_copied_changed_data_is_drawn(tmp_path, cache, drawn):
    anchors = {"start": 300.0, "reference": math.nan, "reference_note": ""}
    first, second, third = tmp_path / "1.png", tmp_path / "out" / "2.png", tmp_path / "3.png"
    figcache.draw(leaderboard.plot_task, "t", "gap", "min", _data(), first, anchors)
    figcache.draw(leaderboard.plot_task, "t", "gap", "min", _data(), second, anchors)
    assert drawn == [first]  # the second came from the cache
    assert second.read_bytes() == first.read_bytes() and len(list(cache.glob("*.png"))) == 1
    # one number changed, the label, the anchors: each is drawn anew
    figcache.draw(leaderboard.plot_task, "t", "gap", "min", _data(1.0001), third, anchors)
    figcache.draw(leaderboard.plot_task, "u", "gap", "min", _data(), third, anchors)
    figcache.draw(leaderboard.plot_task, "t", "gap", "min", _data(), third,
                  {**anchors, "start": 301.0})
    assert drawn == [first, third, third, third]
    assert len(list(cache.glob("*.png"))) == 4


def test_an_argument_it_cannot_hash_draws_without_the_cache(tmp_path, cache):
    calls = []

    def plot(thing, path):
        calls.append(thing)
        path.write_bytes(b"png")

    figcache.draw(plot, object(), tmp_path / "a.png")
    figcache.draw(plot, object(), tmp_path / "b.png")
    assert len(calls) == 2 and (tmp_path / "b.png").read_bytes() == b"png"
    assert not list(cache.glob("*.png"))


def test_least_recently_used_figures_go(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(figcache, "MAX_FILES", 2)

    def plot(n, path):
        path.write_bytes(str(n).encode())

    for n in range(4):
        figcache.draw(plot, n, tmp_path / f"{n}.png")
    assert len(list(cache.glob("*.png"))) == 2
