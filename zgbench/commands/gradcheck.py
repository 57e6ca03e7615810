"""Measure the quality of each optimizer's gradient estimate at equal evaluation counts.

For every task, a few points (θ₀ and perturbed points) and each evaluation allowance, every
estimator (an optimizer with estimate_gradient: fd, cge, rge, smoothing, zerograds, ...)
makes --samples independent estimates, and is compared with a reference gradient: the task's
autodiff gradient where it provides grad, else a Gaussian-smoothed gradient estimated with
--reference-samples antithetic pairs, at the estimator's own σ where it smooths (smoothing,
zerograds: their sigma parameter) and at --sigma for finite differences (fd, cge, rge); the
σ column says which. Reported per point (the table and CSV) and as the median and range over
points (the plot): cosine similarity, bias, variance, scale. Optimizers without
estimate_gradient are listed as skipped.
Writes DIR/gradcheck.csv and DIR/gradcheck.png. See zgbench/gradcheck.py for the definitions
(zerograds' estimate is a fresh surrogate fitted on the allowance around the point).

Examples:
  zgbench gradcheck --tasks "sphere[dim=16]",rosenbrock --optimizers cge,rge,smoothing,zerograds
  zgbench gradcheck --tasks "step[dim=8]" --optimizers fd,rge,smoothing --evals 20,200,2000 -o out/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench import specs
from zgbench.cli import load_registry
from zgbench.errors import UsageError
from zgbench.gradcheck_settings import Settings
from zgbench.lazy import lazy

gradcheck = lazy("zgbench.gradcheck")

HELP = "measure each estimator's gradient quality (cosine, bias, variance) at equal evaluations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--tasks", required=True, help='task specs, comma separated: "sphere[dim=8]",step')
    parser.add_argument("--optimizers",
                        help="optimizer specs, comma separated (default: every optimizer with "
                             "estimate_gradient)")
    parser.add_argument("--evals", default=",".join(map(str, defaults.evals)),
                        help="loss evaluations per estimate, one or more, comma separated "
                             f"(default: {defaults.evals[0]})")
    parser.add_argument("--samples", type=int, default=defaults.samples,
                        help=f"independent estimates per point (default: {defaults.samples})")
    parser.add_argument("--points", type=int, default=defaults.points,
                        help=f"θ₀ plus perturbed points (default: {defaults.points})")
    parser.add_argument("--radius", type=float, default=defaults.radius,
                        help=f"std of the perturbation of θ₀ (default: {defaults.radius})")
    parser.add_argument("--sigma", type=float, default=defaults.sigma,
                        help="σ of the smoothed reference, for tasks without grad, of the "
                             "estimators that do not smooth (fd, cge, rge); smoothing "
                             f"estimators use their own sigma (default: {defaults.sigma})")
    parser.add_argument("--reference-samples", type=int, default=defaults.reference_samples,
                        help="antithetic pairs of the smoothed reference "
                             f"(default: {defaults.reference_samples})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of everything random")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("-o", "--out", default="gradcheck",
                        help="output folder for gradcheck.csv and gradcheck.png (default: gradcheck)")


def main(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    tasks = [specs.resolve_task(registry, t) for t in specs.split_list(args.tasks)]
    if args.optimizers:
        optimizers = [specs.resolve_optimizer(registry, o) for o in specs.split_list(args.optimizers)]
    else:
        optimizers = [specs.resolve_optimizer(registry, name)
                      for name, entry in sorted(registry.optimizers.items())
                      if gradcheck.has_estimator(entry.cls)]
    settings = Settings(
        evals=_integers(args.evals), samples=args.samples, points=args.points,
        radius=args.radius, sigma=args.sigma, reference_samples=args.reference_samples,
        seed=args.seed, device=_device(args.device))
    rows = gradcheck.run(registry, tasks, optimizers, settings)
    out = Path(args.out)
    csv_path = gradcheck.write_csv(rows, out / "gradcheck.csv")
    console = Console()
    console.print(_table(rows))
    for row in rows:
        if row.status == "skipped":
            console.print(escape(f"skipped: {row.optimizer} on {row.task}: {row.reason}"),
                          highlight=False)
    written = [str(csv_path)]
    if any(row.status == "ok" for row in rows):
        written.append(str(gradcheck.plot(rows, out / "gradcheck.png")))
    console.print(escape("wrote " + ", ".join(written)), highlight=False)
    return 0


def _integers(text: str) -> list[int]:
    try:
        values = [int(v) for v in specs.split_list(text)]
    except ValueError:
        raise UsageError(f"--evals {text!r}: give positive integers, comma separated.") from None
    return values


def _device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use cpu, cuda or cuda:N.") from None
    if parsed.type not in ("cpu", "cuda"):  # meta, mps, xpu...: no task runs there
        raise UsageError(f"device {device!r} cannot run tasks: use cpu, cuda or cuda:N.")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available: use --device cpu.")
    return device


def _table(rows) -> Table:
    """Per point, not a mean over points: one point where ‖g‖ is tiny can give a relative bias
    of 17 that a mean would spread over the whole estimator."""
    table = Table(title="Gradient quality per point (the plot: median and range over points)",
                  title_justify="left")
    for column in ("task", "optimizer", "point", "σ ref", "allowance", "spent", "cosine",
                   "rel. bias", "rel. std"):
        table.add_column(column, justify="left" if column in ("task", "optimizer") else "right")
    ok = sorted((r for r in rows if r.status == "ok"),
                key=lambda r: (r.task, r.optimizer, r.evals_target, r.point))
    for row in ok:
        sigma = "autodiff" if row.reference == "autodiff" else f"{row.reference_sigma:g}"
        table.add_row(escape(row.task), escape(row.optimizer), str(row.point), sigma,
                      str(row.evals_target), f"{row.evals:.0f}", f"{row.cosine:.3f}",
                      f"{row.rel_bias:.3g}", f"{row.rel_std:.3g}")
    return table
