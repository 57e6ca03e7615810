"""The wire between the trusted worker and the optimizer's process: plain data only.

A message is a fixed header, a JSON document and raw array bytes::

    b"ZGB1" | json length (u32) | number of arrays (u32) | each array's length (u64) ...
    | JSON (UTF-8) | array bytes ...

The JSON holds numbers, strings, ``null``, lists and tagged objects: ``{"~a": i, "k": kind,
"dt": dtype, "sh": shape}`` is the ``i``-th array (``kind`` ``torch`` or ``numpy``: what the
sender passed, so the receiver hands on the same kind), ``{"~t": [...]}`` a tuple,
``{"~d": [[key, value], ...]}`` a dict with string keys, ``{"~n": [name, fields, values]}`` a
named tuple (a plain tuple on the trusted side), ``{"~s": [start, stop, step]}`` a slice, ``{"~h": n}`` a handle (an object that stays in the trusted worker, see
:class:`Handles`). Nothing is unpickled and no class is named by the sender: the trusted side
builds only numbers, strings, lists, tuples, dicts, slices and plain arrays of a known dtype
whose byte count matches their shape, so an optimizer cannot make the task see an object
of its choosing (a tensor subclass, an object with a ``__torch_function__``). Anything else
is a :class:`WireError`, which ends the run.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import socket
import struct
from typing import Any

import numpy as np
import torch

MAGIC = b"ZGB1"
_HEAD = struct.Struct("<4sII")
_LEN = struct.Struct("<Q")
#: Largest JSON document and largest message (bytes): a message past them ends the run
#: instead of exhausting the trusted worker's memory.
MAX_JSON = 16 * 2**20
MAX_BYTES = 4 * 2**30
MAX_ARRAYS = 4096
MAX_DEPTH = 32

#: dtypes that cross, by name; bfloat16 travels as its 16 bits.
DTYPES = {
    "float16": (np.float16, torch.float16), "float32": (np.float32, torch.float32),
    "float64": (np.float64, torch.float64), "bfloat16": (np.uint16, torch.bfloat16),
    "int8": (np.int8, torch.int8), "int16": (np.int16, torch.int16),
    "int32": (np.int32, torch.int32), "int64": (np.int64, torch.int64),
    "uint8": (np.uint8, torch.uint8), "bool": (np.bool_, torch.bool),
}
_TORCH_NAMES = {t: name for name, (_, t) in DTYPES.items()}
_NUMPY_NAMES = {np.dtype(n): name for name, (n, _) in DTYPES.items() if name != "bfloat16"}


class WireError(Exception):
    """A message that is not plain data of the agreed form (or a broken connection)."""


class Handles:
    """Objects a capability returned that are not plain data (a trace of a forward pass),
    kept in the trusted worker: the optimizer gets a number and can only hand it back."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}

    def add(self, obj: Any) -> int:
        number = len(self._objects) + 1
        self._objects[number] = obj
        return number

    def get(self, number: Any) -> Any:
        if type(number) is not int or number not in self._objects:
            raise WireError(f"unknown handle {number!r}")
        return self._objects[number]


class Handle:
    """The optimizer's side of a :class:`Handles` entry: opaque, passed back as is."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    def __repr__(self) -> str:
        return f"Handle({self.number})"

    def __getattr__(self, name: str) -> None:
        raise AttributeError(
            f"{name!r}: under --isolate an object a task's capability returns that is not "
            "plain data (tensors, arrays, numbers, lists, tuples, dicts) stays in the trusted "
            "worker; the optimizer gets this handle and can only pass it back to problem.call")


# ------------------------------------------------------------------------------ encoding
def encode(obj: Any, handles: Handles | None = None) -> tuple[bytes, list[memoryview]]:
    """``obj`` as (JSON bytes, array buffers). ``handles``: where objects that are not plain
    data go (trusted side); without it they are an error (optimizer side)."""
    arrays: list[memoryview] = []
    tree = _tree(obj, arrays, handles, 0)
    return json.dumps(tree, separators=(",", ":")).encode(), arrays


def _tree(obj: Any, arrays: list[memoryview], handles: Handles | None, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("data nested too deeply to send")
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is float:
        return obj if math.isfinite(obj) else {"~f": repr(obj)}
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return _tree(obj.item(), arrays, handles, depth)
    if isinstance(obj, torch.Tensor):
        return _array(obj, arrays, "torch")
    if isinstance(obj, np.ndarray):
        return _array(obj, arrays, "numpy")
    if isinstance(obj, Handle):
        return {"~h": obj.number}
    if type(obj) is list:
        return [_tree(v, arrays, handles, depth + 1) for v in obj]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple (a layer slice)
        return {"~n": [type(obj).__name__, [str(f) for f in obj._fields],
                       [_tree(v, arrays, handles, depth + 1) for v in obj]]}
    if isinstance(obj, (tuple, torch.Size)):
        return {"~t": [_tree(v, arrays, handles, depth + 1) for v in obj]}
    if type(obj) is dict and all(type(k) is str for k in obj):
        return {"~d": [[k, _tree(v, arrays, handles, depth + 1)] for k, v in obj.items()]}
    if type(obj) is slice:
        return {"~s": [_tree(v, arrays, handles, depth + 1) for v in (obj.start, obj.stop,
                                                                        obj.step)]}
    if handles is not None:
        return {"~h": handles.add(obj)}
    raise WireError(f"{type(obj).__module__}.{type(obj).__qualname__} is not plain data: "
                    "send tensors, numpy arrays, numbers, strings and lists, tuples or dicts "
                    "of them")


def _array(value: torch.Tensor | np.ndarray, arrays: list[memoryview], kind: str) -> dict:
    if kind == "torch":
        tensor = value.detach()
        name = _TORCH_NAMES.get(tensor.dtype)
        if name is None:
            raise WireError(f"tensors of dtype {tensor.dtype} do not cross the sandbox")
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        data = np.ascontiguousarray(tensor.cpu().numpy())
        shape = list(value.shape)
    else:
        name = _NUMPY_NAMES.get(value.dtype)
        if name is None:
            raise WireError(f"arrays of dtype {value.dtype} do not cross the sandbox")
        data = np.ascontiguousarray(value)
        shape = list(value.shape)
    arrays.append(memoryview(data).cast("B"))
    return {"~a": len(arrays) - 1, "k": kind, "dt": name, "sh": shape}


# ------------------------------------------------------------------------------ decoding
def decode(doc: bytes, blobs: list[bytes], handles: Handles | None = None,
           device: torch.device | None = None) -> Any:
    """The object of a message. Tensors land on ``device`` (default CPU); handles resolve
    through ``handles`` (trusted side) or become :class:`Handle` (optimizer side)."""
    try:
        tree = json.loads(doc.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"the JSON part is not valid JSON: {exc}") from None
    used: set[int] = set()
    obj = _object(tree, blobs, handles, device, used, 0)
    if len(used) != len(blobs):
        raise WireError("the message carries arrays no part of it refers to")
    return obj


def _object(tree: Any, blobs: list[bytes], handles: Handles | None,
            device: torch.device | None, used: set[int], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if tree is None or type(tree) in (bool, int, float, str):
        return tree
    if type(tree) is list:
        return [_object(v, blobs, handles, device, used, depth + 1) for v in tree]
    if type(tree) is not dict or len(tree) == 0:
        raise WireError(f"unexpected JSON value {str(tree)[:80]!r}")
    if "~a" in tree:
        return _decode_array(tree, blobs, device, used)
    if len(tree) != 1:
        raise WireError(f"unknown tagged object {sorted(tree)[:4]}")
    (tag, value), = tree.items()
    if tag == "~t" and type(value) is list:
        return tuple(_object(v, blobs, handles, device, used, depth + 1) for v in value)
    if tag == "~d" and type(value) is list:
        out = {}
        for pair in value:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise WireError("a dict entry is not a [str, value] pair")
            out[pair[0]] = _object(pair[1], blobs, handles, device, used, depth + 1)
        return out
    if tag == "~s" and type(value) is list and len(value) == 3:
        parts = [_object(v, blobs, handles, device, used, depth + 1) for v in value]
        if not all(p is None or type(p) is int for p in parts):
            raise WireError("a slice of something other than integers")
        return slice(*parts)
    if (tag == "~n" and type(value) is list and len(value) == 3 and type(value[0]) is str
            and type(value[1]) is list and type(value[2]) is list
            and len(value[1]) == len(value[2]) and all(type(f) is str for f in value[1])):
        items = tuple(_object(v, blobs, handles, device, used, depth + 1) for v in value[2])
        if handles is not None:  # the trusted side builds no class the sender names
            return items
        return _named(value[0], tuple(value[1]))(*items)
    if tag == "~f" and value in ("inf", "-inf", "nan"):
        return float(value)
    if tag == "~h":
        return handles.get(value) if handles is not None else Handle(int(value))
    raise WireError(f"unknown tag {tag!r}")


def _decode_array(tree: dict, blobs: list[bytes], device: torch.device | None,
                  used: set[int]) -> torch.Tensor | np.ndarray:
    index, kind, name, shape = (tree.get("~a"), tree.get("k"), tree.get("dt"), tree.get("sh"))
    if (set(tree) != {"~a", "k", "dt", "sh"} or type(index) is not int
            or not 0 <= index < len(blobs) or index in used or kind not in ("torch", "numpy")
            or name not in DTYPES or type(shape) is not list
            or not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 8):
        raise WireError(f"malformed array entry {str(tree)[:120]}")
    if kind == "numpy" and name == "bfloat16":
        raise WireError("numpy has no bfloat16")
    used.add(index)
    np_dtype, torch_dtype = DTYPES[name]
    blob = blobs[index]
    if math.prod(shape) * np.dtype(np_dtype).itemsize != len(blob):
        raise WireError(f"array of shape {shape} and dtype {name} cannot have {len(blob)} bytes")
    array = np.frombuffer(blob, dtype=np_dtype).reshape(shape).copy()  # owned, writable
    if kind == "numpy":
        return array
    tensor = torch.from_numpy(array)
    if torch_dtype == torch.bfloat16:
        tensor = tensor.view(torch.bfloat16)
    if device is not None and device.type != "cpu":
        tensor = tensor.to(device)
    return tensor


@functools.lru_cache(maxsize=64)
def _named(name: str, fields: tuple[str, ...]) -> type:
    """A named tuple class for a named tuple the trusted side sent (optimizer side only)."""
    try:
        return collections.namedtuple(name, fields)
    except ValueError:  # not identifiers: positions still work
        return collections.namedtuple("Record", [f"f{i}" for i in range(len(fields))])


# ------------------------------------------------------------------------------ framing
def send(sock: socket.socket, obj: Any, handles: Handles | None = None) -> None:
    """Send one message."""
    doc, arrays = encode(obj, handles)
    head = _HEAD.pack(MAGIC, len(doc), len(arrays)) + b"".join(
        _LEN.pack(a.nbytes) for a in arrays)
    sock.sendall(head + doc)
    for array in arrays:
        sock.sendall(array)


def receive(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """One message's JSON and array bytes, checked against the limits; EOFError if the
    other side is gone before a message starts."""
    head = _read(sock, _HEAD.size, eof_ok=True)
    magic, doc_len, count = _HEAD.unpack(head)
    if magic != MAGIC:
        raise WireError(f"bad message header {head[:4]!r}")
    if doc_len > MAX_JSON or count > MAX_ARRAYS:
        raise WireError(f"message too large ({doc_len} bytes of JSON, {count} arrays)")
    lengths = [_LEN.unpack(_read(sock, _LEN.size))[0] for _ in range(count)]
    if sum(lengths) + doc_len > MAX_BYTES:
        raise WireError(f"message too large ({sum(lengths) + doc_len} bytes)")
    doc = _read(sock, doc_len)
    return doc, [_read(sock, n) for n in lengths]


def _read(sock: socket.socket, size: int, eof_ok: bool = False) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            if got == 0 and eof_ok:
                raise EOFError("the other side closed the connection")
            raise WireError(f"connection closed in the middle of a message ({got}/{size} bytes)")
        got += n
    return bytes(buffer)
