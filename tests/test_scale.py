"""Step sizes relative to the task's scale (issue 22, item 1).

A task declares ``scale`` (a float, or a ``[d]`` tensor set in ``setup``); a step-size
parameter (``Param(relative=True)``) is a multiple of it unless written ``abs:VALUE``. These
tests run the real optimizers on real tasks and look at the candidates the optimizers send to
the task: the spread per coordinate must follow the scale (or not, for ``abs:``).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from zgbench import (Budget, BudgetExhausted, ContractError, GradientEstimator, Optimizer, Param,
                     Problem, Step, cli)
from zgbench import fingerprint, plugins, suite
from zgbench.executors import InProcessExecutor
from zgbench.harness import RunSpec, run_all
from zgbench.specs import resolve_optimizer, resolve_task
from zgbench.tasks.synthetic import Sphere

#: the two scales of :class:`TwoScaleSphere`'s halves
SMALL, LARGE = 0.01, 0.5


class TwoScaleSphere(Sphere):
    """A sphere whose first half of coordinates has scale 0.01 and second half 0.5, and
    which keeps every batch it is asked to evaluate (the optimizers' candidates)."""

    name = "two-scale-sphere"

    def setup(self) -> None:
        super().setup()
        half = self.dim // 2
        self.scale = torch.cat([torch.full((half,), SMALL), torch.full((self.dim - half,), LARGE)])
        self.batches: list[torch.Tensor] = []

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        self.batches.append(thetas.clone())
        return super().loss(thetas, key)


@pytest.fixture(scope="module")
def registry():
    return plugins.load()


def _run(registry, task, spec: str, evals: int) -> Problem:
    opt_spec = resolve_optimizer(registry, spec)
    optimizer = registry.optimizer(opt_spec.name).cls(seed=0, **opt_spec.kwargs)
    problem = Problem(task, Budget(evals=evals))
    problem.start()
    with pytest.raises(BudgetExhausted):
        optimizer.run(problem)
    return problem


def _spread(task: TwoScaleSphere) -> tuple[float, float]:
    """The RMS offset of the first batch of candidates from θ₀ on each half (the
    checkpoints' evaluations are single rows)."""
    offsets = next(b for b in task.batches if b.shape[0] > 1) - task.initial()
    offsets = offsets[(offsets != 0).any(dim=1)]  # drop the incumbent (random-search's row 0)
    half = task.dim // 2
    rms = lambda part: float(part.pow(2).mean().sqrt())  # noqa: E731
    return rms(offsets[:, :half]), rms(offsets[:, half:])


@pytest.mark.parametrize("spec, default", [("random-search", 0.3), ("cma-es", 0.3),
                                           ("smoothing", 0.5)])
def test_relative_defaults_resolve_to_the_scale_on_two_tasks(registry, spec, default):
    name = resolve_optimizer(registry, spec).name
    param = {"random-search": "sigma", "cma-es": "sigma0", "smoothing": "sigma"}[name]
    value = registry.optimizer(name).cls.declared_params()[param].default
    assert value == Step(default)

    sphere = resolve_task(registry, "sphere[dim=8]")
    problem = Problem(registry.task("sphere").cls(**sphere.kwargs), Budget(evals=10))
    assert problem.step_parts(value) == (default, None)  # scale 1: exactly today's number
    assert torch.equal(problem.step(value), torch.full((8,), default))

    task = TwoScaleSphere(dim=64)
    problem = _run(registry, task, spec, evals=40)
    expected = torch.cat([torch.full((32,), default * SMALL), torch.full((32,), default * LARGE)])
    assert torch.allclose(problem.step(value), expected)
    small, large = _spread(task)
    # Gaussian offsets of σ·scale_i (smoothing: |τ| ~ σ·Rayleigh, RMS √2·σ), 32 coordinates
    # times the batch: within 40% of the expected RMS
    factor = 2**0.5 if name == "smoothing" else 1.0
    assert small == pytest.approx(default * SMALL * factor, rel=0.4)
    assert large == pytest.approx(default * LARGE * factor, rel=0.4)


@pytest.mark.parametrize("spec", ["random-search[sigma=abs:0.02]", "cma-es[sigma0=abs:0.02]"])
def test_an_absolute_step_ignores_the_scale(registry, spec):
    task = TwoScaleSphere(dim=64)
    problem = _run(registry, task, spec, evals=40)
    assert torch.equal(problem.step(Step(0.02, absolute=True)), torch.full((64,), 0.02))
    small, large = _spread(task)
    assert small == pytest.approx(0.02, rel=0.4) and large == pytest.approx(0.02, rel=0.4)


def test_classify_has_a_per_layer_scale_and_random_search_follows_it(registry):
    pytest.importorskip("sklearn")
    task = registry.task("classify").cls(width=4, batch=32)
    problem = Problem(task, Budget(evals=10))
    assert problem.scale.shape == (task.dim,) and bool((problem.scale > 0).all())
    layers = [float(problem.scale[lo]) for _, lo, _ in task.net.slices]
    assert len(set(layers)) == len(layers)  # one value per layer, and they differ
    for (_, lo, hi), value in zip(task.net.slices, layers):
        assert torch.all(problem.scale[lo:hi] == value)
    sigma = resolve_optimizer(registry, "random-search").kwargs["sigma"]
    assert torch.allclose(problem.step(sigma), 0.3 * problem.scale)
    factor, shape = problem.step_parts(sigma)
    assert factor == 0.3 and torch.equal(shape, problem.scale)


def test_spec_round_trip_and_labels(registry):
    spec = resolve_optimizer(registry, "random-search[sigma=abs:0.02]")
    assert spec.kwargs["sigma"] == Step(0.02, absolute=True)
    assert spec.canonical == "random-search[batch=16,sigma=abs:0.02]"
    assert spec.label == "random-search[sigma=abs:0.02]"
    assert resolve_optimizer(registry, spec.canonical) == spec
    assert resolve_optimizer(registry, spec.label) == spec
    relative = resolve_optimizer(registry, "random-search[sigma=0.05]")
    assert relative.kwargs["sigma"] == Step(0.05)
    assert relative.label == "random-search[sigma=0.05]"
    assert resolve_optimizer(registry, relative.canonical) == relative
    # the default prints as the plain number it always was: old run identities hold
    assert resolve_optimizer(registry, "random-search").canonical == \
        "random-search[batch=16,sigma=0.3]"
    # abs: at the default's number is another instance than the relative default
    assert resolve_optimizer(registry, "random-search[sigma=abs:0.3]").label == \
        "random-search[sigma=abs:0.3]"


def test_toml_abs_value(registry, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[suite]\nseeds = 1\n\n[[tasks]]\nspec = "sphere[dim=2]"\n'
                    'optimizers = [{ name = "random-search", params = { sigma = "abs:0.02" } },'
                    ' { name = "cma-es", params = { sigma0 = 0.1 } }, "smoothing[sigma=abs:0.4]"]\n')
    loaded = suite.load(str(path), registry)
    specs = {s.name: s for s in loaded.tasks[0].optimizers}
    assert specs["random-search"].kwargs["sigma"] == Step(0.02, absolute=True)
    assert specs["cma-es"].kwargs["sigma0"] == Step(0.1)
    assert specs["smoothing"].kwargs["sigma"] == Step(0.4, absolute=True)


@pytest.mark.parametrize("value", ["abs:x", "abs:", "abs:-0.1", "abs:nan", "abs:inf", "fast"])
def test_bad_step_values_exit_2_naming_the_syntax(value, capsys):
    argv = ["run", "--tasks", "sphere[dim=2]", "--optimizers", f"random-search[sigma={value}]",
            "--seeds", "1", "--evals", "10", "--no-leaderboard"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "sigma" in err and "abs:" in err


def test_relative_param_bounds_apply_to_its_value():
    param = Param(0.3, "σ", relative=True, le=1.0)
    param.name = "sigma"
    assert param.coerce("abs:0.5", "x") == Step(0.5, absolute=True)
    with pytest.raises(Exception, match="<= 1"):
        param.coerce("abs:2", "x")
    with pytest.raises(Exception, match="> 0"):  # a step is positive unless declared otherwise
        param.coerce("0", "x")
    assert str(Step(0.3)) == "0.3" and str(Step(0.02, True)) == "abs:0.02"
    assert Param(0.3, relative=True).describe().startswith("=0.3 x scale")


class PlainFloatSearch(Optimizer):
    """A third-party optimizer written before scales: a float σ, used as it is, and also
    passed to ``problem.step`` (a float is absolute there)."""

    name = "plain-float-search"
    sigma = Param(0.02, "absolute standard deviation", gt=0)

    def run(self, problem: Problem) -> None:
        assert torch.equal(problem.step(self.sigma), torch.full((problem.dim,), self.sigma))
        gen = self.generator(problem.device)
        best = problem.initial()
        while True:
            candidates = best + self.sigma * torch.randn(8, problem.dim, generator=gen)
            values = problem.loss(candidates)
            best = candidates[int(values.argmin())]
            problem.report(best)


def test_a_third_party_float_step_keeps_its_absolute_meaning():
    task = TwoScaleSphere(dim=64)
    problem = Problem(task, Budget(evals=16))
    problem.start()
    with pytest.raises(BudgetExhausted):
        PlainFloatSearch(sigma=0.02).run(problem)
    small, large = _spread(task)
    assert small == pytest.approx(0.02, rel=0.4) and large == pytest.approx(0.02, rel=0.4)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), "big"])
def test_a_bad_task_scale_breaks_the_contract(scale):
    class Bad(Sphere):
        name = "bad-scale"

        def setup(self) -> None:
            super().setup()
            self.scale = scale

    with pytest.raises(ContractError, match="scale"):
        Problem(Bad(dim=3), Budget(evals=1))
    with pytest.raises(ContractError, match="scale"):
        class Short(Sphere):
            name = "short-scale"
            scale = torch.ones(2)
        Problem(Short(dim=3), Budget(evals=1))


def test_problem_scale_is_read_only():
    problem = Problem(TwoScaleSphere(dim=4), Budget(evals=1))
    problem.scale.mul_(0)  # a copy: the problem's scale is unchanged
    assert torch.equal(problem.scale, torch.tensor([SMALL, SMALL, LARGE, LARGE]))
    with pytest.raises(AttributeError):
        problem.scale = torch.ones(4)


def test_a_record_of_the_old_defaults_is_stale(registry, tmp_path):
    """After the defaults became relative, a record written by the previous optimizer code
    keeps its run identity (the default spec prints as before) and is flagged stale by the
    source-hash mechanism, so ``--rerun-stale`` redoes it."""
    run = RunSpec(resolve_task(registry, "sphere[dim=2]"),
                  resolve_optimizer(registry, "random-search"), 0, Budget(evals=20))
    assert run.optimizer.canonical == "random-search[batch=16,sigma=0.3]"  # as before
    summary = run_all([run], registry, tmp_path, InProcessExecutor())
    assert not summary.stale
    path = tmp_path / "runs" / f"{run.run_id}.json"
    record = json.loads(path.read_text())
    assert record["code"]["optimizer"] == fingerprint.source_hash(
        registry.optimizer("random-search").cls)
    record["code"]["optimizer"] = "0123456789ab"  # the hash of the code before the change
    path.write_text(json.dumps(record))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_all([run], registry, tmp_path, InProcessExecutor())
    assert [r.run_id for r in summary.stale] == [run.run_id]
    stale = [w for w in caught if issubclass(w.category, fingerprint.StaleWarning)]
    assert len(stale) == 1 and "random-search" in str(stale[0].message)
    with pytest.warns(fingerprint.StaleWarning, match="rerunning"):
        run_all([run], registry, tmp_path, InProcessExecutor(), rerun_stale=True)
    assert json.loads(path.read_text())["code"]["optimizer"] != "0123456789ab"


def test_tune_searches_a_step_size_as_its_multiple(registry, tmp_path):
    """``zgbench tune`` suggests the relative multiple: the trial specs and the tuned spec
    carry relative Steps, and the spec as given (trial 0) is the relative default."""
    from zgbench import tuning

    base = resolve_optimizer(registry, "random-search")
    dims = tuning.space(registry, base)
    assert [d.name for d in dims] == ["sigma"] and (dims[0].low, dims[0].high) == (1e-3, 1.0)
    result = tuning.tune_pair(registry, resolve_task(registry, "sphere[dim=2]"),
                              Budget(evals=30), base, dims, tmp_path, InProcessExecutor(),
                              trials=3)
    assert result.trials[0]["spec"] == "random-search"  # the relative default, as given
    specs = [resolve_optimizer(registry, t["spec"]) for t in result.trials]
    assert all(not s.kwargs["sigma"].absolute for s in specs)
    assert len({s.kwargs["sigma"] for s in specs}) == 3
    assert not result.best.kwargs["sigma"].absolute


class OldStyleEstimator(GradientEstimator):
    """A third-party estimator written before scales: a float μ, and a ``make_step(params)``
    override with the one-argument signature of that time."""

    name = "old-style-estimator"
    mu = Param(0.01, "absolute perturbation", gt=0)

    def evals_per_step(self, dim: int) -> int:
        return dim + 1

    def make_step(self, params):
        return torch.optim.SGD(params, lr=self.lr)

    def estimate_gradient(self, problem, theta, key):
        rows = theta + self.mu * torch.eye(theta.numel())
        values = problem.loss(torch.cat([theta[None], rows]), key)
        return (values[1:] - values[0]) / self.mu


def test_a_third_party_gradient_estimator_keeps_working():
    task = TwoScaleSphere(dim=4)
    problem = Problem(task, Budget(evals=50))
    problem.start()
    with pytest.raises(BudgetExhausted):
        OldStyleEstimator(lr=0.1).run(problem)
    value = lambda theta: float(task.f(theta[None] - task.x_star)[0])  # noqa: E731 (unmetered)
    assert value(problem.recommendation()) < 0.5 * value(task.initial())
    first = next(b for b in task.batches if b.shape[0] > 1)  # the first estimate's batch
    offsets = (first - first[0])[1:]
    assert torch.allclose(offsets, 0.01 * torch.eye(4), atol=1e-6)  # μ stays absolute
