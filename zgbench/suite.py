"""Suite files: named task instances with budgets, the optimizers to run, seeds and device.

A suite is a TOML file under ``tasks/`` (or shipped by a plugin through the
``zgbench_suite_dirs`` hook)::

    [suite]
    description = "CPU, minutes"
    seeds = 3
    device = "cpu"
    optimizers = ["random-search", "cge", "rge"]    # specs, as on the command line
    baseline = "random-search"                       # optional: normalised score 1 (a name)

    [suite.caveats]                                  # optional: read next to a board's number
    cge = "30 steps here; its claim runs 300 (zgbench claims --only deepzero-cge-vs-rge)"

    [[tasks]]
    spec = "sphere[dim=8]"
    budget = { evals = 2000, grads = 200 }          # optional: the task's default otherwise

    [[tasks]]
    spec = "classify[model=cnn]"
    optimizers = ["cge", "adam"]                     # optional: this task's own optimizer list

A task table may also give ``name`` and ``params = {...}`` instead of ``spec``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zgbench.budget import Budget
from zgbench.declared import Declarations
from zgbench.errors import UsageError
from zgbench.plugins import Registry
from zgbench.specs import Spec, resolve_optimizer, resolve_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class SuiteTask:
    spec: Spec
    budget: Budget
    optimizers: list[Spec] | None = None


@dataclass
class Suite:
    name: str
    tasks: list[SuiteTask]
    optimizers: list[Spec] = field(default_factory=list)
    seeds: int = 3
    device: str = "cpu"
    description: str = ""
    baseline: str | None = None
    caveats: dict[str, str] = field(default_factory=dict)

    def declarations(self) -> Declarations:
        """What the suite declares for its boards (kept beside its records)."""
        return Declarations(self.name, self.baseline, dict(self.caveats))


def find(name_or_path: str, registry: Registry) -> Path:
    """A suite file by path, or by name in ``tasks/`` of a checkout, the installed package,
    or a plugin's suite folders."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    if path.suffix == ".toml":
        raise UsageError(f"suite file {name_or_path!r} does not exist.")
    candidates = [d / f"{name_or_path}.toml" for d in search_dirs(registry)]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    known = sorted({p.stem for d in search_dirs(registry) for p in d.glob("*.toml")})
    from zgbench.errors import unknown

    raise unknown("suite", name_or_path, known)


def search_dirs(registry: Registry) -> list[Path]:
    package = Path(__file__).resolve().parent
    dirs = [Path.cwd() / "tasks", package / "suites", package.parent / "tasks"]
    return [d for d in dirs + registry.suite_dirs() if d.is_dir()]


def load(name_or_path: str, registry: Registry) -> Suite:
    path = find(name_or_path, registry)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"suite {path}: not valid TOML ({exc}).") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"suite {path}: not UTF-8 text (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8.") from None
    except OSError as exc:
        raise UsageError(f"suite {path}: cannot read it ({exc.strerror or exc}).") from None
    return parse(data, registry, name=path.stem, where=str(path))


def parse(data: dict[str, Any], registry: Registry, name: str, where: str) -> Suite:
    head = _table(data.get("suite", {}), f"{where}: [suite]")
    unknown_keys = set(head) - {"description", "seeds", "device", "optimizers", "baseline",
                                "caveats"}
    if unknown_keys:
        raise UsageError(f"{where}: unknown key(s) {sorted(unknown_keys)} in [suite].")
    optimizers = [_optimizer(registry, o, where)
                  for o in _list(head.get("optimizers", []), f"{where}: optimizers")]
    tasks = [_task(registry, t, where, i)
             for i, t in enumerate(_list(data.get("tasks", []), f"{where}: tasks"))]
    if not tasks:
        raise UsageError(f"{where}: no [[tasks]] entries.")
    return Suite(name=name, tasks=tasks, optimizers=optimizers,
                 seeds=_seeds(head.get("seeds", 3), where),
                 device=_text(head.get("device", "cpu"), f"{where}: device", "\"cpu\""),
                 description=_text(head.get("description", ""), f"{where}: description", "\"...\""),
                 baseline=_baseline(registry, head.get("baseline"), where),
                 caveats=_caveats(registry, head.get("caveats", {}), where))


def optimizer_name(registry: Registry, value: Any, what: str) -> str:
    """A registered optimizer's plain name (no parameters): what boards key rows by."""
    name = _text(value, what, '"random-search"')
    spec = resolve_optimizer(registry, name)  # an unknown name lists the known ones
    if spec.label != spec.name:
        raise UsageError(f"{what} names an optimizer, not a spec: write {spec.name!r} "
                         f"(every spec of it counts), not {name!r}.")
    return name


def _baseline(registry: Registry, value: Any, where: str) -> str | None:
    return None if value is None else optimizer_name(registry, value, f"{where}: baseline")


def _caveats(registry: Registry, value: Any, where: str) -> dict[str, str]:
    table = _table(value, f"{where}: [suite.caveats]")
    return {optimizer_name(registry, k, f"{where}: [suite.caveats] key"):
            _text(v, f"{where}: caveat of {k}", '"budget far below its claim; see ..."')
            for k, v in table.items()}


def _seeds(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where}: seeds must be a whole number of at least 1, got {value!r} "
                         "(e.g. seeds = 3).")
    return value


def _list(value: Any, what: str) -> list[Any]:
    """A TOML array; a lone string or table is an error (iterating it would go wrong)."""
    if not isinstance(value, list):
        example = ('["random-search", "cge"]' if "optimizers" in what
                   else "[[tasks]] tables, one per task")
        raise UsageError(f"{what} must be a list, got {value!r}: write {example}.")
    return value


def _table(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a table, got {value!r}: write {{ key = value, ... }}.")
    return value


def _text(value: Any, what: str, example: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a string, got {value!r} (e.g. {example}).")
    return value


def _optimizer(registry: Registry, item: Any, where: str) -> Spec:
    if isinstance(item, str):
        return resolve_optimizer(registry, item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return resolve_optimizer(registry, item["name"],
                                 _table(item.get("params", {}), f"{where}: params of {item['name']}"))
    raise UsageError(f"{where}: an optimizer must be a spec string or {{name=..., params=...}}.")


def _task(registry: Registry, item: Any, where: str, index: int) -> SuiteTask:
    here = f"{where}, [[tasks]] #{index + 1}"
    item = _table(item, here)
    allowed = {"spec", "name", "params", "budget", "optimizers"}
    if set(item) - allowed:
        raise UsageError(f"{here}: unknown key(s) {sorted(set(item) - allowed)}; "
                         f"known: {sorted(allowed)}.")
    params = _table(item.get("params", {}), f"{here}: params")
    if "spec" in item or "name" in item:
        key = "spec" if "spec" in item else "name"
        spec = resolve_task(registry, _text(item[key], f"{here}: {key}", '"sphere[dim=8]"'),
                            params)
    else:
        raise UsageError(f"{here}: give spec = \"name[key=value]\" or name = \"...\".")
    default = registry.task(spec.name).cls.default_budget
    budget = default.override(**Budget.from_dict(
        _table(item.get("budget", {}), f"{here}: budget"), here).as_dict())
    optimizers = None
    if "optimizers" in item:
        optimizers = [_optimizer(registry, o, here)
                      for o in _list(item["optimizers"], f"{here}: optimizers")]
    return SuiteTask(spec, budget, optimizers)
