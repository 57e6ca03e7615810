"""Modules imported on first use, for the ``zgbench`` command's subcommand modules.

``zgbench`` imports every subcommand module to build its parser, so whatever they import at
the top is paid by every command, ``zgbench --help`` and a usage error included: torch and
pandas alone take seconds. A subcommand module binds such a module with :func:`lazy` instead
(``torch = lazy("torch")``) and uses it as before (``torch.device(...)``); the import happens
at the first attribute read, in the command that needs it.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        self.__name = name

    def __getattr__(self, attr: str) -> Any:
        # import_module returns the loaded module from sys.modules after the first time
        return getattr(importlib.import_module(self.__name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name!r}>"


def lazy(name: str) -> Any:
    """The module ``name``, imported on first attribute access (typed ``Any``: use it like
    the module)."""
    return LazyModule(name)
