"""Equal hyper-parameter tuning for every optimizer: the ``tuned`` track of the boards.

Protocol (issue 15.2):

- **Search space**: the parameters an optimizer declares tunable (``Param(..., tune=(low,
  high), log=...)`` or ``tune=True`` over its choices); parameters the spec sets explicitly
  (``cge[step=adam]``) stay fixed. ``--range OPT.PARAM=LOW:HIGH[:log|:linear]`` narrows or
  moves a declared range; naming an undeclared parameter or giving a bad range is a usage
  error with the fix. A step size (``Param(relative=True)``) is searched as its multiple of
  the task's scale, so a tuned ``sigma=0.0203`` is relative, as the default it replaces.
- **Sampler**: Optuna's TPE (Bergstra et al., "Algorithms for Hyper-Parameter Optimization",
  NeurIPS 2011), seeded from (task, optimizer, ``--seed``), one trial at a time, so tuning is
  deterministic for a seed. Trial 0 is the spec as given (its defaults), so the tuned spec is
  never worse than the defaults on the tuning seeds.
- **Equal budget**: every compatible (task, optimizer) pair with a tunable parameter gets
  exactly ``trials`` trials; each trial runs ``reps`` ordinary harness runs at the task's
  budget. An optimizer with nothing tunable, or incompatible with the task, keeps its spec
  and runs no trial.
- **Disjoint seeds**: trial runs use repetitions ``TUNE_OFFSET + r``; evaluation uses
  ``0 .. seeds - 1``. Task instances, keys and optimizer seeds are derived from the
  repetition, so no tuning run shares a seed with an evaluation run.
- **Charged to nothing ranked**: trial records live in their own results folder (resumable:
  a re-run skips finished trials); the output is a suite file whose optimizers are the tuned
  specs, to be run into another results folder and ranked as the ``tuned`` track.
- **Objective**: the median over the tuning repetitions of the final primary metric, failures
  worst (:func:`zgbench.stats.worse_median`); suggested floats are rounded to 3 significant
  digits, so tuned specs read well and resume exactly. A suggested combination the optimizer
  refuses (``check_params``, e.g. ``sigma < sigma_min``) is a spent trial with the worst value.
"""

from __future__ import annotations

import importlib.util
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from zgbench import harness, stats
from zgbench.budget import Budget
from zgbench.declared import Declarations
from zgbench.errors import MissingExtra, UsageError
from zgbench.optimizer import skip_reason
from zgbench.params import Param, Step
from zgbench.plugins import Registry
from zgbench.seeding import derive_seed
from zgbench.specs import Spec, resolve_optimizer
from zgbench.store import ResultStore

#: Tuning run ``r`` is repetition ``TUNE_OFFSET + r``: far above any evaluation seed count.
TUNE_OFFSET = 1_000_000
_RANGE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$")


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: a numeric range (maybe log) or a list of choices."""

    name: str
    type: type
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        value = trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)
        return float(f"{value:.3g}")


def check_available() -> None:
    """Exit 2 with the install line if Optuna is missing (it lives in the ``tune`` extra)."""
    if importlib.util.find_spec("optuna") is None:
        raise MissingExtra("zgbench tune needs Optuna: pip install 'zgbench[tune]'")


def declared_space(param: Param) -> Dimension | None:
    """The dimension a parameter declares, or ``None`` if it is not tunable."""
    if isinstance(param.tune, tuple):
        return Dimension(param.name, param.type, param.tune[0], param.tune[1], param.log)
    if param.tune:
        choices = tuple(param.choices) if param.choices is not None else (False, True)
        return Dimension(param.name, param.type, choices=choices)
    return None


def parse_ranges(texts: list[str]) -> dict[str, dict[str, tuple[str, str, str | None]]]:
    """``["cma-es.sigma0=0.01:1:log"]`` -> ``{"cma-es": {"sigma0": ("0.01", "1", "log")}}``."""
    out: dict[str, dict[str, tuple[str, str, str | None]]] = {}
    for text in texts:
        match = _RANGE.match(text)
        parts = match.group(3).split(":") if match else []
        if not match or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in
                                                      ("log", "linear")):
            raise UsageError(f"--range {text!r}: write OPTIMIZER.PARAM=LOW:HIGH, optionally "
                             "with :log or :linear, e.g. --range cma-es.sigma0=0.01:1:log.")
        scale = parts[2] if len(parts) == 3 else None
        out.setdefault(match.group(1), {})[match.group(2)] = (parts[0], parts[1], scale)
    return out


def space(registry: Registry, spec: Spec,
          ranges: dict[str, tuple[str, str, str | None]] | None = None) -> list[Dimension]:
    """The dimensions searched for ``spec``: its declared tunables minus the parameters the
    spec sets, with ``ranges`` (from :func:`parse_ranges`) applied and checked."""
    cls = registry.optimizer(spec.name).cls
    params = cls.declared_params()
    fixed = {k for k, v in spec.params if dict(spec.defaults).get(k) != v}
    dims = {name: d for name, p in params.items()
            if name not in fixed and (d := declared_space(p)) is not None}
    for name, (low, high, scale) in (ranges or {}).items():
        dims[name] = _override(registry, spec, params, dims, name, low, high, scale, fixed)
    return [dims[name] for name in params if name in dims]


def _override(registry, spec, params, dims, name, low, high, scale, fixed) -> Dimension:
    where = f"--range {spec.name}.{name}"
    tunable = sorted(dims) or ["(none)"]
    if name not in params or name in fixed or dims.get(name) is None:
        why = ("is fixed by the spec " + spec.label if name in fixed else
               "is not a parameter" if name not in params else "is not declared tunable")
        raise UsageError(f"{where}: {name!r} {why} of optimizer {spec.name!r}; tunable: "
                         f"{', '.join(tunable)} (a plugin declares one with "
                         f"Param(..., tune=(low, high), log=True)).")
    old = dims[name]
    if old.choices is not None:
        raise UsageError(f"{where}: {name!r} is searched over its choices "
                         f"{list(old.choices)}; a LOW:HIGH range does not apply.")
    try:
        lo, hi = (params[name].coerce(v, f"optimizer {spec.name!r}") for v in (low, high))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if isinstance(lo, Step):  # a step size is searched as a multiple of the task's scale
        lo, hi = lo.value, hi.value  # (abs: cannot be written here: its colon splits LOW:HIGH)
    log = old.log if scale is None else scale == "log"
    if not lo < hi or (log and lo <= 0):
        raise UsageError(f"{where}={low}:{high}: give LOW < HIGH" +
                         (" and LOW > 0 on a log scale (or add :linear)." if log else "."))
    for value in (lo, hi):  # both ends must make a valid optimizer
        try:
            resolve_optimizer(registry, spec.label, {name: value})
        except UsageError as exc:
            raise UsageError(f"{where}={low}:{high}: the end {value} is not valid ({exc}) "
                             f"Narrow the range.") from None
    return Dimension(name, params[name].type, lo, hi, log)


@dataclass
class PairResult:
    """The outcome of tuning one (task, optimizer) pair."""

    task: Spec
    base: Spec
    best: Spec
    trials: list[dict[str, Any]] = field(default_factory=list)


def tune_pair(registry: Registry, task: Spec, budget: Budget, base: Spec, dims: list[Dimension],
              store_dir: Path, executor, *, trials: int, reps: int = 1, seed: int = 0,
              device: str = "cpu") -> PairResult:
    """Run ``trials`` TPE trials of ``base`` on ``task`` (``reps`` runs each on the tuning
    repetitions) through the ordinary harness into ``store_dir``; return the best spec."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=derive_seed("tune", task.canonical, base.name, seed) % 2**32)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    current = dict(base.params)
    # trial 0: the spec as given (a relative step size is searched as its multiple)
    study.enqueue_trial({d.name: _number(current[d.name]) for d in dims})
    store = ResultStore(store_dir)
    result = PairResult(task, base, base)
    specs: dict[int, Spec] = {}

    def objective(trial) -> float:
        values = {d.name: d.suggest(trial) for d in dims}
        try:
            spec = resolve_optimizer(registry, base.label, values)
        except UsageError as exc:  # a combination check_params refuses: a spent, worst trial
            result.trials.append({"task": task.label, "optimizer": base.name,
                                  "trial": trial.number, "spec": _text(base.name, values),
                                  "value": math.inf, "repetitions": f"invalid: {exc}"})
            return math.inf
        specs[trial.number] = spec
        runs = [harness.RunSpec(task, spec, TUNE_OFFSET + r, budget, device)
                for r in range(reps)]
        harness.run_all(runs, registry, store_dir, executor)
        value = objective_value([store.get(run.run_id) for run in runs])
        result.trials.append({"task": task.label, "optimizer": base.name, "trial": trial.number,
                              "spec": spec.label, "value": value,
                              "repetitions": f"{TUNE_OFFSET}..{TUNE_OFFSET + reps - 1}"})
        return value

    with warnings.catch_warnings():  # trial 0 (the spec as given) may lie outside a --range
        warnings.filterwarnings("ignore", message="Fixed parameter", category=UserWarning)
        study.optimize(objective, n_trials=trials)
    result.best = specs.get(study.best_trial.number, base)
    return result


def _number(value: Any) -> Any:
    """A parameter value as the sampler sees it: a relative :class:`Step` as its multiple
    (only a parameter at its default is searched, and step-size defaults are relative)."""
    return value.value if isinstance(value, Step) else value


def _text(name: str, values: dict[str, Any]) -> str:
    return name + "[" + ",".join(f"{k}={v}" for k, v in values.items()) + "]"


def objective_value(records: list[dict[str, Any] | None]) -> float:
    """Worse median over runs of the final primary metric, oriented (lower is better;
    a missing, failed or non-finite run is +inf)."""
    values = []
    for r in records:
        if r is None or r.get("status") != "ok":
            values.append(math.inf)
            continue
        metric = r["task"]["primary_metric"]
        value = ((r.get("final") or {}).get("metrics") or {}).get(metric)
        ok = value is not None and math.isfinite(value)
        values.append(float(stats.oriented(value, r["task"]["metrics"][metric])) if ok
                      else math.inf)
    return float(stats.worse_median(values)) if values else math.inf


def compatible(registry: Registry, task: Spec, optimizer: Spec) -> bool:
    """Whether the harness would run the pair at all (the optimizer's ``skip`` says nothing)."""
    task_cls = registry.task(task.name).cls
    return skip_reason(registry.optimizer(optimizer.name).cls(**optimizer.kwargs), task_cls,
                       task.kwargs) is None


def trials_frame(results: list[PairResult]) -> pd.DataFrame:
    """Every trial of every pair, with the chosen one marked (``chosen``)."""
    rows = []
    for result in results:
        for row in result.trials:
            rows.append({**row, "chosen": row["spec"] == result.best.label})
    columns = ["task", "optimizer", "trial", "spec", "value", "repetitions", "chosen"]
    return pd.DataFrame(rows, columns=columns)


def suite_toml(entries: list[tuple[Spec, Budget, list[Spec]]], *, seeds: int, device: str,
               description: str, header: list[str],
               declarations: Declarations | None = None) -> str:
    """A suite file (the format :mod:`zgbench.suite` reads) with the given task entries and
    the tuned suite's declarations (its baseline and caveats: the budgets are the same).
    Written by hand: the layout is three keys per task and tomllib only reads."""
    lines = [f"# {line}" for line in header] + ["", "[suite]",
                                                 f"description = {_q(description)}",
                                                 f"seeds = {seeds}", f"device = {_q(device)}"]
    if declarations is not None and declarations.baseline:
        lines.append(f"baseline = {_q(declarations.baseline)}")
    if declarations is not None and declarations.caveats:
        lines += ["", "[suite.caveats]"] + [f"{_q(name)} = {_q(text)}"
                                            for name, text in declarations.caveats.items()]
    for task, budget, optimizers in entries:
        limits = ", ".join(f"{k} = {v!r}" for k, v in budget.as_dict().items() if v is not None)
        lines += ["", "[[tasks]]", f"spec = {_q(task.label)}", f"budget = {{ {limits} }}",
                  "optimizers = [" + ", ".join(_q(o.label) for o in optimizers) + "]"]
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
