"""What ``zgbench list`` shows of every task and optimizer, cached so that listing imports no
plugin (and so no torch): a fraction of a second instead of seconds.

The cache holds, per component, a *description*: its class's data (name, kind, ``needs``,
``provides``/``requires``, ``scale_note``, the declared :class:`~zgbench.params.Param` objects,
...) and the results of ``description()`` and ``declared_params()``. :func:`load` rebuilds each
as a stand-in class (a :class:`~zgbench.component.Component` subclass holding that data), so
the ``list`` command renders it with the same code as a real class. What cannot be kept
(a tensor scale, a parameter of a plugin's own type, a method a plugin overrides) is fetched
from the real class on first use: the plugins are then loaded, and the output is still the
same, only slower.

The cache is keyed by what decides the registry (:func:`fingerprint`): zgbench's version and
the modification times and sizes of its source files (the built-in plugins), every installed
distribution with a ``zgbench`` entry point with its version and the same stamps of the
package its entry point names (so an edit to an editable or path install counts), the
blocked plugins (``-p no:NAME``), and the host. A change to any of them rebuilds it on the
next ``list``. A registry with errors (a broken plugin) is never cached: its warnings come
from loading, and whatever fixes it (a missing module installed) need not change the key.

Stored as ``CACHE/registry/<blocked>.pickle`` (``CACHE`` as :func:`zgbench.cache.root`), read
with an unpickler that only builds zgbench's parameter types and Python's plain values, so
a cache file cannot run code.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import pickle
import platform
import sys
from pathlib import Path
from typing import Any

import zgbench
from zgbench import cache, hookspecs
from zgbench.component import Component
from zgbench.params import Param
from zgbench.plugins import Entry, Registry

#: Bump when the stored form changes: an older file is then a miss, never misread.
FORMAT = 1
#: Component methods whose result is kept (they read the class only).
_RESULTS = ("description", "declared_params")
#: The globals a cache file may name (anything else: the file is ignored and rebuilt).
_ALLOWED = {
    "builtins": {"int", "float", "str", "bool", "complex", "bytes", "tuple", "list", "dict",
                 "set", "frozenset", "NoneType", "type"},
    "zgbench.params": {"Param", "Step"},
    "zgbench.budget": {"Budget"},
}


def load(blocked: tuple[str, ...] = ()) -> Registry:
    """The registry as ``zgbench list`` shows it: from the cache when nothing it depends on
    changed, else loaded (:func:`zgbench.plugins.load`) and cached for next time.

    In a process that has imported the contracts already (a test, a script using zgbench,
    a plugin loaded), the plugins are loaded as they are in memory: the cache only saves
    imports, and the classes in memory may differ from the files (a test's monkeypatch)."""
    from zgbench import plugins

    if "zgbench.contracts" in sys.modules:
        return plugins.load(blocked=blocked)
    key = fingerprint(blocked)
    path = _path(blocked)
    stored = _read(path)
    if stored is not None and stored.get("key") == key:
        return _described_registry(stored, blocked)
    registry = plugins.load(blocked=blocked)
    payload = _describe(registry)
    if payload is not None:
        _write(path, {"key": key, **payload})
    return registry


# --------------------------------------------------------------------------- the key


def fingerprint(blocked: tuple[str, ...] = ()) -> str:
    """A hash of everything the registry depends on, computed without importing a plugin."""
    root = Path(zgbench.__file__).parent
    entry_points = sorted(
        (ep.name, ep.value, ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "",
         _package_stamp(ep.value.split(":")[0].split(".")[0]))
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT))
    parts = {
        "format": FORMAT,
        "python": list(sys.version_info[:2]),
        "zgbench": [zgbench.__version__, str(root), _tree_stamp(root)],
        "entry_points": entry_points,
        "blocked": sorted(blocked),
        # a plugin may read the machine when imported (a default from the CPU count)
        "host": [platform.node(), os.cpu_count(), os.environ.get("CUDA_VISIBLE_DEVICES")],
    }
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def _package_stamp(top: str) -> str:
    """The stamp of the installed top-level package (or module) ``top``, found without
    importing it; ``"missing"`` if there is none."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "missing"
    if spec.submodule_search_locations:
        return "+".join(_tree_stamp(Path(p)) for p in spec.submodule_search_locations)
    return _files_stamp([Path(spec.origin)]) if spec.origin else "unknown"


def _tree_stamp(folder: Path) -> str:
    """A hash of the path, modification time and size of every ``.py`` file below
    ``folder``: any edit, added or removed file changes it."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        files += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return _files_stamp(files)


def _files_stamp(files: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            continue
        digest.update(f"{file}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- descriptions


def _describe(registry: Registry) -> dict[str, Any] | None:
    """The cacheable form of a loaded registry, or None if it must not be cached."""
    if registry.errors:
        return None
    return {kind: {name: _description(entry) for name, entry in table.items()}
            for kind, table in (("tasks", registry.tasks), ("optimizers", registry.optimizers))}


def _description(entry: Entry) -> dict[str, Any]:
    """A class's keepable data, its kept results, and the names to take from the real class
    (data that cannot be kept, methods it overrides)."""
    cls = entry.cls
    data: dict[str, Any] = {}
    deferred: list[str] = []
    for name in dir(cls):
        if name.startswith("__"):
            continue
        try:
            value = getattr(cls, name)
        except Exception:  # a property on the class that needs an instance: not data
            deferred.append(name)
            continue
        if name in _RESULTS:
            continue
        if callable(value) or isinstance(inspect.getattr_static(cls, name), property):
            if hasattr(Component, name) and (inspect.getattr_static(cls, name)
                                              is not inspect.getattr_static(Component, name)):
                deferred.append(name)  # overridden: the stand-in's inherited one would differ
            continue
        value = _listed_param(value)
        if _portable(value):
            data[name] = value
        else:
            deferred.append(name)
    results = {}
    for name in _RESULTS:
        value = getattr(cls, name)()
        if isinstance(value, dict):
            value = {key: _listed_param(item) for key, item in value.items()}
        if _portable(value):
            results[name] = value
        else:
            deferred.append(name)
    return {"qualname": cls.__qualname__, "module": cls.__module__, "doc": cls.__doc__,
            "plugin": entry.plugin, "version": entry.version, "data": data,
            "results": results, "deferred": deferred}


def _listed_param(value: Any) -> Any:
    """A plugin's Param subclass that only changes how values are coerced (zerograds'
    ``auto`` learning rates) as the plain :class:`Param` it lists as; anything else as is."""
    if not isinstance(value, Param) or type(value) is Param:
        return value
    own = {name for klass in type(value).__mro__ if klass is not Param
           and issubclass(klass, Param) for name in vars(klass) if not name.startswith("__")}
    if own - {"coerce"}:
        return value
    plain = copy.copy(value)
    plain.__class__ = Param
    return plain


def _portable(value: Any) -> bool:
    """Whether ``value`` survives the cache's restricted pickle round trip."""
    try:
        return _loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) == value
    except Exception:
        return False


def _described_registry(stored: dict[str, Any], blocked: tuple[str, ...]) -> Registry:
    registry = Registry(manager=None, blocked=blocked)  # lists; runs nothing
    for kind, table in (("tasks", registry.tasks), ("optimizers", registry.optimizers)):
        for name, description in stored[kind].items():
            table[name] = Entry(_stand_in(kind, name, description, blocked),
                                description["plugin"], description["version"])
    return registry


class _Described(type):
    """The stand-ins' metaclass: an attribute the description lacks (a method of the task or
    optimizer contract, say) comes from the real class, loaded on first need."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)


class _FromReal:
    """A stand-in's attribute that is not kept (see :func:`_description`): the real one."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        return getattr(owner._real(), self.name)


def _stand_in(kind: str, name: str, description: dict[str, Any],
              blocked: tuple[str, ...]) -> type:
    """A Component subclass with the described class's data: what ``list`` reads of it."""
    namespace: dict[str, Any] = dict(description["data"])
    for method, value in description["results"].items():
        namespace[method] = classmethod(lambda cls, value=value: value)
    for attr in description["deferred"]:
        namespace[attr] = _FromReal()
    namespace.update(__doc__=description["doc"], __module__=description["module"],
                     __qualname__=description["qualname"],
                     _real=classmethod(lambda cls: _real_class(kind, name, blocked)))
    return _Described(description["qualname"].rsplit(".", 1)[-1], (Component,), namespace)


_LOADED: dict[tuple[str, ...], Registry] = {}


def _real_class(kind: str, name: str, blocked: tuple[str, ...]) -> type:
    if blocked not in _LOADED:
        from zgbench import plugins

        _LOADED[blocked] = plugins.load(blocked=blocked)
    return getattr(_LOADED[blocked], kind)[name].cls


# --------------------------------------------------------------------------- the file


def _path(blocked: tuple[str, ...]) -> Path:
    tag = hashlib.blake2b("\0".join(sorted(blocked)).encode(), digest_size=6).hexdigest()
    return cache.root() / "registry" / f"{tag}.pickle"


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name not in _ALLOWED.get(module, ()):
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the registry cache")
        if module == "builtins" and name == "NoneType":
            return type(None)
        return super().find_class(module, name)


def _loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


def _read(path: Path) -> dict[str, Any] | None:
    """The stored cache, or None if there is none or it cannot be read (then it is rebuilt)."""
    try:
        stored = _loads(path.read_bytes())
    except Exception:  # missing, truncated, another format, a name not allowed: a miss
        return None
    return stored if isinstance(stored, dict) else None


def _write(path: Path, stored: dict[str, Any]) -> None:
    """Store atomically; a cache that cannot be written (read-only home) is no error."""
    from zgbench.store import atomic_write

    try:
        data = pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(path, lambda f: f.write(data), binary=True)
    except OSError:
        pass
