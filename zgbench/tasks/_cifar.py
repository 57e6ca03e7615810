"""Reading the CIFAR-10 python batches without letting a file run code.

The official ``cifar-10-batches-py`` files are Python 2 pickles of plain dicts (``b'data'``: a
``[10000, 3072]`` uint8 numpy array, ``b'labels'``: a list of ints, ``b'batch_label'``,
``b'filenames'``: byte strings). A plain ``pickle.load`` of a file under ``ZGBENCH_CACHE`` or
``data=`` would run whatever a planted file asks for (``os.system`` in a ``__reduce__``), so
they are read with an unpickler that builds only what that format needs: numpy arrays and
dtypes (through numpy's own array reconstructor) and, for batches re-pickled by Python 3 at
protocol 2, ``_codecs.encode`` (how such pickles spell bytes). Lists, dicts, ints, bytes and
strings are pickle opcodes, not lookups, so they need no admission. Anything else is refused
before it is built, with an error naming the file. Hand-written (twenty lines) because the
standard library has no allow-list unpickler and ``numpy.load`` refuses these files.
"""

from __future__ import annotations

import _codecs
import pickle
from pathlib import Path

import numpy as np

from zgbench import UsageError

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, any numpy version
#: (module, name) -> object: everything a CIFAR-10 batch pickle may look up.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 1 (the official files)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
}


class Refused(pickle.UnpicklingError):
    """The pickle asks for something outside :data:`ALLOWED`."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"it asks for {module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise Refused("it asks for a persistent object")


def load(path: Path) -> object:
    """The object pickled in ``path``, built from the admitted types only."""
    try:
        with open(path, "rb") as handle:  # a file, not BytesIO: that copies the 30 MB again
            return _ArraysOnly(handle, encoding="bytes").load()
    except Refused as exc:
        raise UsageError(
            f"{path}: refused to unpickle ({exc}; a CIFAR-10 batch holds only numpy arrays, "
            "lists, bytes and ints). It is not the original data: delete it and extract "
            "cifar-10-python.tar.gz again.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise UsageError(f"{path} is not a CIFAR-10 batch (unreadable pickle: "
                         f"{type(exc).__name__}: {exc}); extract cifar-10-python.tar.gz "
                         "again.") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images ``[n, 3, 32, 32]`` uint8 and labels ``[n]`` int64."""
    batch = load(path)
    if not isinstance(batch, dict):
        raise UsageError(f"{path} is not a CIFAR-10 batch (a {type(batch).__name__}, not a dict).")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or not isinstance(labels, list):
        raise UsageError(f"{path} is not a CIFAR-10 batch (no data/labels entries).")
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32
            or len(labels) != len(data) or not all(isinstance(v, int) for v in labels)):
        raise UsageError(f"{path} is not a CIFAR-10 batch: data has shape {data.shape} "
                         f"({data.dtype}), {len(labels)} labels.")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
