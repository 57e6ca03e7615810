"""List every task and optimizer: name, plugin, capabilities, parameters with defaults, needs.

A component whose optional dependency is missing is shown with the extra to install. Plugins
that failed to load are reported as warnings above the tables. ``zgbench list NAME`` shows one
task or optimizer: its description and each parameter with its default, choices and help.
A task's row shows its scale (``Task.scale``, or its ``scale_note`` where the scale is set per
instance); a step-size parameter shows its default as a multiple of it (``sigma=0.3 x scale``).
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench.cli import load_registry
from zgbench.errors import unknown

HELP = "list every task and optimizer with its plugin, capabilities and parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", metavar="tasks|optimizers|NAME",
                        help="show only tasks, only optimizers, or one component's parameters "
                             "with their help")


def main(args: argparse.Namespace) -> int:
    registry = load_registry(args, described=True)  # from the metadata cache if fresh
    console = Console(width=max(Console().width, 140))
    if args.what not in (None, "tasks", "optimizers"):
        console.print(_details(registry, args.what))
        return 0
    if args.what in (None, "tasks"):
        console.print(_table("Tasks", registry.tasks, "provides"))
    if args.what in (None, "optimizers"):
        console.print(_table("Optimizers", registry.optimizers, "requires"))
    return 0


def _table(title: str, entries, capability_attr: str) -> Table:
    table = Table(title=title, show_lines=False, title_justify="left")
    for column in ("name", "plugin", capability_attr, "parameters (defaults)", "description"):
        table.add_column(column, overflow="fold")
    for name, entry in sorted(entries.items()):
        cls = entry.cls
        params = ", ".join(p.describe() for p in cls.declared_params().values())
        missing = cls.missing_dependency()
        # escaped: rich would read `[pde]` in an install line as a markup tag
        needs = escape(f"(needs: {cls.install_command()})")
        description = escape(cls.description()) + (f" [yellow]{needs}[/yellow]" if missing else "")
        caps = ", ".join(sorted(getattr(cls, capability_attr))) or "-"
        if cls.kind == "task":
            params = f"{scale_summary(cls)}; {params or '-'}"
        table.add_row(name, f"{entry.plugin} {entry.version}", caps, escape(params or "-"),
                      description)
    return table


def scale_summary(cls: type) -> str:
    """``scale 1``, ``scale 0.061 (per-coordinate, mean)`` or the task's ``scale_note``: what
    a relative step size is a multiple of, without building the task."""
    note = getattr(cls, "scale_note", "")
    if note:
        return f"scale {note}"
    scale = getattr(cls, "scale", 1.0)
    if isinstance(scale, (int, float)):
        return f"scale {scale:g}"
    values = scale.detach().double().reshape(-1)
    if values.numel() == 1 or bool((values == values[0]).all()):
        return f"scale {float(values[0]):g}"
    return f"scale {float(values.mean()):.3g} (per-coordinate, mean)"


#: A parameter's type in words, for :func:`allowed_values`.
_TYPES = {"int": "integer", "float": "number", "bool": "true|false", "str": "text",
          "Step": "step size"}


def allowed_values(param) -> str:
    """What a parameter accepts: its choices, else its type with its declared bounds
    (``integer >= 1``, ``number > 0 and < 1``), else the type alone (``any integer``):
    ``zgbench list NAME`` shows every parameter's bounds, and that it has none."""
    if param.choices is not None:
        return "|".join(map(str, param.choices))
    kind = _TYPES.get(param.type.__name__, param.type.__name__)
    if param.bounds():
        return f"{kind} {param.bounds()}"
    return kind if param.type in (bool, str) else f"any {kind}"


def _details(registry, name: str) -> Table:
    """One task or optimizer: every parameter with its default, choices (or bounds) and help."""
    entries = {**registry.optimizers, **registry.tasks}  # a task and an optimizer never share
    if name not in entries:
        raise unknown("task or optimizer", name, entries)
    entry = entries[name]
    cls = entry.cls
    table = Table(title=f"{cls.kind} {name} ({entry.plugin} {entry.version}): "
                        f"{escape(cls.description())}", title_justify="left")
    for column in ("parameter", "default", "allowed values", "tune", "help"):
        table.add_column(column, overflow="fold")
    for param in cls.declared_params().values():
        tune = (f"{param.tune[0]:g}..{param.tune[1]:g}{' log' if param.log else ''}"
                if isinstance(param.tune, tuple) else "choices" if param.tune else "")
        default = f"{param.default} x scale" if param.relative and not param.default.absolute \
            else str(param.default)
        table.add_row(param.name, escape(default), escape(allowed_values(param)), tune,
                      escape(param.help))
    missing = cls.missing_dependency()
    notes = [scale_summary(cls)] if cls.kind == "task" else []
    if any(p.relative for p in cls.declared_params().values()):
        notes.append("x scale: a multiple of the task's scale; abs:VALUE gives an absolute one")
    if missing:
        notes.append(missing)
    if notes:
        table.caption = escape("; ".join(notes))
    return table
