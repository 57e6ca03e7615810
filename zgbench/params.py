"""Declared hyper-parameters: typed, defaulted, documented.

A task or optimizer declares its parameters as class attributes::

    class Sphere(Task):
        dim = Param(8, "number of coordinates", ge=1)

so that specs like ``sphere[dim=16]`` can be validated and coerced before anything runs, and
``zgbench list`` can show every knob with its default. Values arrive as strings from the
command line and as TOML values from suite files; both go through :meth:`Param.coerce`.

A step size (σ, μ, an Adam learning rate) is declared ``Param(0.3, ..., relative=True)``: its
value is a :class:`Step`, a multiple of the task's per-coordinate scale (``Task.scale``), so
one default means the same on every task, as one σ means the same on every function of COCO's
common [-5, 5]^d box. ``sigma=abs:0.02`` (TOML ``sigma = "abs:0.02"``) gives an absolute value
instead. The optimizer turns a Step into per-coordinate lengths with ``Problem.step``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zgbench.errors import UsageError, unknown

_TRUE = {"true", "1", "yes", "on"}
#: The prefix of an absolute step size in a spec or a TOML value: ``sigma=abs:0.02``.
ABSOLUTE = "abs:"


@dataclass(frozen=True)
class Step:
    """A step-size value: ``value`` times the task's scale, or ``value`` itself if ``absolute``.

    ``str`` is the spec form, ``"0.3"`` or ``"abs:0.3"``, so canonical specs and labels read
    and round-trip as they are written (a relative step prints as the plain number it always
    was, and run identities of default specs do not change). Not a number on purpose: an
    optimizer cannot use it as one by mistake; ``Problem.step(value)`` resolves it."""

    value: float
    absolute: bool = False

    def __str__(self) -> str:
        return f"{ABSOLUTE if self.absolute else ''}{self.value}"

    @classmethod
    def parse(cls, value: Any) -> "Step":
        """A Step from a spec string (``"0.3"``, ``"abs:0.3"``), a number or a Step."""
        if isinstance(value, Step):
            return value
        if isinstance(value, bool):
            raise ValueError("a boolean is not a step size")
        if isinstance(value, (int, float)):
            return cls(float(value))
        text = str(value).strip()
        absolute = text.lower().startswith(ABSOLUTE)
        number = text[len(ABSOLUTE):].strip() if absolute else text
        try:
            return cls(float(number), absolute)
        except ValueError:
            raise ValueError(f"write a multiple of the task's scale (e.g. 0.3) or an absolute "
                             f"value as {ABSOLUTE}NUMBER (e.g. {ABSOLUTE}0.02)") from None
_FALSE = {"false", "0", "no", "off"}


@dataclass
class Param:
    """One hyper-parameter: a default, a one-line help text, a type and optional choices.

    The type is taken from the default unless given (needed when the default is ``None``).
    ``gt``/``ge``/``lt``/``le`` bound a number (greater than, at least, less than, at most),
    so ``batch=0`` or ``lr=-1`` is a usage error before anything runs, not a run that fails
    or silently does nothing. A float is never NaN nor infinite (a record stores every
    parameter, and JSON has no such numbers).
    """

    default: Any
    help: str = ""
    type: type | None = None
    choices: Sequence[Any] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    #: What ``zgbench tune`` may search: ``(low, high)`` for an int or float parameter, or
    #: ``True`` for one with ``choices`` (or a bool): every choice. ``None``: not tunable.
    tune: tuple[float, float] | bool | None = None
    #: Search ``(low, high)`` on a log scale (step sizes, learning rates, populations).
    log: bool = False
    #: An execution option: it changes how the numbers are computed, not which (``cge``'s
    #: feature reuse). It is part of a run's identity but not of its seeds, so a run with and
    #: without it draws the same keys and random numbers and compares number for number.
    execution: bool = False
    #: A step size: the value is a :class:`Step`, a multiple of the task's scale unless
    #: written ``abs:VALUE``. The bounds and the tuning range apply to the number.
    relative: bool = False
    name: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if self.relative:  # a step size is positive unless its declaration bounds it
            self.type = Step
            self.default = Step.parse(self.default)
            if self.gt is None and self.ge is None:
                self.gt = 0.0
        if self.type is None:
            if self.default is None:
                raise TypeError("Param(None, ...) needs an explicit type=")
            self.type = type(self.default)
        if isinstance(self.tune, tuple):
            low, high = self.tune
            if self.type not in (int, float, Step) or not low < high or (self.log and low <= 0):
                raise TypeError(f"Param tune={self.tune!r}: give (low, high) with low < high "
                                "(low > 0 with log=True) on an int or float parameter")
        elif self.tune and self.choices is None and self.type is not bool:
            raise TypeError("Param tune=True needs choices= (or a bool): give (low, high) "
                            "for a number")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert ``value`` to this parameter's type or raise a :class:`UsageError`."""
        if value is None and self.default is None:
            return None
        try:
            out = _convert(value, self.type)
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int("inf")
            reason = f" ({exc})" if isinstance(exc, _Reason) else ""
            raise UsageError(
                f"bad value {value!r} for parameter {self.name!r} of {owner}: expected "
                f"{_KINDS.get(self.type, self.type.__name__)}, got {value!r}{reason}."
            ) from None
        if self.choices is not None and out not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise UsageError(
                f"bad value {value!r} for parameter {self.name!r} of {owner}: choose one of {allowed}."
            )
        number = out.value if isinstance(out, Step) else out
        if isinstance(number, (int, float)) and not isinstance(number, bool) and not self.admits(number):
            raise UsageError(f"bad value {value!r} for parameter {self.name!r} of {owner}: "
                             f"use a number {self.bounds() or '(not NaN)'}"
                             f"{' (a multiple of the task scale, or abs:NUMBER)' if self.relative else ''}.")
        if isinstance(number, float) and not math.isfinite(number):  # a record cannot store it
            raise UsageError(f"bad value {value!r} for parameter {self.name!r} of {owner}: "
                             f"use a finite number{' ' + self.bounds() if self.bounds() else ''}"
                             " (inf is not a parameter value).")
        return out

    def admits(self, value: float) -> bool:
        """Whether a number lies within the bounds (NaN never does)."""
        return value == value and all(bound is None or test(value, bound) for bound, test in (
            (self.gt, operator.gt), (self.ge, operator.ge),
            (self.lt, operator.lt), (self.le, operator.le)))

    def bounds(self) -> str:
        """The bounds in words, e.g. ``>= 1``, ``> 0 and < 1``; ``""`` if there are none."""
        words = [f"{op} {bound:g}" for op, bound in
                 ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if bound is not None]
        return " and ".join(words)

    def describe(self) -> str:
        """``name=default`` with choices and the tuning range, as ``zgbench list`` shows it."""
        text = f"{self.name}={self.default}"
        if self.relative:
            text += " x scale" if not self.default.absolute else " (absolute)"
        if self.choices is not None:
            text += " {" + "|".join(map(str, self.choices)) + "}"
        if self.bounds():
            text += f" ({self.bounds()})"
        if isinstance(self.tune, tuple):
            text += f" tune {self.tune[0]:g}..{self.tune[1]:g}{' log' if self.log else ''}"
        elif self.tune:
            text += " tune"
        return text


#: What a value of each parameter type is, in the words of an error message
#: ("expected an integer, got 'abc'", not Python's "could not convert string to float").
_KINDS: dict[type, str] = {int: "an integer", float: "a number", bool: "true or false",
                           str: "text", Step: "a step size (a number, or abs:NUMBER)"}


class _Reason(ValueError):
    """A conversion failure whose message adds to "expected X, got Y" (Python's own messages
    of float() and int() do not, and are left out)."""


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Reason("use true or false")
    if kind is int:
        if isinstance(value, bool):
            raise _Reason("a boolean is not an integer")
        number = float(value) if isinstance(value, str) else value
        if float(number) != int(number):
            raise _Reason("not a whole number")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise _Reason("a boolean is not a number")
        return float(value)
    if kind is str:
        return str(value)
    if kind is Step:
        return Step.parse(value)
    return kind(value)


def declared(cls: type) -> dict[str, Param]:
    """All parameters a class declares, its bases' first, in declaration order."""
    params: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Param):
                params[name] = value
    return params


def resolve(cls: type, given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Validate and coerce ``given`` against ``cls``'s declared parameters; fill defaults."""
    params = declared(cls)
    for key in given:
        if key not in params:
            raise unknown("parameter", key, params, of=f"of {owner}")
    return {
        name: param.coerce(given[name], owner) if name in given else param.default
        for name, param in params.items()
    }
