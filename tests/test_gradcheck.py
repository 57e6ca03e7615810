"""zgbench gradcheck: references, statistics, equal evaluation counts, skips, CLI output."""

import csv
import math

import pytest
import torch

from zgbench import gradcheck, specs
from zgbench.cli import main
from zgbench.tasks.synthetic import Sphere




def test_statistics_of_known_estimates():
    ref = torch.tensor([3.0, 4.0])
    estimates = torch.tensor([[3.0, 4.0], [3.0, 4.0]]) * 2  # twice the gradient, no noise
    stats = gradcheck.statistics(estimates, ref)
    assert stats["cosine"] == pytest.approx(1.0) and stats["variance"] == 0
    assert stats["bias"] == pytest.approx(5.0) and stats["scale"] == pytest.approx(2.0)
    noisy = torch.tensor([[4.0, 4.0], [2.0, 4.0]])  # unbiased, variance 2 in x
    stats = gradcheck.statistics(noisy, ref)
    assert stats["bias"] == 0 and stats["variance"] == pytest.approx(2.0)
    assert stats["rel_std"] == pytest.approx(math.sqrt(2) / 5)


def test_smoothed_reference_of_a_sphere_is_its_gradient():
    """Smoothing a quadratic does not change its gradient: the reference must find 2z."""
    task = Sphere(dim=4, seed=0)
    theta = task.initial()
    ref = gradcheck.smoothed_gradient(task, theta, 0, sigma=0.3, pairs=20_000,
                                      generator=torch.Generator().manual_seed(0))
    exact = 2 * (theta - task.x_star)
    assert torch.allclose(ref.grad, exact, rtol=0.05, atol=0.05)
    assert ref.rel_stderr < 0.02 and ref.label.startswith("smoothed(sigma=0.3")


def test_equal_evaluations_and_skips(registry):
    tasks = [specs.resolve_task(registry, "sphere[dim=4]")]
    opts = [specs.resolve_optimizer(registry, o)
            for o in ("cge", "rge[q=4]", "smoothing", "zerograds[batch=5]", "random-search")]
    settings = gradcheck.Settings(evals=(3, 100), samples=4, points=2)
    rows = gradcheck.run(registry, tasks, opts, settings)
    skipped = [r for r in rows if r.status == "skipped"]
    assert [r.optimizer for r in skipped] == ["random-search"]
    ok = {(r.optimizer, r.point, r.evals_target): r for r in rows if r.status == "ok"}
    assert len(ok) == 4 * 2 * 2
    assert all(r.reference == "autodiff" for r in ok.values())
    assert ok[("cge", 0, 100)].evals == 100 and ok[("cge", 0, 3)].evals == 5  # d + 1 = 5 > 3
    assert ok[("smoothing", 0, 3)].evals == 2 and ok[("zerograds[batch=5]", 0, 3)].evals == 10
    assert ok[("cge", 1, 100)].cosine == pytest.approx(1.0, abs=1e-4)
    assert ok[("rge[q=4]", 0, 100)].evals == 100
    assert ok[("smoothing", 0, 100)].evals == 100
    assert ok[("zerograds[batch=5]", 0, 100)].evals == 100
    # more evaluations, less spread, for the random estimators
    for name in ("rge[q=4]", "smoothing"):
        assert ok[(name, 0, 100)].rel_std < ok[(name, 0, 3)].rel_std


def test_deterministic(registry):
    tasks = [specs.resolve_task(registry, "step[dim=3]")]
    opts = [specs.resolve_optimizer(registry, "smoothing")]
    settings = gradcheck.Settings(evals=(20,), samples=3, points=1, reference_samples=500)
    a = gradcheck.run(registry, tasks, opts, settings)
    b = gradcheck.run(registry, tasks, opts, settings)
    strip = lambda rows: [{k: v for k, v in vars(r).items() if k != "seconds"} for r in rows]
    assert strip(a) == strip(b)


def test_cli_writes_csv_and_plot(tmp_path):
    code = main(["gradcheck", "--tasks", "step[dim=4],sphere[dim=3]", "--optimizers",
                 "fd,smoothing,zerograds[batch=2],random-search", "--evals", "8,40",
                 "--samples", "3", "--points", "2", "--reference-samples", "2000",
                 "-o", str(tmp_path)])
    assert code == 0
    with open(tmp_path / "gradcheck.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    step = [r for r in rows if r["task"].startswith("step") and r["status"] == "ok"]
    # each estimator is judged at its own σ: fd at --sigma, smoothing and zerograds at theirs
    sigma_of = {r["optimizer"]: r["reference_sigma"] for r in step}
    assert sigma_of == {"fd": "0.25", "smoothing": "0.5", "zerograds[batch=2]": "0.33"}
    assert {r["reference"] for r in step if r["optimizer"] == "fd"} == {
        "smoothed(sigma=0.25,pairs=2000)"}
    fd_on_step = [float(r["cosine"]) for r in step if r["optimizer"] == "fd"]
    smooth_on_step = [float(r["cosine"]) for r in step if r["optimizer"] == "smoothing"]
    assert all(c == 0 for c in fd_on_step)  # a plateau: central differences see nothing
    assert sum(smooth_on_step) / len(smooth_on_step) > 0.3
    assert sum(r["status"] == "skipped" for r in rows) == 2  # random-search on both tasks
    assert (tmp_path / "gradcheck.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv", [
    ["--evals", "0"], ["--evals", "ten"], ["--samples", "1"], ["--optimizers", "nope"],
    ["--device", "tpu"],
])
def test_bad_input_exits_2(tmp_path, argv):
    assert main(["gradcheck", "--tasks", "sphere[dim=2]", *argv, "-o", str(tmp_path)]) == 2


def test_smoothing_is_unbiased_against_its_own_sigma(registry):
    """PRDPT at σ 0.5 on a step function, judged against a σ 0.5 reference, shows no bias
    beyond its noise floor; against the σ 0.25 default it would read ~0.4 relative bias."""
    tasks = [specs.resolve_task(registry, "step[dim=2]")]
    opts = [specs.resolve_optimizer(registry, "smoothing[anneal=constant]")]
    settings = gradcheck.Settings(evals=(200,), samples=30, points=1, reference_samples=20_000)
    (row,) = gradcheck.run(registry, tasks, opts, settings)
    assert row.reference_sigma == 0.5 and "sigma=0.5" in row.reference
    assert row.bias < 4 * row.bias_floor + 3 * row.reference_rel_stderr * row.reference_norm
    assert row.scale == pytest.approx(1.0, abs=0.2)


def _row(point, rel_bias, cosine=0.5, rel_std=1.0):
    return gradcheck.Row("t", "fd", "ok", point=point, evals_target=10, evals=10.0,
                         reference_sigma=0.25, cosine=cosine, rel_bias=rel_bias, rel_std=rel_std)


def test_summary_is_median_and_range_not_mean():
    """One outlier point (relative bias 17) moves a mean, not the median; the range bounds stay
    non-negative for a non-negative quantity."""
    rows = [_row(0, 0.1), _row(1, 0.2), _row(2, 17.0)]
    (entry,) = gradcheck.summary(rows)
    assert entry["rel_bias"] == pytest.approx(0.2)
    assert entry["rel_bias_lo"] == pytest.approx(0.1) and entry["rel_bias_hi"] == 17.0
    assert entry["rel_bias_lo"] >= 0 and entry["reference_sigma"] == 0.25


def test_cli_table_is_per_point(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code = main(["gradcheck", "--tasks", "step[dim=2]", "--optimizers", "fd,smoothing",
                 "--evals", "10", "--samples", "2", "--points", "3", "--reference-samples",
                 "200", "-o", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "per point" in out
    table_lines = [line for line in out.splitlines() if "smoothing" in line and "│" in line]
    assert len(table_lines) == 3  # one line per point, not one mean
