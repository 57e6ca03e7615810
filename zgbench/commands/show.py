"""Show the fits: one contact sheet (PNG) per task with every run's target-vs-result picture.

Tasks that can draw their result (mesh-fit, procedural, ...) write a picture next to each
run's record (RESULTS/artifacts/RUN_ID/), and the harness stores the final parameter vector
beside it (recommendation.npy; theta.npy in results of earlier versions). This
command gathers them: one sheet per task, one row per optimizer, one column per seed, each
cell titled with the optimizer, the seed and the task's primary metric.

With --render the pictures are drawn again from the stored parameter vectors (the task is
rebuilt from its record: same spec, same seed, so the same target), and --set KEY=VALUE
changes task parameters for that drawing only, e.g. a higher resolution or more views.
Runs stored without artifacts (results written before this version, or tasks that draw
nothing) are listed and skipped.

Examples:
  zgbench show results/                          sheets to results/pictures/
  zgbench show results/ -o pictures/ --tasks mesh-fit
  zgbench show results/ --render --set res=256 --set heldout=6
"""

from __future__ import annotations

import argparse
import textwrap
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from zgbench import outputs, specs
from zgbench.cli import load_registry
from zgbench.errors import UsageError
from zgbench.lazy import lazy
from zgbench.paths import UnsafePath, inside
from zgbench.record import repetition
from zgbench.store import RecordWarning, ResultStore

if TYPE_CHECKING:
    from zgbench.plugins import Registry

np = lazy("numpy")
torch = lazy("torch")
harness = lazy("zgbench.harness")
leaderboard = lazy("zgbench.leaderboard")
report = lazy("zgbench.report")

HELP = "write target-vs-result contact sheets (PNG) per task from a results folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="?", default="results",
                        help="results folder written by zgbench run (default: results, as run)")
    parser.add_argument("-o", "--out", help="output folder (default: RESULTS/pictures)")
    parser.add_argument("--tasks", help="only these tasks: names or specs, comma separated")
    parser.add_argument("--optimizers", help="only these optimizers: names or specs")
    parser.add_argument("--render", action="store_true",
                        help="draw the pictures again from the stored parameter vectors")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="task parameter for --render (repeatable)")


def main(args: argparse.Namespace) -> int:
    results = Path(args.results)
    if not (results / "runs").is_dir():
        raise UsageError(f"{results} is not a results folder (no runs/ inside): pass the "
                         "folder given to zgbench run --out.")
    if args.overrides and not args.render:
        raise UsageError("--set changes how runs are drawn again: use it with --render.")
    registry = load_registry(args)
    out = outputs.checked(results, Path(args.out) if args.out else results / "pictures")
    overrides = _overrides(args.overrides)
    records = _select(ResultStore(results), registry, args.tasks, args.optimizers)
    console = Console(stderr=True)
    by_task: dict[str, list[tuple[dict[str, Any], Path]]] = defaultdict(list)
    skipped = []
    for record in records:
        picture = _picture(record, results, out, registry, args.render, overrides)
        if picture is None:
            skipped.append(record)
        else:
            by_task[record["task"]["label"]].append((record, picture))
    _say_skipped(console, skipped, registry)
    if not by_task:
        raise UsageError(f"no run in {results} has a picture: tasks that draw their result "
                         "(mesh-fit, procedural) store one per run; run them with zgbench run.")
    for label, runs in sorted(by_task.items()):
        path = contact_sheet(label, runs, out / f"{leaderboard.slug(label)}.png")
        console.print(f"{escape(label)}: {len(runs)} runs -> {escape(str(path))}", highlight=False)
    return 0


def draws_pictures(registry: Registry, task_name: str) -> bool:
    """Whether the task overrides :meth:`~zgbench.Task.artifacts` (a task not installed here
    counts as drawing: its runs may have pictures this version could store)."""
    from zgbench.task import Task

    try:
        cls = registry.task(task_name).cls
    except (KeyError, UsageError):
        return True
    return getattr(cls, "artifacts", Task.artifacts) is not Task.artifacts


def _say_skipped(console: Console, skipped: list[dict[str, Any]], registry: Registry) -> None:
    """Name each skipped run of a task that draws pictures (re-running stores them); the
    runs of tasks that draw none (sphere, step...) get one line, with no advice to re-run:
    re-running would store no picture either."""
    silent: dict[str, int] = defaultdict(int)
    for record in skipped:
        if not draws_pictures(registry, record["task"]["name"]):
            silent[record["task"]["name"]] += 1
            continue
        console.print(f"skipped {escape(_describe(record))}: no stored picture or parameter "
                      "vector (re-run it with this version to store them)", highlight=False)
    if silent:
        names = ", ".join(f"{name} ({count} runs)" for name, count in sorted(silent.items()))
        console.print(f"no pictures for tasks that draw none: {escape(names)}",
                      highlight=False, soft_wrap=True)


def _overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: write KEY=VALUE, e.g. --set res=256.")
        overrides[key.strip()] = value.strip()
    return overrides


def _matches(wanted: str | None, record_part: dict[str, Any], resolve) -> bool:
    """Whether a task/optimizer part of a record matches one of the ``wanted`` specs: a bare
    name matches every instance, a spec with parameters the same canonical instance."""
    if not wanted:
        return True
    for item in specs.split_list(wanted):
        name, params = specs.parse(item)
        if name == record_part["name"] and (not params or resolve(item).canonical
                                            == record_part["canonical"]):
            return True
    return False


def _select(store: ResultStore, registry: Registry, tasks: str | None,
            optimizers: str | None) -> list[dict[str, Any]]:
    for text, resolve in ((tasks, lambda s: specs.resolve_task(registry, s)),
                          (optimizers, lambda s: specs.resolve_optimizer(registry, s))):
        for item in specs.split_list(text) if text else []:
            resolve(item)  # an unknown name or bad spec is a usage error, not an empty selection
    chosen = [r for r in store if r.get("status") == "ok"
              and _matches(tasks, r["task"], lambda s: specs.resolve_task(registry, s))
              and _matches(optimizers, r["optimizer"],
                           lambda s: specs.resolve_optimizer(registry, s))]
    return sorted(chosen, key=lambda r: (r["task"]["label"], r["optimizer"]["label"],
                                         repetition(r)))


def _picture(record: dict[str, Any], results: Path, out: Path, registry: Registry,
             render: bool, overrides: dict[str, str]) -> Path | None:
    """The run's picture: the stored one, or drawn again from its stored parameter vector."""
    artifacts = _artifact_paths(record, results)
    pngs = [p for p in artifacts if p.suffix == ".png" and p.stem != "reference" and p.is_file()]
    if pngs and not render:
        return pngs[0]
    # theta.npy: where tasks themselves stored θ, before the harness did
    thetas = [p for p in artifacts if p.name in (harness.RECOMMENDATION, "theta.npy") and p.is_file()]
    if not thetas:
        return None
    task = _rebuild(record, registry, overrides)
    theta = torch.as_tensor(np.load(thetas[0]), dtype=torch.float32, device=task.device)
    if theta.numel() != task.dim:
        raise UsageError(f"--set changes the parameter count of {record['task']['label']} "
                         f"({theta.numel()} stored, {task.dim} now): keep size parameters.")
    folder = outputs.checked(out, out / "runs" / record["run_id"])
    drawn = outputs.task_pictures(lambda where: task.artifacts(theta, where), folder)
    drawn = [p for p in drawn if p.suffix == ".png" and p.stem != "reference"]
    return drawn[0] if drawn else None


def _artifact_paths(record: dict[str, Any], results: Path) -> list[Path]:
    """The record's artifact files under ``results``; a path that leaves the folder or passes
    through a symbolic link is skipped with a warning (records are data, maybe hostile)."""
    paths = []
    for rel in record.get("artifacts") or []:
        try:
            paths.append(inside(results, rel))
        except UnsafePath as exc:
            warnings.warn(f"record {record['run_id']!r} ({_describe(record)}): artifact "
                          f"skipped: {exc}", RecordWarning, stacklevel=2)
    return paths


def _rebuild(record: dict[str, Any], registry: Registry, overrides: dict[str, str]):
    """The run's task instance (same spec and seed, so the same target), on the CPU."""
    part = record["task"]
    spec = specs.resolve_task(registry, part["name"], {**part["params"], **overrides})
    cls = registry.task(spec.name).cls
    return cls(device="cpu", seed=record["seeds"]["task"], **spec.kwargs)


def _describe(record: dict[str, Any]) -> str:
    return (f"{record['task']['label']} × {record['optimizer']['label']} "
            f"(seed {repetition(record)})")


def contact_sheet(label: str, runs: list[tuple[dict[str, Any], Path]], path: Path) -> Path:
    """One figure: rows = optimizers, columns = seeds, each cell a run's picture + its metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optimizers = sorted({r["optimizer"]["label"] for r, _ in runs})
    seeds = sorted({repetition(r) for r, _ in runs})
    images = {(r["optimizer"]["label"], repetition(r)): (r, plt.imread(p))
              for r, p in runs}
    height = max(image.shape[0] for _, image in images.values())
    width = max(image.shape[1] for _, image in images.values())
    scale = min(1.0, 2400 / (width * len(seeds)))  # keep sheets of many seeds readable
    # Cells a little larger than the pictures, so they are shown near their own size.
    cell_w, cell_h = max(width * scale / 100 + 0.3, 3.0), height * scale / 100 + 0.7
    fig, axes = plt.subplots(len(optimizers), len(seeds), squeeze=False,
                             figsize=(cell_w * len(seeds), cell_h * len(optimizers) + 0.6))
    for i, optimizer in enumerate(optimizers):
        for j, seed in enumerate(seeds):
            ax = axes[i][j]
            ax.axis("off")
            if (optimizer, seed) not in images:
                continue
            record, image = images[(optimizer, seed)]
            ax.imshow(image, interpolation="nearest")
            ax.set_title(outputs.literal(textwrap.fill(f"{optimizer} · seed {seed}", 40))
                         + f"\n{report.metric_caption(record)}", fontsize=8)
    fig.suptitle(outputs.literal(textwrap.fill(label, int(cell_w * len(seeds) * 11))),
                 fontsize=10)
    fig.tight_layout()
    return outputs.save_figure(fig, path, dpi=100)
