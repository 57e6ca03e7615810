"""Find plugins, call their hooks, and build the registry of tasks and optimizers.

Built-in plugins are the modules of :mod:`zgbench.tasks` and :mod:`zgbench.optimizers`
(each module one plugin, named after it: ``synthetic``, ``estimators``, ...). Third-party
plugins come from the entry-point group ``zgbench``. ``-p no:NAME`` blocks one by name.

Loading never stops at a broken plugin: each problem is collected as a :class:`PluginError`
naming the plugin, shown by ``zgbench list`` and ``zgbench run``, and the others still load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

import zgbench
from zgbench import hookspecs
from zgbench.errors import unknown

if TYPE_CHECKING:  # the contracts import torch: loaded with the plugins, not with this module
    from zgbench.contracts import Component

BUILTIN_PACKAGES = ("zgbench.tasks", "zgbench.optimizers")


@dataclass(frozen=True)
class Entry:
    """A registered component class and the plugin it came from."""

    cls: type[Component]
    plugin: str
    version: str


@dataclass(frozen=True)
class PluginError:
    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.message}"


@dataclass
class Registry:
    """Every task and optimizer by name, the plugin manager, and what went wrong loading."""

    manager: pluggy.PluginManager
    tasks: dict[str, Entry] = field(default_factory=dict)
    optimizers: dict[str, Entry] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    blocked: tuple[str, ...] = ()

    def task(self, name: str) -> Entry:
        if name not in self.tasks:
            raise unknown("task", name, self.tasks)
        return self.tasks[name]

    def optimizer(self, name: str) -> Entry:
        if name not in self.optimizers:
            raise unknown("optimizer", name, self.optimizers)
        return self.optimizers[name]

    def suite_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        for result in self.manager.hook.zgbench_suite_dirs():
            dirs.extend(Path(d) for d in result or [])
        return dirs


def builtin_modules() -> list[tuple[str, str]]:
    """(plugin name, module path) for every built-in plugin module."""
    found = []
    for package in BUILTIN_PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                found.append((info.name, f"{package}.{info.name}"))
    return found


def load(blocked: Iterable[str] = (), extra_plugins: Iterable[object] = ()) -> Registry:
    """Build the registry: built-ins, entry points, then ``extra_plugins`` (e.g. from tests)."""
    blocked = tuple(blocked)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager, blocked=blocked)
    versions: dict[str, str] = {}
    for name in blocked:
        manager.set_blocked(name)
    for name, module_path in builtin_modules():
        if name not in blocked:
            _register(registry, name, lambda m=module_path: importlib.import_module(m))
            versions[name] = zgbench.__version__
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        if ep.name in blocked:
            continue
        _register(registry, ep.name, ep.load)
        versions[ep.name] = ep.dist.version if ep.dist else "unknown"
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        _register(registry, name, lambda p=plugin: p)
        versions[name] = getattr(plugin, "__version__", "unknown")
    _check_hooks(registry)
    _collect(registry, versions)
    return registry


def _register(registry: Registry, name: str, loader) -> None:
    try:
        plugin = loader()
        registry.manager.register(plugin, name=name)
    except Exception as exc:  # a broken plugin must not take the others down
        registry.errors.append(PluginError(name, f"failed to load: {type(exc).__name__}: {exc}"))


def _check_hooks(registry: Registry) -> None:
    """Report hook functions that can never be called, per plugin, instead of ignoring them.

    Two mistakes load silently in pluggy: a misspelled hook name (``zgbench_task``) registers
    an implementation no specification calls (what pluggy's ``check_pending`` looks for, but
    that raises on the first and names no plugin), and a ``zgbench_*`` function without
    ``@hookimpl`` is not registered at all. Either way the plugin's tasks or optimizers would be
    missing from ``zgbench list`` with no word why."""
    known = sorted(n for n in dir(hookspecs) if n.startswith(f"{hookspecs.PROJECT}_"))
    manager = registry.manager
    for name, caller in vars(manager.hook).items():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.opts.get("optionalhook"):
                registry.errors.append(PluginError(
                    manager.get_name(impl.plugin),
                    f"hook {name!r} matches no hook specification and is never called"
                    f"{_did_you_mean(name, known)}; known hooks: {', '.join(known)}"))
    for plugin_name, plugin in manager.list_name_plugin():
        for attr in dir(plugin):
            value = getattr(plugin, attr, None)
            if (attr.startswith(f"{hookspecs.PROJECT}_") and callable(value)
                    and manager.parse_hookimpl_opts(plugin, attr) is None):
                registry.errors.append(PluginError(
                    plugin_name, f"function {attr!r} is not decorated with @zgbench.hookimpl, "
                                 "so it is never called; add the decorator"))


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _collect(registry: Registry, versions: dict[str, str]) -> None:
    from zgbench.contracts import Optimizer, Task

    for hook, base, table in (
        ("zgbench_tasks", Task, registry.tasks),
        ("zgbench_optimizers", Optimizer, registry.optimizers),
    ):
        for impl in getattr(registry.manager.hook, hook).get_hookimpls():
            plugin = registry.manager.get_name(impl.plugin)
            try:
                classes = impl.function()
            except Exception as exc:
                registry.errors.append(PluginError(plugin, f"{hook}() raised {type(exc).__name__}: {exc}"))
                continue
            for cls in _as_list(classes):
                _add(registry, table, cls, base, plugin, versions.get(plugin, "unknown"))
    _one_namespace(registry, list(versions))


def _one_namespace(registry: Registry, order: list[str]) -> None:
    """A name is a task or an optimizer, not both (``zgbench list NAME`` and people read it as
    one thing): of a task and an optimizer sharing one, the earlier plugin's (built-ins come
    first) is kept, so an installed plugin cannot shadow a built-in of the other kind."""
    def rank(entry: Entry) -> int:
        return order.index(entry.plugin) if entry.plugin in order else len(order)

    for name in sorted(set(registry.tasks) & set(registry.optimizers)):
        task, optimizer = registry.tasks[name], registry.optimizers[name]
        kept, dropped, table = ((task, optimizer, registry.optimizers)
                                if rank(task) <= rank(optimizer)
                                else (optimizer, task, registry.tasks))
        del table[name]
        registry.errors.append(PluginError(
            dropped.plugin, f"{dropped.cls.kind} name {name!r} is already the name of "
                            f"{kept.cls.kind} {name!r} (plugin {kept.plugin!r}); ignored: rename it"))


def _as_list(classes: object) -> list[object]:
    if classes is None:
        return []
    if isinstance(classes, (list, tuple)):
        return list(classes)
    return [classes]


def _add(registry: Registry, table: dict[str, Entry], cls: object, base: type, plugin: str,
         version: str) -> None:
    from zgbench.contracts import validate_class

    problem = validate_class(cls, base)
    if problem:
        registry.errors.append(PluginError(plugin, problem))
        return
    if cls.name in table and table[cls.name].cls is not cls:
        other = table[cls.name].plugin
        registry.errors.append(PluginError(
            plugin, f"{base.kind} name {cls.name!r} is already taken by plugin {other!r}; ignored"))
        return
    table[cls.name] = Entry(cls, plugin, version)

