"""What tasks and optimizers share: :class:`Component` (name, parameters, optional needs).

A component is built from keyword arguments checked against its declared
:class:`~zgbench.params.Param` attributes, so a spec string such as ``sphere[dim=16]`` or a
TOML table describes an instance completely. :mod:`zgbench.task` and :mod:`zgbench.optimizer`
subclass it; this module imports neither, so both can import it.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from zgbench.errors import MissingExtra
from zgbench.params import Param, declared, resolve


class Component:
    """What tasks and optimizers share: a name, parameters, a description, optional needs."""

    #: Unique name used in specs, e.g. ``"sphere"``. Lower case, digits and dashes.
    name: ClassVar[str] = ""
    #: Python modules this component imports lazily, and the extra that installs them.
    needs: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: The command that installs ``needs``, for a plugin's own package (e.g.
    #: ``"pip install 'my-plugin[fast]'"``); default: zgbench's ``extra``.
    install: ClassVar[str | None] = None
    kind: ClassVar[str] = "component"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = resolve(type(self), params, f"{self.kind} {self.name!r}")
        for key, value in self.params.items():
            setattr(self, key, value)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Validate a full set of coerced parameter values before anything runs.

        Override to check what a type cannot express (ranges, combinations, names looked up
        in a library); raise :class:`~zgbench.errors.UsageError` with the fix. Called when a
        spec is resolved, so bad input exits with status 2 instead of failing a run.
        """

    @classmethod
    def declared_params(cls) -> dict[str, Param]:
        return declared(cls)

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring: ``zgbench list`` shows it."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def missing_dependency(cls) -> str | None:
        """A message naming the extra to install if a needed module is absent, else ``None``."""
        missing = [m for m in cls.needs if _absent(m)]
        if not missing:
            return None
        modules = f"missing module{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        what = "modules that are not installed" if cls.install else f"the extra {cls.extra or 'all'}"
        return f"{cls.kind} {cls.name!r} needs {what} ({modules}): {cls.install_command()}"

    @classmethod
    def install_command(cls) -> str:
        """How to install what :attr:`needs` lists: :attr:`install`, else zgbench's extra."""
        return cls.install or f"pip install 'zgbench[{cls.extra or 'all'}]'"

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`MissingExtra` if an optional dependency is not installed."""
        message = cls.missing_dependency()
        if message:
            raise MissingExtra(message)


def _absent(module: str) -> bool:
    """Whether ``module`` cannot be imported (``a.b`` with no ``a`` included)."""
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True
