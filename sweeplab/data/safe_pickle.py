"""Read pickle files as plain data only.

Some published dataset files are pickles, e.g. ``class_split.pkl`` of the
DistributionBalancedLoss repository (Wu et al., ECCV 2020), a dict
``{"head": set, "middle": set, "tail": set}`` of class indices. Unpickling an
arbitrary file can run arbitrary code, so these files are read with an
unpickler that resolves only an allow-list of globals: the builtin containers
and scalars, numpy arrays, dtypes and scalars (numpy 1 ``numpy.core`` and numpy 2
``numpy._core`` names), and ``_codecs.encode`` restricted to latin-1 (how
protocol 0-2 pickles store bytes). The copyreg extension opcodes (EXT1/2/4) are
refused outright, since a cached extension would bypass ``find_class``. Any other global -- ``os.system``,
``builtins.eval``, a class -- raises ``ForbiddenPickleError`` naming the file
and the global, before anything is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any, Callable

import numpy as np

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (nothing of it was run)."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 0-2 pickles use it for bytes: latin-1 only."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise ForbiddenPickleError(f"_codecs.encode with encoding {encoding!r} (only latin-1 is allowed)")
    return codecs.encode(text, "latin-1", errors)


_BUILTINS = {
    name: getattr(__import__("builtins"), name)
    for name in ("dict", "list", "set", "frozenset", "tuple", "str", "bytes", "bytearray",
                 "int", "float", "complex", "bool")
}
_NUMPY = {
    "_reconstruct": _multiarray._reconstruct,
    "scalar": _multiarray.scalar,
    "_frombuffer": _numeric._frombuffer,
}
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    **{("builtins", name): obj for name, obj in _BUILTINS.items()},
    **{("__builtin__", name): obj for name, obj in _BUILTINS.items()},  # protocol 0-2 name
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_package}.multiarray", "_reconstruct")] = _NUMPY["_reconstruct"]
    _ALLOWED[(f"{_package}.multiarray", "scalar")] = _NUMPY["scalar"]
    _ALLOWED[(f"{_package}.numeric", "_frombuffer")] = _NUMPY["_frombuffer"]


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only the allow-list above."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(
                f"forbidden global {module}.{name} (only builtin containers and scalars and numpy "
                "arrays/scalars may be unpickled)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError(f"persistent id {pid!r} (not plain data)")


def _refuse_extension_opcodes(data: bytes) -> None:
    """Scan the opcodes (nothing is run) for copyreg extension references."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("EXT1", "EXT2", "EXT4"):
                raise ForbiddenPickleError(f"copyreg extension code {arg} (not plain data)")
    except ForbiddenPickleError:
        raise
    except Exception:
        pass  # malformed: the unpickler below reports it


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` as plain data; ``source`` names it in errors."""
    try:
        _refuse_extension_opcodes(data)
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except ForbiddenPickleError as error:
        raise ForbiddenPickleError(f"{source}: refused to unpickle: {error}") from None
    except Exception as error:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(f"{source}: not a readable pickle: {error}") from None


def safe_load(path: str | Path) -> Any:
    """Unpickle the file at ``path`` as plain data (see the module docstring)."""
    path = Path(path)
    return safe_loads(path.read_bytes(), source=str(path))
