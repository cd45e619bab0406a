"""Reading a pickled .npy (np.save of a dict) without letting the pickle run code.

`np.load(allow_pickle=True)` hands the file to pickle, which calls whatever
callable the file names: a crafted bvlc_alexnet.npy could run `os.system`. The
unpickler here resolves only the globals that NumPy arrays need (their
reconstructor, ndarray, dtype); dicts, lists, tuples, strings and numbers are
pickle opcodes, not globals. Anything else is refused before it is called, with
an error naming the global.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing it names was called."""


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


# (module, name) -> object. Files written by NumPy 1.x (and Python 2, as the
# original bvlc_alexnet.npy was) name numpy.core; NumPy 2 writes numpy._core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that builds only NumPy arrays and plain containers."""

    def find_class(self, module, name):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise UnsafePickleError(
                f"refusing global {module}.{name}: a weights file may only hold NumPy arrays in "
                f"dicts/lists/tuples (allowed globals: {sorted(f'{m}.{n}' for m, n in _ALLOWED)})"
            )
        return make()


def load(path) -> object:
    """The object np.save wrote to `path` (an array, or what a 0-d object array holds)."""
    path = Path(path)
    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        _shape, _fortran, dtype = read_header(f)
        if not dtype.hasobject:
            f.seek(0)
            return npy_format.read_array(f, allow_pickle=False)
        # latin1: Python 2 pickles (bvlc_alexnet.npy) hold array bytes as str.
        value = RestrictedUnpickler(f, encoding="latin1").load()
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        return value.item()
    return value
