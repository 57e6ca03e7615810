"""The leaderboard's figures, checked on the matplotlib objects they draw: diverged runs are
clipped (the other curves keep the axis), legends sit outside the axes, runtime ECDFs reach
the right edge, the win-rate matrix follows the board's order."""

import math

import numpy as np
import pandas as pd
import pytest

from zgbench import leaderboard
from zgbench.store import ResultStore
from tests.test_leaderboard import _record


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save (still holding their artists once closed)."""
    saved = []
    original = leaderboard.save_plot

    def capture(fig, path, tight=True):
        original(fig, path, tight)  # draws it: legend and axes extents are laid out
        saved.append(fig)

    monkeypatch.setattr(leaderboard, "save_plot", capture)
    return saved


def _curve(values, calls=None):
    values = np.asarray(values, dtype=float)
    calls = np.arange(len(values)) * 10.0 if calls is None else calls
    return pd.DataFrame({"calls": calls, "median": values, "q25": values * 0.8,
                         "q75": values * 1.2})


def test_diverged_run_is_clipped_and_the_others_keep_the_axis(tmp_path, figures):
    data = {"good": _curve([300.0, 10.0, 1e-3, 1e-6]), "slow": _curve([300.0, 200.0, 100, 50]),
            "blown": _curve([300.0, 1e20, 1e38, math.nan]),
            "exact": _curve([300.0, 5.0, 0.0, 0.0])}
    leaderboard.plot_task("rosenbrock", "gap", "min", data, tmp_path / "r.png")
    (fig,) = figures
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert high < 1e8  # 1e38 would put every other curve on one flat line
    assert low == 0 and ax.get_yscale() == "symlog"  # the exact optimum (0) is on the axis
    assert ax.yaxis.get_transform().linthresh == pytest.approx(1e-7)  # 0.8e-6 rounded down
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "blown (diverged: clipped)" in labels and "good" in labels
    assert "clipped" in ax.get_title()
    steps = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert np.nanmax(steps["blown (diverged: clipped)"]) <= high
    assert (tmp_path / "r.png").stat().st_size > 0


def test_positive_curves_keep_a_log_axis_and_nothing_is_clipped(tmp_path, figures):
    data = {"a": _curve([4.0, 2.0, 1.0]), "b": _curve([4.0, 8.0, 0.5])}  # b overshoots a bit
    leaderboard.plot_task("t", "loss", "min", data, tmp_path / "t.png")
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "log" and "clipped" not in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_a_long_legend_is_outside_the_axes_in_columns(tmp_path, figures):
    data = {f"optimizer-{i:02d}": _curve([10.0, 10.0 / (i + 2)]) for i in range(29)}
    leaderboard.plot_task("t", "loss", "min", data, tmp_path / "t.png")
    fig = figures[0]
    ax, legend = fig.axes[0], fig.axes[0].get_legend()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # a closed figure lost its canvas
    fig.draw(renderer)
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert legend._ncols == 2 and len(legend.get_texts()) == 29


def test_profile_curves_run_flat_to_the_right_edge(tmp_path, figures):
    frame = pd.DataFrame({"scope": "t", "optimizer": ["early", "early", "late"],
                          "x": [5.0, 20.0, 400.0], "x_kind": "oracle_calls",
                          "fraction": [0.2, 0.4, 0.9]})
    leaderboard.plot_profile(frame, "t", "oracle calls", tmp_path / "p.png", right=1000.0)
    ax = figures[0].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert ax.get_xlim()[1] == 1000.0
    assert lines["early"].get_xdata()[-1] == 1000.0 and lines["early"].get_ydata()[-1] == 0.4
    assert lines["late"].get_xdata()[-1] == 1000.0 and lines["late"].get_ydata()[-1] == 0.9
    leaderboard.plot_profile(frame, "t", "oracle calls", tmp_path / "q.png")  # no budget given
    assert all(line.get_xdata()[-1] == 400.0 for line in figures[1].axes[0].get_lines())


def test_board_order_main_by_position_then_partial_by_mean_rank():
    overall = pd.DataFrame({"position": pd.array([2, 1, pd.NA, pd.NA], dtype="Int64"),
                            "optimizer": ["a", "z", "m", "b"],
                            "board": ["main", "main", "partial", "partial"],
                            "mean_rank": [2.0, 1.5, 3.0, 1.0]})
    assert leaderboard.board_order(overall) == ["z", "a", "b", "m"]


def test_win_rate_matrix_is_in_rank_order(tmp_path, figures):
    store = ResultStore(tmp_path / "results")
    for seed in range(3):  # ranks: zeta < beta < alpha, the reverse of the names
        for name, value in (("alpha", 3.0), ("beta", 2.0), ("zeta", 1.0)):
            for task in ("t1", "t2"):
                store.put(_record(task, name, seed, value + seed / 10))
    written = leaderboard.write(tmp_path / "results", tmp_path / "lb")
    assert list(written["overall"]["optimizer"]) == ["zeta", "beta", "alpha"]
    (ax, _colorbar) = next(f for f in figures if "win rate" in f.axes[0].get_title()).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["zeta", "beta", "alpha"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["zeta", "beta", "alpha"]
    cells = [t.get_text() for t in ax.texts]  # row-major, the empty diagonal skipped
    assert cells[:3] == ["1.00", "1.00", "0.00"]  # zeta beats beta, alpha; beta loses to zeta
