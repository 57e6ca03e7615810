"""The two contracts a plugin implements, and the check that a plugin's class meets them.

The contracts live in their own modules: :class:`~zgbench.task.Task` (``zgbench/task.py``),
:class:`~zgbench.optimizer.Optimizer` (``zgbench/optimizer.py``) and what they share,
:class:`~zgbench.component.Component` (``zgbench/component.py``). Plugins import them from
``zgbench``; the core imports them from here or from their modules. This module adds
:func:`validate_class`, which the plugin manager runs on every class a hook returns.

Layering: :mod:`zgbench.problem` imports the task contract only, and nothing here is imported
by it (``tests/test_layering.py`` checks), so the problem and the contracts never import each
other.
"""

from __future__ import annotations

import re

from zgbench.component import Component
from zgbench.optimizer import Optimizer
from zgbench.params import declared
from zgbench.task import CAPABILITIES, Task

__all__ = ["CAPABILITIES", "Component", "Optimizer", "Task", "validate_class"]

#: Attributes the constructors set on every instance (beside the class attributes).
_INSTANCE_ATTRS = ("seed", "device", "dtype", "params")


def validate_class(obj: object, base: type[Component]) -> str | None:
    """Why ``obj`` is not a valid ``base`` subclass, or ``None`` if it is."""
    if not isinstance(obj, type):
        return f"returned {obj!r}, which is not a class"
    if not issubclass(obj, base):
        return f"{obj.__qualname__} is not a subclass of zgbench.{base.__name__}"
    if not isinstance(obj.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", obj.name):
        return (f"{obj.__qualname__} has no valid name {obj.name!r}: use lower-case letters, "
                "digits, '-', '.' and '_', starting with a letter or digit (e.g. 'my-task')")
    for param in declared(obj):  # set as attributes: one named like zgbench's would replace it
        if param in _INSTANCE_ATTRS or (param != "dim" and hasattr(base, param)):
            return (f"{obj.__qualname__}: parameter {param!r} would replace zgbench's own "
                    f"{base.__name__}.{param}; give it another name")
    if base is Task:
        for method in ("initial", "loss", "evaluate"):
            if getattr(obj, method) is getattr(Task, method):
                return f"task {obj.name!r} does not implement {method}()"
        if obj.primary_metric not in obj.metrics:
            return (
                f"task {obj.name!r}: primary_metric {obj.primary_metric!r} is not one of its "
                f"metrics {sorted(obj.metrics)}"
            )
        bad = {m: d for m, d in obj.metrics.items() if d not in ("min", "max")}
        if bad:
            return f"task {obj.name!r}: metric directions must be 'min' or 'max', got {bad}"
    if base is Optimizer and obj.run is Optimizer.run:
        return f"optimizer {obj.name!r} does not implement run()"
    return None
