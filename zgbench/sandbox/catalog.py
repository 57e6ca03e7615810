"""The registry of ``zgbench run --isolate`` without importing plugin code in the driver.

The driver imports zgbench's built-in plugins (its own code) and asks one worker process per
installed plugin (``python -m zgbench.sandbox.catalog NAME``, which loads the built-ins and that
plugin only) to describe that plugin's tasks and optimizers as JSON: names, parameters,
class attributes, where the class lives. The driver builds stand-in classes from the
descriptions (:func:`stand_in`), enough to resolve specs, plan, fingerprint and record; the
real classes are imported only where runs execute (a task in the trusted worker, an
optimizer in its sandboxed process). A plugin that patches zgbench when imported patches its
own catalog process, and a description it fakes describes only its own components.

What the driver cannot do without the plugin's code: a component's own ``check_params``
runs when the component is built (the run fails instead of the command stopping with
status 2), and plugins' ``zgbench_run_finished`` hooks are not called.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zgbench import hookspecs, plugins
from zgbench.budget import Budget
from zgbench.contracts import Optimizer, Task
from zgbench.params import Param, Step
from zgbench.plugins import Entry, PluginError, Registry

#: Parameter types a description may name.
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "Step": Step}
#: Seconds a catalog process may take (it imports torch and the plugin).
TIMEOUT = 300.0
_PREFIX = "ZGBENCH-CATALOG "


@dataclass
class CatalogRegistry(Registry):
    """A :class:`Registry` whose plugin components are stand-ins, plus the suite folders
    the plugins named."""

    plugin_suite_dirs: list[Path] = field(default_factory=list)

    def suite_dirs(self) -> list[Path]:
        return super().suite_dirs() + list(self.plugin_suite_dirs)


def load(blocked: tuple[str, ...] = ()) -> CatalogRegistry:
    """Built-ins imported here, installed plugins described by their catalog processes."""
    names = [ep.name for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)
             if ep.name not in blocked]
    base = plugins.load(blocked=tuple(blocked) + tuple(names))
    registry = CatalogRegistry(manager=base.manager, tasks=base.tasks,
                               optimizers=base.optimizers, errors=base.errors, blocked=blocked)
    with ThreadPoolExecutor(max_workers=max(min(len(names), os.cpu_count() or 1), 1)) as pool:
        for name, outcome in zip(names, pool.map(_describe_in_process, names)):
            if isinstance(outcome, str):
                registry.errors.append(PluginError(name, outcome))
                continue
            _add(registry, name, outcome)
    return registry


def _describe_in_process(name: str) -> dict[str, Any] | str:
    """The plugin's description from its own catalog process, or why there is none."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run([sys.executable, "-m", "zgbench.sandbox.catalog", name],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"describing the plugin took more than {TIMEOUT:g} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith(_PREFIX)]
    if done.returncode != 0 or len(lines) != 1:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"its catalog process failed (exit {done.returncode}): {tail}"
    try:
        return json.loads(lines[0][len(_PREFIX):])
    except ValueError as exc:
        return f"its catalog process wrote no valid description: {exc}"


def _add(registry: CatalogRegistry, plugin: str, description: Any) -> None:
    """Stand-ins for the components ``description`` lists; a bad entry is a plugin error."""
    try:
        if type(description) is not dict:
            raise ValueError("not an object")
        version = str(description.get("version", "unknown"))
        for problem in description.get("errors", []):
            registry.errors.append(PluginError(plugin, str(problem)))
        registry.plugin_suite_dirs.extend(Path(str(d)) for d in description.get("suites", []))
        for item in description.get("components", []):
            cls = stand_in(item)
            table = registry.tasks if cls.kind == "task" else registry.optimizers
            other = registry.optimizers if cls.kind == "task" else registry.tasks
            if cls.name in table or cls.name in other:
                registry.errors.append(PluginError(
                    plugin, f"{cls.kind} name {cls.name!r} is already taken; ignored"))
                continue
            table[cls.name] = Entry(cls, plugin, version)
    except (TypeError, ValueError, KeyError) as exc:
        registry.errors.append(PluginError(plugin, f"its description is malformed: {exc}"))


# ------------------------------------------------------------------------ description
def describe(plugin: str) -> dict[str, Any]:
    """The JSON description of ``plugin``'s components (in the catalog process)."""
    others = [ep.name for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)
              if ep.name != plugin]
    registry = plugins.load(blocked=others)
    components = [_component(entry.cls) for table in (registry.tasks, registry.optimizers)
                  for entry in table.values() if entry.plugin == plugin]
    version = next((e.version for t in (registry.tasks, registry.optimizers)
                    for e in t.values() if e.plugin == plugin), "unknown")
    return {"version": version, "components": components,
            "suites": _suite_dirs(registry, plugin),
            "errors": [e.message for e in registry.errors if e.plugin == plugin]}


def _suite_dirs(registry: Registry, plugin: str) -> list[str]:
    module = registry.manager.get_plugin(plugin)
    hook = getattr(module, "zgbench_suite_dirs", None)
    return [str(d) for d in (hook() or [])] if callable(hook) else []


def _component(cls: type) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    item: dict[str, Any] = {
        "kind": cls.kind, "name": cls.name, "doc": cls.__doc__ or "",
        "module": cls.__module__, "qualname": cls.__qualname__,
        "file": str(Path(module.__file__).resolve()) if getattr(module, "__file__", None)
        else None, "missing": cls.missing_dependency(),
        "params": {name: _param(p) for name, p in cls.declared_params().items()},
    }
    if cls.kind == "task":
        item.update(provides=sorted(cls.provides), metrics=dict(cls.metrics),
                    primary_metric=cls.primary_metric, family=cls.family,
                    default_budget=cls.default_budget.as_dict(),
                    reference_note=str(getattr(cls, "reference_note", "") or ""))
    else:
        item.update(requires=sorted(cls.requires))
    return item


def _param(p: Param) -> dict[str, Any]:
    kind = next((n for n, t in TYPES.items() if p.type is t), None)
    if kind is None:
        raise TypeError(f"parameter {p.name!r} has type {p.type!r}, which a description "
                        "cannot carry (int, float, str, bool or a step size)")
    default = str(p.default) if isinstance(p.default, Step) else p.default
    return {"default": default, "help": p.help, "type": kind,
            "choices": None if p.choices is None else list(p.choices), "gt": p.gt, "ge": p.ge,
            "lt": p.lt, "le": p.le,
            "tune": list(p.tune) if isinstance(p.tune, tuple) else p.tune, "log": p.log,
            "execution": p.execution, "relative": p.relative}


# ---------------------------------------------------------------------------- stand-ins
def stand_in(item: dict[str, Any]) -> type:
    """A Task or Optimizer subclass standing for the described class in the driver: its
    name, parameters and class attributes, and a module whose ``__file__`` is the real
    source (hashed for the code fingerprint, never run)."""
    kind, name = item["kind"], item["name"]
    if kind not in ("task", "optimizer") or type(name) is not str or not name:
        raise ValueError(f"a component of kind {kind!r} named {name!r}")
    module = types.ModuleType(f"zgbench.sandbox.described.{item['module']}")
    module.__file__ = item["file"]
    sys.modules[module.__name__] = module
    missing = item.get("missing")
    attrs: dict[str, Any] = {
        "name": name, "__doc__": str(item.get("doc", "")), "__module__": module.__name__,
        "_origin": {"module": str(item["module"]), "qualname": str(item["qualname"]),
                    "file": item["file"]},
        "missing_dependency": classmethod(lambda cls: missing),
        "check_params": classmethod(lambda cls, params: None),
    }
    for pname, spec in dict(item["params"]).items():
        attrs[str(pname)] = _param_from(spec)
    if kind == "task":
        attrs.update(provides=frozenset(map(str, item["provides"])),
                     metrics={str(k): str(v) for k, v in dict(item["metrics"]).items()},
                     primary_metric=str(item["primary_metric"]), family=str(item["family"]),
                     default_budget=Budget.from_dict(dict(item["default_budget"])),
                     reference_note=str(item.get("reference_note", "")))
    else:
        attrs.update(requires=frozenset(map(str, item["requires"])))
    base = Task if kind == "task" else Optimizer
    qualname = str(item["qualname"]).rpartition(".")[2] or "Described"
    return type(qualname, (base,), attrs)


def _param_from(spec: dict[str, Any]) -> Param:
    kind = TYPES[spec["type"]]
    default = spec["default"]
    if type(default) is float and not math.isfinite(default):
        raise ValueError("a non-finite default")
    if spec.get("relative"):
        kind = None  # Param sets Step itself
    tune = spec.get("tune")
    return Param(default, str(spec.get("help", "")), type=kind,
                 choices=spec.get("choices"), gt=spec.get("gt"), ge=spec.get("ge"),
                 lt=spec.get("lt"), le=spec.get("le"),
                 tune=tuple(tune) if isinstance(tune, list) else tune,
                 log=bool(spec.get("log")), execution=bool(spec.get("execution")),
                 relative=bool(spec.get("relative")))


if __name__ == "__main__":
    print(_PREFIX + json.dumps(describe(sys.argv[1])), flush=True)
