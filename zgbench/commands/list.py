"""List every task and optimizer: name, plugin, capabilities, parameters with defaults, needs.

A component whose optional dependency is missing is shown with the extra to install. Plugins
that failed to load are reported as warnings above the tables.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench.cli import load_registry

HELP = "list every task and optimizer with its plugin, capabilities and parameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=("tasks", "optimizers"),
                        help="show only tasks or only optimizers")


def main(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    console = Console(width=max(Console().width, 140))
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
        description = escape(cls.description()) + (f" [yellow](needs: pip install 'zgbench[{cls.extra}]')[/yellow]"
                                           if missing else "")
        caps = ", ".join(sorted(getattr(cls, capability_attr))) or "-"
        table.add_row(name, f"{entry.plugin} {entry.version}", caps, escape(params or "-"),
                      description)
    return table
