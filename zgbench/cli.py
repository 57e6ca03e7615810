"""The ``zgbench`` command line.

Each subcommand is a module in :mod:`zgbench.commands` with ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``; this module finds them, adds the options
every command shares (``-p no:NAME``), and turns :class:`~zgbench.errors.UsageError` into a
message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

import zgbench
from zgbench import commands, watchdog
from zgbench.errors import UsageError

if TYPE_CHECKING:  # the plugins (and torch) are imported by the commands that need them
    from zgbench.plugins import Registry

console = Console(stderr=True)

DESCRIPTION = """\
zgbench: benchmark optimizers on non-differentiable pipelines.

Tasks (renderers, simulators, networks, synthetic functions) and optimizers (zeroth-order
estimators, surrogate gradients, CMA-ES, ...) are plugins; `zgbench run` runs their cross
product under a metered budget and writes one record per run; `zgbench leaderboard` ranks them.

  zgbench list                                   every task and optimizer, with parameters
  zgbench run                                    the quick suite (CPU, minutes)
  zgbench run --tasks "sphere[dim=8]",step --optimizers random-search,cge --seeds 3
  zgbench leaderboard results/ -o leaderboards/  CSVs and convergence plots
"""


def add_plugin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p", dest="plugin_options", action="append", default=[], metavar="no:NAME",
        help="disable the plugin NAME (repeatable), as in pytest: -p no:estimators")


def add_baseline_argument(parser: argparse.ArgumentParser) -> None:
    """``--baseline``, shared by the commands that write boards (run, tune, leaderboard,
    report)."""
    parser.add_argument("--baseline", metavar="OPTIMIZER",
                        help="the optimizer (a name) whose median is normalised score 1 "
                             "(default: the suite's `baseline`; the quick suite: random-search)")


def load_registry(args: argparse.Namespace, described: bool = False) -> Registry:
    """The registry with the plugins blocked by ``-p no:NAME``; warns about broken plugins.

    ``described=True`` (``zgbench list``): the classes may be stand-ins read from the metadata
    cache (:mod:`zgbench.registry_cache`), enough to list them but not to run them."""
    blocked = blocked_plugins(args)
    if described:
        from zgbench import registry_cache

        registry = registry_cache.load(tuple(blocked))
    else:
        from zgbench import plugins

        registry = plugins.load(blocked=blocked)
    for error in registry.errors:
        console.print(f"[yellow]warning:[/yellow] {escape(str(error))}", highlight=False)
    return registry


def blocked_plugins(args: argparse.Namespace) -> list[str]:
    """The plugins ``-p no:NAME`` disables."""
    blocked = []
    for option in getattr(args, "plugin_options", []):
        if not option.startswith("no:") or len(option) <= 3:
            raise UsageError(f"-p {option}: only -p no:NAME (disable a plugin) is supported.")
        blocked.append(option[3:])
    return blocked


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield info.name.replace("_", "-"), importlib.import_module(
                f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zgbench", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"zgbench {zgbench.__version__}")
    # -p also before the subcommand (zgbench -p no:X run), as pytest takes it anywhere; its own
    # dest, since the subparser's default [] would overwrite it: main() joins the two lists
    parser.add_argument(
        "-p", dest="global_plugin_options", action="append", default=[], metavar="no:NAME",
        help="disable the plugin NAME (repeatable); before or after the command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules():
        doc = (module.__doc__ or "").strip()
        sp = sub.add_parser(name, help=module.HELP, description=doc,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_plugin_options(sp)
        module.add_arguments(sp)
        sp.set_defaults(handler=module.main)
    return parser


#: Where the warnings about the user's data are defined (module, class).
_DATA_WARNINGS = (("zgbench.store", "RecordWarning"), ("zgbench.fingerprint", "StaleWarning"))


def _data_warnings() -> tuple[type[Warning], ...]:
    """The data warning classes whose modules are loaded: a warning of one of the others
    cannot have been raised, and importing them here would slow every command down."""
    return tuple(getattr(sys.modules[module], name) for module, name in _DATA_WARNINGS
                 if module in sys.modules)


def _show_warning(message, category, filename, lineno, file=None, line=None,
                  _default=warnings.showwarning) -> None:
    """Warnings about the user's data (a broken record, stale results) as one plain line,
    not a source line."""
    if issubclass(category, _data_warnings()):
        console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False,
                      soft_wrap=True)
    else:
        _default(message, category, filename, lineno, file, line)


#: Arguments that name a file or folder, and how a user writes each.
_PATHS = {"out": "--out", "results": "RESULTS", "old": "OLD", "new": "NEW",
          "suite_out": "--suite-out", "publish": "--publish", "claims": "--claims"}


def _check_paths(args: argparse.Namespace) -> None:
    """An empty path (``--out ""``) means the current folder to ``pathlib``: refuse it rather
    than write records or pictures among the user's own files."""
    for name, flag in _PATHS.items():
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise UsageError(f"{flag} is empty ({value!r}): give a folder or file name "
                             "(e.g. --out results); use . to mean the current folder.")


def main(argv: Sequence[str] | None = None) -> int:
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.plugin_options = [*args.global_plugin_options, *getattr(args, "plugin_options", [])]
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        _check_paths(args)
        with watchdog.ending_signals():  # SIGTERM/SIGHUP unwind: workers stop with zgbench
            return int(args.handler(args) or 0)
    except watchdog.Terminated as exc:
        console.print(f"{exc}: workers stopped, finished runs are stored; run the same command "
                      "to resume.")
        return 128 + exc.signum
    except UsageError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: finished runs are stored; run the same command to resume.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
