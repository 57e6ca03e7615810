"""Plain data at the task boundary: what an optimizer hands the task is copied into plain
objects the problem owns before the task sees it.

Why: an object the optimizer made can run the optimizer's code inside the task. A
``torch.Tensor`` subclass's ``__torch_function__`` sees every operation the task applies to
it, operands included (the hidden optimum of a synthetic function), and a tensor that
shares storage with the caller can change while the task reads it. So every input (loss
and gradient batches, reported θ, a capability's arguments, keys) is converted here, and
the conversion itself runs no code of the caller's: a subclass is copied with torch
functions disabled, and one that overrides ``__torch_dispatch__`` (which no switch
bypasses safely) is refused. Torch function and dispatch modes the optimizer entered are
set aside while the task runs (:func:`bare`), so neither sees the task's operations.

This is tamper-proofing of the data path in-process; ``--isolate`` puts the optimizer in
another process, where only arrays cross.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import _disable_current_modes

from zgbench.errors import ContractError

#: Python values passed to the task as they are (immutable, no code of the caller's).
_ATOMS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device,
          torch.layout, torch.memory_format)
#: How deep :func:`plain_value` looks into containers and task-made objects (a trace).
MAX_DEPTH = 6


def plain_tensor(value: torch.Tensor, keep_graph: bool = False) -> torch.Tensor:
    """A copy of ``value`` whose type is exactly ``torch.Tensor``, sharing no storage with
    it, made without running its class's ``__torch_function__``. ``keep_graph``: a tensor
    that requires grad stays connected to the caller's autograd graph (a capability such
    as ``residual`` returns values to differentiate); else the copy is detached."""
    cls = type(value)
    if cls is not torch.Tensor and _overrides_dispatch(cls):
        raise ContractError(f"{cls.__qualname__} overrides __torch_dispatch__: pass the task "
                            "plain tensors (torch.Tensor) or numpy arrays")
    try:
        with torch._C.DisableTorchFunction():
            if keep_graph and value.requires_grad:
                out = value.clone()
            else:
                out = value.detach().clone()
    except Exception as exc:  # a subclass without real storage
        raise ContractError(f"could not copy a {cls.__qualname__} into a plain tensor "
                            f"({type(exc).__name__}: {exc}): pass plain tensors") from exc
    if type(out) is not torch.Tensor:  # pragma: no cover - torch returns plain tensors here
        raise ContractError(f"a {cls.__qualname__} did not copy into a plain tensor")
    if out.layout != torch.strided:
        raise ContractError(f"expected a dense (strided) tensor, got layout {out.layout}")
    return out


def plain_array(value: np.ndarray, dtype: Any = None) -> np.ndarray:
    """A base-class ``numpy.ndarray`` copy of ``value`` (``dtype`` if given); arrays of
    Python objects are refused (their elements are the caller's objects)."""
    out = np.array(value, dtype=dtype, copy=True, subok=False)
    if out.dtype == object:
        raise ContractError("expected a numeric array, got an array of Python objects")
    return out


def plain_key(key: Any) -> int:
    """A loss key as a Python ``int`` (a numpy or 0-d tensor integer is accepted)."""
    if type(key) is int:
        return key
    if isinstance(key, torch.Tensor):
        key = plain_tensor(key)
    try:
        return int.__index__(key if isinstance(key, int) else operator.index(key))
    except TypeError:
        raise ContractError(f"a key is an integer (problem.new_key()), got "
                            f"{type(key).__name__}") from None


def plain_value(value: Any, owners: frozenset[str] = frozenset(), keep_graph: bool = True,
                depth: int = 0) -> Any:
    """``value`` as plain data: tensors and arrays copied (:func:`plain_tensor`,
    :func:`plain_array`), subclasses of Python's atoms (``int``, ``str``, ...) turned into
    the atoms, tuples, lists and dicts rebuilt from plain items. Any other object must be
    the task's own (its class defined in a top-level package of ``owners``: a trace a
    capability returned, passed back) and hold no tensor subclass as deep as
    :data:`MAX_DEPTH`; it is passed as it is."""
    cls = type(value)
    if cls in _ATOMS:
        return value
    if isinstance(value, torch.Tensor):
        return plain_tensor(value, keep_graph)
    if isinstance(value, np.ndarray):
        return plain_array(value)
    if isinstance(value, np.generic):
        return plain_array(value)[()].item()
    for atom in (bool, int, float, complex, str, bytes):
        if isinstance(value, atom):  # a subclass: its base value, read without its methods
            return _base_value(value, atom)
    if depth >= MAX_DEPTH:
        raise ContractError(f"arguments nested deeper than {MAX_DEPTH} levels: pass "
                            "tensors, arrays and numbers")
    if isinstance(value, (tuple, list)):
        items = [plain_value(v, owners, keep_graph, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {plain_value(k, owners, keep_graph, depth + 1):
                plain_value(v, owners, keep_graph, depth + 1) for k, v in value.items()}
    module = str(type.__getattribute__(cls, "__module__") or "")
    if module.split(".")[0] not in owners:
        _refuse(value)
    _check_inside(value, depth)
    return value


def _base_value(value: Any, atom: type) -> Any:
    """The plain ``atom`` inside an instance of a subclass of it, read with the atom's own
    methods (the subclass's overrides do not run)."""
    if atom is bool or atom is int:
        number = int.__index__(value)
        return bool(number) if atom is bool else number
    if atom is float:
        return float.__float__(value)
    if atom is complex:
        return complex.__complex__(value)
    if atom is str:
        return str.__str__(value)
    return bytes.__bytes__(value) if hasattr(bytes, "__bytes__") else bytes(memoryview(value))


def _check_inside(value: Any, depth: int) -> None:
    """Refuse a task-made object (a trace passed back) holding a tensor subclass in its
    fields or their containers, as deep as :data:`MAX_DEPTH`."""
    if depth > MAX_DEPTH or type(value) in _ATOMS:
        return
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            _refuse(value)
        return
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (tuple, list, set, frozenset)):
        items = list(value)
    else:
        try:
            items = list(object.__getattribute__(value, "__dict__").values())
        except (AttributeError, TypeError):
            return
    for item in items:
        _check_inside(item, depth + 1)


def _refuse(value: Any) -> None:
    raise ContractError(f"a {type(value).__qualname__} cannot cross to the task: pass plain "
                        "tensors (torch.Tensor), numpy arrays, numbers and what the task "
                        "returned")


def _overrides_dispatch(cls: type) -> bool:
    """Whether ``cls`` (a tensor subclass) defines its own ``__torch_dispatch__``, read
    from the real MRO's class dicts (no attribute lookup of the class runs its code)."""
    for base in type.__getattribute__(cls, "__mro__"):
        found = type.__getattribute__(base, "__dict__").get("__torch_dispatch__")
        if found is not None:
            return base is not torch.Tensor
    return False


#: The default dtype tasks are built and run under: torch's own, which the task contract
#: assumes (``Task.dtype`` is float32).
DEFAULT_DTYPE = torch.float32


def disturbed() -> bool:
    """Whether the optimizer changed torch's global state a task computes under: a torch
    function or dispatch mode on (``with torch.device(...)`` is one), or another default
    dtype. Three C calls: the hot path asks it on every task call."""
    return bool(torch.get_default_dtype() is not DEFAULT_DTYPE
                or torch._C._len_torch_function_stack()
                or torch._C._len_torch_dispatch_stack())


@contextlib.contextmanager
def bare() -> Iterator[None]:
    """Run the task in torch's default state: the caller's torch function and dispatch
    modes set aside (a ``with torch.device(...)`` block of the optimizer's included) and
    the default dtype :data:`DEFAULT_DTYPE`; the caller's state is restored afterwards."""
    dtype = torch.get_default_dtype()
    modes = [torch._C._pop_torch_function_stack()
             for _ in range(torch._C._len_torch_function_stack())]
    torch.set_default_dtype(DEFAULT_DTYPE)
    try:
        with _disable_current_modes():
            yield
    finally:
        torch.set_default_dtype(dtype)
        for mode in reversed(modes):
            torch._C._push_on_torch_function_stack(mode)


def reset_torch_state() -> None:
    """Put back what a run's plugin code may have changed in torch's global defaults (the
    default dtype and device), so that it cannot change later runs' task instances in the
    same process: the harness calls it before each run builds its task and after it."""
    if torch.get_default_dtype() is not DEFAULT_DTYPE:
        torch.set_default_dtype(DEFAULT_DTYPE)
    if torch.get_default_device() != torch.device("cpu"):
        torch.set_default_device(None)
