"""Hook specifications: the whole plugin contract of zgbench.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`. Built-in tasks
and optimizers register through exactly these hooks, as pytest registers its own plugins.
A third-party distribution exposes its plugin module in the entry-point group ``zgbench``::

    [project.entry-points.zgbench]
    myplugin = "my_package.plugin"
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "zgbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zgbench_tasks() -> list[type]:
    """Return the :class:`~zgbench.Task` subclasses this plugin contributes."""


@hookspec
def zgbench_optimizers() -> list[type]:
    """Return the :class:`~zgbench.Optimizer` subclasses this plugin contributes."""


@hookspec
def zgbench_suite_dirs() -> list[str]:
    """Return folders holding suite files (``NAME.toml``) this plugin ships."""


@hookspec
def zgbench_run_finished(record: dict[str, Any]) -> None:
    """Called on the driver after each run's record is stored (e.g. to log to a tracker).

    ``record`` is the stored JSON-compatible dict (see :mod:`zgbench.record`). Exceptions
    raised here are reported as warnings and never fail the run.
    """
