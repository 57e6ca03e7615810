"""Gradient diagnostics: how good is each optimizer's gradient, at equal evaluation counts?

The seed papers argue about exactly this: coordinate against random estimates (DeepZero),
smoothing against surrogates (PRDPT, ZeroGrads), bias against variance. For every task, point
and evaluation allowance E, each estimator produces ``samples`` independent estimates ĝ_i of
the gradient, each spending about E loss evaluations, and is compared with a reference g:

- reference: the task's autodiff gradient where it provides ``grad`` (``autodiff``); otherwise
  the Gaussian-smoothed gradient ∇(ℓ * N(0, σ²I))(θ) estimated with many antithetic Gaussian
  samples, ĝ = mean (ℓ(θ + σu) − ℓ(θ − σu)) / (2σ) · u (``smoothed``; its own relative
  standard error is reported as ``reference_rel_stderr``). σ is the estimator's own: an
  estimator that smooths (it declares a ``sigma`` parameter: ``smoothing``, ``zerograds``)
  estimates the gradient of the loss smoothed at *its* σ, so judging it against another σ
  would call an unbiased estimator biased (PRDPT at σ 0.5 read 0.39 "relative bias" against a
  σ 0.25 reference). Finite differences (``fd``, ``cge``, ``rge``) smooth at no σ; they are
  compared at ``--sigma``. Each row says its σ (``reference_sigma``);
- ``cosine``: mean and spread of cos(ĝ_i, g); ``cosine_of_mean``: cos(mean ĝ, g);
- ``bias`` = ‖mean ĝ − g‖ (``bias_floor`` = sqrt(variance / samples) is the noise in it: a bias
  near the floor is no detectable bias); ``variance`` = Σ_j Var(ĝ_ij) (trace of the
  covariance); ``scale`` = mean ĝ · g / ‖g‖² (1 = calibrated magnitude); ``rel_bias`` and
  ``rel_std`` divide by ‖g‖.

Points: θ₀ and ``points − 1`` perturbed points θ₀ + radius·z, z ~ N(0, I) from ``seed``. Every
call at one point uses one loss key (common random numbers): the comparison is of the
estimators, not of the task's own noise. Rows are per point, and summaries give the median and
the range over points, never a mean alone: on a step function one point near a plateau edge,
where ‖g‖ is tiny, gives fd a relative bias of 17 and would dominate any mean.

**Equal evaluations.** An estimator exposes ``estimate_gradient(problem, theta, key)``
(:class:`~zgbench.estimator.GradientEstimator` subclasses do; optimizers without it are listed
as skipped). One estimate at allowance E is the mean of ⌊E / c⌋ calls (at least one), c being
the evaluations one call costs, measured on the first call (a deterministic estimator such as
``fd`` or ``cge`` on a deterministic loss gains nothing from repeats, but spends the same
allowance as the others). An estimator may instead define
``estimate_gradient_with_evals(problem, theta, key, evals)`` to spend E its own way:
``zerograds`` fits a fresh surrogate, θ held fixed, on ⌊E / 2B⌋ batches around the point and
returns the surrogate's gradient. That is its cold-start quality after E evaluations; during a
run the surrogate also carries what it learned at earlier points. The ``evals`` column is what
each estimate really spent (the budget of one call can exceed E: ``cge`` always costs d + 1).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from zgbench import outputs
from zgbench.store import atomic_write
from zgbench.budget import Budget
from zgbench.errors import UsageError
from zgbench.estimator import EstimatesGradient
from zgbench.gradcheck_settings import Settings
from zgbench.optimizer import skip_reason
from zgbench.plugins import Registry
from zgbench.problem import Problem
from zgbench.seeding import derive_seed
from zgbench.specs import Spec

#: Loss vectors per call when estimating the smoothed reference.
REFERENCE_CHUNK = 4096


@dataclass
class Row:
    """One line of the CSV: an estimator at one point and evaluation allowance, or a skip."""

    task: str
    optimizer: str
    status: str  # "ok" or "skipped"
    reason: str = ""
    point: int | None = None
    evals_target: int | None = None
    evals: float | None = None
    samples: int | None = None
    reference: str = ""
    reference_sigma: float | None = None
    reference_norm: float | None = None
    reference_rel_stderr: float | None = None
    cosine: float | None = None
    cosine_std: float | None = None
    cosine_of_mean: float | None = None
    bias: float | None = None
    bias_floor: float | None = None
    variance: float | None = None
    scale: float | None = None
    rel_bias: float | None = None
    rel_std: float | None = None
    seconds: float | None = None


@dataclass
class Reference:
    grad: torch.Tensor
    label: str
    rel_stderr: float = 0.0
    sigma: float | None = None


@dataclass
class Point:
    """A point θ with its loss key; its references are computed once per σ asked for."""

    index: int
    theta: torch.Tensor
    key: int
    seed: int
    references: dict[float, Reference] = field(default_factory=dict, repr=False)

    def reference(self, task, sigma: float, settings: Settings) -> Reference:
        if sigma not in self.references:
            gen = torch.Generator(device=self.theta.device)
            gen.manual_seed(derive_seed("gradcheck-reference", self.seed, repr(float(sigma))))
            self.references[sigma] = reference_gradient(task, self.theta, self.key, sigma,
                                                        settings.reference_samples, gen)
        return self.references[sigma]


# ------------------------------------------------------------------------------- reference
def reference_gradient(task, theta: torch.Tensor, key: int, sigma: float, pairs: int,
                       generator: torch.Generator) -> Reference:
    """The autodiff gradient if the task has one, else a many-sample smoothed gradient at σ."""
    with torch.no_grad():
        if "grad" in task.provides:
            _, grad = task.grad(theta[None], key)
            return Reference(grad[0].detach(), "autodiff")
        return smoothed_gradient(task, theta, key, sigma, pairs, generator)


def estimator_sigma(estimator, settings: Settings, problem: Problem | None = None) -> float:
    """The σ an estimator smooths at (its ``sigma`` parameter, a step size resolved on
    ``problem``'s scale), else ``settings.sigma``. The smoothed reference takes one σ: a
    relative σ on a task whose scale varies per coordinate has none, so that is a usage
    error naming the way out (an absolute σ)."""
    from zgbench.params import Step, declared

    if "sigma" not in declared(type(estimator)):
        return settings.sigma
    sigma = estimator.sigma
    if not isinstance(sigma, Step):
        return float(sigma)
    if problem is None:
        if not sigma.absolute:
            raise ValueError("estimator_sigma: a relative σ needs the problem (its scale)")
        return sigma.value
    factor, shape = problem.step_parts(sigma)
    if shape is not None:
        raise UsageError(f"gradcheck: {estimator.name}'s sigma={sigma} is relative to a scale "
                         "that varies per coordinate, and the smoothed reference takes one σ: "
                         "give an absolute one, e.g. sigma=abs:0.1.")
    return factor


@torch.no_grad()
def smoothed_gradient(task, theta: torch.Tensor, key: int, sigma: float, pairs: int,
                      generator: torch.Generator) -> Reference:
    """∇(ℓ * N(0, σ²I))(θ) from ``pairs`` antithetic Gaussian pairs, with its standard error."""
    total = torch.zeros_like(theta, dtype=torch.float64)
    square = torch.zeros_like(total)
    done = 0
    while done < pairs:
        n = min(REFERENCE_CHUNK // 2, pairs - done)
        u = torch.randn(n, theta.numel(), generator=generator, device=theta.device,
                        dtype=theta.dtype)
        values = task.loss(torch.cat([theta + sigma * u, theta - sigma * u]), key)
        each = ((values[:n] - values[n:]) / (2 * sigma))[:, None].double() * u.double()
        total += each.sum(0)
        square += (each * each).sum(0)
        done += n
    mean = total / pairs
    variance = (square / pairs - mean * mean).clamp_min(0).sum() * pairs / max(pairs - 1, 1)
    norm = float(torch.linalg.vector_norm(mean))
    stderr = math.sqrt(float(variance) / pairs)
    return Reference(mean.to(theta.dtype), f"smoothed(sigma={sigma:g},pairs={pairs})",
                     stderr / norm if norm > 0 else math.inf, sigma)


# ------------------------------------------------------------------------------ estimators
def has_estimator(cls: type) -> bool:
    """Whether an optimizer class declares the gradient-diagnostics contract
    (:class:`~zgbench.estimator.EstimatesGradient`) and implements its estimate."""
    return (isinstance(cls, type) and issubclass(cls, EstimatesGradient)
            and cls.estimate_gradient is not EstimatesGradient.estimate_gradient)


def estimate(estimator: EstimatesGradient, problem: Problem, theta: torch.Tensor, key: int,
             evals: int) -> tuple[torch.Tensor, int]:
    """One estimate spending about ``evals`` evaluations; returns it and what it spent."""
    start = problem.evals
    grad = estimator.estimate_gradient_with_evals(problem, theta, key, evals)
    return grad.detach(), problem.evals - start


def statistics(estimates: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Cosine, bias, variance and scale of ``estimates [N, d]`` against ``reference [d]``."""
    est, ref = estimates.double(), reference.double()
    norm = float(torch.linalg.vector_norm(ref))
    mean = est.mean(0)
    variance = float(est.var(0, unbiased=True).sum())
    bias = float(torch.linalg.vector_norm(mean - ref))
    cos = torch.nn.functional.cosine_similarity(est, ref[None].expand_as(est), dim=1)
    nan = float("nan")
    return {
        "cosine": float(cos.mean()),
        "cosine_std": float(cos.std(unbiased=True)),
        "cosine_of_mean": float(torch.nn.functional.cosine_similarity(mean, ref, dim=0)),
        "bias": bias,
        "bias_floor": math.sqrt(variance / est.shape[0]),
        "variance": variance,
        "scale": float(mean @ ref) / norm**2 if norm > 0 else nan,
        "rel_bias": bias / norm if norm > 0 else nan,
        "rel_std": math.sqrt(variance) / norm if norm > 0 else nan,
    }


# ----------------------------------------------------------------------------------- driver
def run(registry: Registry, tasks: Sequence[Spec], optimizers: Sequence[Spec],
        settings: Settings) -> list[Row]:
    """Every (task, optimizer, point, evals) row, with skips for optimizers without
    ``estimate_gradient`` or whose requirements the task does not meet."""
    settings.check()
    rows: list[Row] = []
    for task_spec in tasks:
        task_cls = registry.task(task_spec.name).cls
        task_cls.check_available()
        task = task_cls(device=settings.device, seed=derive_seed("gradcheck-task", task_spec.canonical,
                                                                  settings.seed), **task_spec.kwargs)
        points = make_points(task, task_spec, settings)
        for opt_spec in optimizers:
            reason = estimator_skip(registry.optimizer(opt_spec.name).cls, opt_spec, task_cls,
                                    task_spec)
            if reason:
                rows.append(Row(task_spec.label, opt_spec.label, "skipped", reason))
                continue
            for point in points:
                rows.extend(measure(registry, task, task_spec, opt_spec, point, settings))
    return rows


def estimator_skip(opt_cls: type, opt_spec: Spec, task_cls: type, task_spec: Spec) -> str:
    """Why this estimator is not measured on this task ('' if it is): not a declared gradient
    estimator, its own ``skip`` (the harness's reason), or a missing optional dependency."""
    if not has_estimator(opt_cls):
        return "no estimate_gradient (not an EstimatesGradient optimizer)"
    reason = opt_cls.missing_dependency()
    return reason or skip_reason(opt_cls(**opt_spec.kwargs), task_cls, task_spec.kwargs) or ""


def make_points(task, task_spec: Spec, settings: Settings) -> list[Point]:
    gen = torch.Generator(device=task.device)
    gen.manual_seed(derive_seed("gradcheck-points", task_spec.canonical, settings.seed))
    theta0 = task.initial().detach()
    points = []
    for index in range(settings.points):
        theta = theta0 if index == 0 else theta0 + settings.radius * torch.randn(
            theta0.shape, generator=gen, device=theta0.device, dtype=theta0.dtype)
        key = derive_seed("gradcheck-key", task_spec.canonical, settings.seed, index)
        points.append(Point(index, theta, key, derive_seed("gradcheck-point", task_spec.canonical,
                                                           settings.seed, index)))
    return points


def measure(registry: Registry, task, task_spec: Spec, opt_spec: Spec, point: Point,
            settings: Settings) -> list[Row]:
    """Rows for one estimator at one point, one per evaluation allowance."""
    rows = []
    for evals in settings.evals:
        seed = derive_seed("gradcheck", task_spec.canonical, opt_spec.canonical, point.index,
                           evals, settings.seed)
        estimator = registry.optimizer(opt_spec.name).cls(seed=seed, **opt_spec.kwargs)
        # no checkpoints: the task's held-out evaluate plays no part here
        problem = Problem(task, Budget(evals=10**15, grads=10**15), seed=seed, checkpoints=())
        estimator.prepare(problem)
        ref = point.reference(task, estimator_sigma(estimator, settings, problem), settings)
        grads, spent = [], []
        start = time.perf_counter()
        for _ in range(settings.samples):
            grad, used = estimate(estimator, problem, point.theta, point.key, evals)
            grads.append(grad.reshape(-1))
            spent.append(used)
        seconds = (time.perf_counter() - start) / settings.samples
        stats = statistics(torch.stack(grads), ref.grad)
        rows.append(Row(
            task_spec.label, opt_spec.label, "ok", point=point.index, evals_target=evals,
            evals=sum(spent) / len(spent), samples=settings.samples, reference=ref.label,
            reference_sigma=ref.sigma,
            reference_norm=float(torch.linalg.vector_norm(ref.grad)),
            reference_rel_stderr=ref.rel_stderr, seconds=seconds, **stats))
    return rows


# ---------------------------------------------------------------------------------- output
def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """The rows as CSV, written atomically (a full disk leaves no half table)."""
    names = list(Row.__dataclass_fields__)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in asdict(row).items()})
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode("utf-8")), binary=True)
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def summary(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per (task, optimizer, evals): the median over points of the main columns, with the
    range (``_lo``, ``_hi``: the smallest and largest point). A median and a range, not a mean
    and a half-range: one plateau-edge point with a tiny ‖g‖ must not dominate the summary,
    and the bars of a non-negative quantity must never cross zero."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        if row.status == "ok":
            groups.setdefault((row.task, row.optimizer, row.evals_target), []).append(row)
    out = []
    for (task, opt, target), items in groups.items():
        entry: dict[str, Any] = {"task": task, "optimizer": opt, "evals_target": target,
                                 "points": len(items),
                                 "reference_sigma": items[0].reference_sigma}
        for column in ("evals", "cosine", "rel_bias", "rel_std"):
            values = torch.tensor([getattr(r, column) for r in items], dtype=torch.float64)
            entry[column] = float(values.nanmedian()) if values.isfinite().any() else math.nan
            finite = values[values.isfinite()]
            entry[column + "_lo"] = float(finite.min()) if finite.numel() else math.nan
            entry[column + "_hi"] = float(finite.max()) if finite.numel() else math.nan
        out.append(entry)
    return out


def plot(rows: Sequence[Row], path: Path) -> Path:
    """One row of panels per task: cosine, relative bias and relative spread against the
    evaluation allowance per estimate, one line per estimator through the median over points;
    the bars span the smallest to the largest point, and each point is drawn faintly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(rows)
    tasks = sorted({e["task"] for e in table})
    if not tasks:
        raise UsageError("nothing to plot: every optimizer was skipped (see the CSV).")
    columns = (("cosine", "cosine similarity to reference", "linear"),
               ("rel_bias", "‖mean ĝ − g‖ / ‖g‖", "log"),
               ("rel_std", "sqrt(variance) / ‖g‖", "log"))
    fig, axes = plt.subplots(len(tasks), 3, figsize=(14, 3.6 * len(tasks)), squeeze=False)
    for r, task in enumerate(tasks):
        entries = [e for e in table if e["task"] == task]
        for c, (column, label, yscale) in enumerate(columns):
            _panel(axes[r][c], entries, [x for x in rows if x.status == "ok" and x.task == task],
                   column, yscale)
            axes[r][c].set_ylabel(label)
            axes[r][c].set_title(outputs.literal(task) + "  (median and range over points)"
                                 if c == 0 else "")
        axes[r][0].legend(fontsize=8)
    fig.tight_layout()
    return outputs.save_figure(fig, path, dpi=110)


def _panel(ax, entries: list[dict[str, Any]], rows: list[Row], column: str, yscale: str) -> None:
    for opt in sorted({e["optimizer"] for e in entries}):
        line = sorted((e for e in entries if e["optimizer"] == opt),
                      key=lambda e: e["evals_target"])
        x = [e["evals_target"] for e in line]
        y = [e[column] for e in line]
        bars = [[max(e[column] - e[column + "_lo"], 0) for e in line],
                [max(e[column + "_hi"] - e[column], 0) for e in line]]
        sigma = line[0]["reference_sigma"]
        shown = outputs.literal(f"{opt} (σ={sigma:g})" if sigma is not None else opt)
        drawn = ax.errorbar(x, y, yerr=bars, marker="o", capsize=3, label=shown)
        each = [(r.evals_target, getattr(r, column)) for r in rows if r.optimizer == opt]
        ax.scatter([p[0] for p in each], [p[1] for p in each], s=8, alpha=0.35,
                   color=drawn[0].get_color())
    ax.set_xscale("log")
    ticks = sorted({e["evals_target"] for e in entries})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    values = [getattr(r, column) for r in rows]
    if yscale == "log" and values and all(v > 0 for v in values if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("evaluation allowance per estimate (spent: see CSV)")
    ax.grid(alpha=0.3)
