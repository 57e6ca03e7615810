"""The plugin boundary, checked from source: built-in plugins use zgbench as a third party does.

A built-in plugin module (every module under ``zgbench/tasks`` and ``zgbench/optimizers``)
may import from zgbench only the names ``zgbench.__all__`` exports, plus modules of its own
package (its private siblings such as ``zgbench.tasks._raster``). Anything else would mean
the example plugin's author cannot write what the built-in plugins write. Imports inside
functions count too. And ``zgbench/problem.py`` must not import the contracts, which import
it (for ``Optimizer.run``'s signature).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zgbench

ROOT = Path(zgbench.__file__).parent
FAMILIES = ("tasks", "optimizers")
PUBLIC = frozenset(zgbench.__all__)


def violations(source: str, package: str) -> list[str]:
    """The imports of ``source`` (a module of ``zgbench.<package>``) that break the rule,
    each as ``line N: <the import>``."""
    own = f"zgbench.{package}"
    found: list[str] = []
    imported_zgbench = False
    for node in ast.walk(ast.parse(source)):
        bad: list[str] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "zgbench":
                    imported_zgbench = True
                elif alias.name.startswith("zgbench.") and not _inside(alias.name, own):
                    bad.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if module == "zgbench":
                bad += [f"from zgbench import {a.name}" for a in node.names
                        if a.name not in PUBLIC]
            elif module.startswith("zgbench.") and not _inside(module, own):
                bad.append(f"from {module} import {', '.join(a.name for a in node.names)}")
        found += [f"line {node.lineno}: {text}" for text in bad]
    if imported_zgbench:  # `import zgbench` then `zgbench.store.atomic_write`
        found += [f"line {node.lineno}: zgbench.{node.attr}" for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "zgbench" and node.attr not in PUBLIC]
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    parts = ["zgbench", package][: max(0, 2 - (node.level - 1))]
    return ".".join(parts + ([node.module] if node.module else []))


def plugin_modules() -> list[tuple[str, Path]]:
    return [(family, path) for family in FAMILIES
            for path in sorted((ROOT / family).glob("*.py"))]


@pytest.mark.parametrize("family,path", plugin_modules(),
                         ids=[f"{f}/{p.name}" for f, p in plugin_modules()])
def test_builtin_plugins_import_only_the_public_api(family, path):
    bad = violations(path.read_text(encoding="utf-8"), family)
    assert not bad, (f"zgbench/{family}/{path.name} imports zgbench internals (import only "
                     f"what `zgbench` exports, or a module of zgbench.{family}): "
                     + "; ".join(bad))


def test_every_family_is_checked():
    assert len(plugin_modules()) > 20  # a moved folder must not make the test vacuous


@pytest.mark.parametrize("source,package,expected", [
    ("from zgbench.store import atomic_write", "tasks", ["line 1: from zgbench.store import"]),
    ("def f():\n    from zgbench import cache\n", "tasks", ["line 2: from zgbench import cache"]),
    ("import zgbench.errors", "optimizers", ["line 1: import zgbench.errors"]),
    ("from zgbench.optimizers.cmaes import to_numpy", "tasks", ["line 1: from zgbench.optim"]),
    ("from .. import mitsuba_env", "tasks", ["line 1: from zgbench import mitsuba_env"]),
    ("from ..errors import MissingExtra", "tasks", ["line 1: from zgbench.errors import"]),
    ("import zgbench\nx = zgbench.store.atomic_write", "tasks", ["line 2: zgbench.store"]),
])
def test_the_checker_finds_forbidden_imports(source, package, expected):
    found = violations(source, package)
    assert len(found) == len(expected)
    assert all(f.startswith(e) for f, e in zip(found, expected)), found


@pytest.mark.parametrize("source,package", [
    ("from zgbench import Task, Param, hookimpl, atomic_write, GradientEstimator", "tasks"),
    ("from zgbench.tasks import _raster\nfrom zgbench.tasks._meshes import face_normals", "tasks"),
    ("from . import _mitsuba\nfrom ._scenes import SCENES", "tasks"),
    ("from zgbench.optimizers.smoothing import slope_samples", "optimizers"),
    ("import zgbench\nv = zgbench.__version__\nimport torch", "optimizers"),
])
def test_the_checker_allows_the_public_api_and_siblings(source, package):
    assert violations(source, package) == []


def _zgbench_imports(path: Path) -> set[str]:
    """zgbench modules a module imports anywhere (``from zgbench import x`` counts ``x``
    when ``x`` is a module, so ``zgbench.x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("zgbench.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zgbench"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if (ROOT.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(
                          ".py").exists()}
    return names - {"zgbench"}


def _reaches(start: str, target: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = (ROOT.parent / module.replace(".", "/")).with_suffix(".py")
        if path.exists():
            todo += sorted(_zgbench_imports(path))
    return target in seen - {start}


def test_problem_and_contracts_do_not_import_each_other():
    assert "zgbench.problem" not in _zgbench_imports(ROOT / "contracts.py")
    assert not _reaches("zgbench.problem", "zgbench.contracts"), (
        "zgbench/problem.py reaches zgbench.contracts through its imports: import the task "
        "contract from zgbench.task instead")
    assert not _reaches("zgbench.task", "zgbench.problem")


def test_the_reach_check_can_fail():
    assert _reaches("zgbench.contracts", "zgbench.problem")  # through zgbench.optimizer
    assert _reaches("zgbench.optimizer", "zgbench.task")
