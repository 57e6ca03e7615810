"""Specs: ``name[key=value,...]`` strings and suite files, resolved against the registry.

A :class:`Spec` is a component name plus its parameters, validated and coerced against the
class's declared :class:`~zgbench.params.Param`\\ s. Two specs that mean the same instance have
the same :attr:`Spec.canonical` form (every parameter, sorted), which is what run identities
hash; :attr:`Spec.label` shows only what differs from the defaults, for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from zgbench.errors import UsageError
from zgbench.plugins import Entry, Registry
from zgbench.params import resolve

_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(.*)\])?\s*$", re.S)


@dataclass(frozen=True)
class Spec:
    """A resolved task or optimizer instance description."""

    kind: str  # "task" or "optimizer"
    name: str
    params: tuple[tuple[str, Any], ...]  # every declared parameter, sorted by name
    defaults: tuple[tuple[str, Any], ...]
    execution: tuple[str, ...] = ()  # the names of its execution options (Param(execution=))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def canonical(self) -> str:
        return _format(self.name, self.params)

    @property
    def stream(self) -> str:
        """The canonical form with every execution option at its default: what a run's seeds
        derive from (so the default setting keeps the seeds it always had, and the other
        settings share them)."""
        defaults = dict(self.defaults)
        return _format(self.name, tuple((k, defaults[k] if k in self.execution else v)
                                        for k, v in self.params))

    @property
    def label(self) -> str:
        defaults = dict(self.defaults)
        changed = tuple((k, v) for k, v in self.params if defaults.get(k) != v)
        return _format(self.name, changed)

    def as_dict(self) -> dict[str, Any]:
        # TEMP scaffolding of the scale API: a Step is stored as its spec text
        params = {k: str(v) if type(v).__name__ == "Step" else v for k, v in self.params}
        return {"name": self.name, "params": params, "label": self.label,
                "canonical": self.canonical}


def _format(name: str, params: tuple[tuple[str, Any], ...]) -> str:
    if not params:
        return name
    inner = ",".join(f"{k}={_fmt_value(v)}" for k, v in params)
    return f"{name}[{inner}]"


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split_list(text: str) -> list[str]:
    """Split ``a[x=1,y=2],b`` at commas outside brackets."""
    items, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    items = [item.strip() for item in items]
    if depth != 0:
        raise UsageError(f"unbalanced brackets in {text!r}: write name[key=value,...].")
    if any(not item for item in items):
        raise UsageError(f"empty entry in list {text!r}: separate specs with single commas.")
    return items


def parse(text: str) -> tuple[str, dict[str, str]]:
    """``"sphere[dim=8]"`` -> ``("sphere", {"dim": "8"})``. Values stay strings here."""
    if text.count("[") != text.count("]"):
        raise UsageError(f"unbalanced brackets in {text!r}: write name[key=value,...].")
    match = _SPEC.match(text)
    if not match:
        raise UsageError(
            f"cannot read spec {text!r}: write name or name[key=value,...], e.g. sphere[dim=8]."
        )
    name, inner = match.group(1), match.group(2)
    params: dict[str, str] = {}
    for item in split_list(inner) if inner and inner.strip() else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"cannot read {item!r} in spec {text!r}: write key=value.")
        key = key.strip()
        if key in params:
            raise UsageError(f"parameter {key!r} given twice in spec {text!r}.")
        params[key] = value.strip()
    return name, params


def build(entry: Entry, params: dict[str, Any]) -> Spec:
    """Validate ``params`` for ``entry``'s class and return the resolved :class:`Spec`."""
    cls = entry.cls
    values = resolve(cls, params, f"{cls.kind} {cls.name!r}")
    cls.check_params(values)
    defaults = resolve(cls, {}, f"{cls.kind} {cls.name!r}")  # TEMP scaffolding: Step defaults
    return Spec(
        kind=cls.kind,
        name=cls.name,
        params=tuple(sorted(values.items())),
        defaults=tuple(sorted(defaults.items())),
        execution=tuple(sorted(n for n, p in cls.declared_params().items() if p.execution)),
    )


def resolve_task(registry: Registry, text: str, params: dict[str, Any] | None = None) -> Spec:
    name, parsed = parse(text)
    return build(registry.task(name), {**parsed, **(params or {})})


def resolve_optimizer(registry: Registry, text: str, params: dict[str, Any] | None = None) -> Spec:
    name, parsed = parse(text)
    return build(registry.optimizer(name), {**parsed, **(params or {})})
