"""A restricted unpickler for untrusted data pickles (design 5).

MMSA's and MulT's feature files are pickles, and a pickle can run arbitrary code when loaded.
`load` reads only plain data: numpy arrays and scalars, lists, dicts, tuples, sets, str, bytes,
numbers, bool and None. Any other global the pickle names is refused *before* it is called, with a
`UserError` naming it, so nothing from the file runs. Never use plain `pickle.load` on a user file.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import os
import pickle
from typing import Any

from msabench.errors import UserError

# (module, name) pairs a data pickle may name. numpy 1.x writes `numpy.core.*`, numpy 2.x
# `numpy._core.*`; both spellings are accepted and resolved against the installed numpy.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"),
}
_BUILTIN_GLOBALS = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("collections", "OrderedDict"),
}
ALLOWED_GLOBALS = frozenset(_NUMPY_GLOBALS | _BUILTIN_GLOBALS | {("_codecs", "encode")})

_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol 0-2 pickles use it for bytes: only the latin-1 text codec."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1 or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as str.encode('latin1')")
    return obj.encode("latin1")


def _numpy_module(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    # The other numpy major version's spelling of the same module.
    if module.startswith("numpy.core."):
        return importlib.import_module("numpy._core." + module[len("numpy.core."):])
    if module.startswith("numpy._core."):
        return importlib.import_module("numpy.core." + module[len("numpy._core."):])
    raise ImportError(module)


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `ALLOWED_GLOBALS`; everything else raises before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3), as the default find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in ALLOWED_GLOBALS:
            raise _RefusedGlobal(module, name)
        if module == "_codecs":
            return _latin1_encode
        if module.startswith("numpy"):
            return getattr(_numpy_module(module), name)
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data pickle")


def loads(data: bytes, *, where: str = "pickle") -> Any:
    import io

    return _load_stream(io.BytesIO(data), where)


def load(path: str | os.PathLike[str]) -> Any:
    """Unpickle a data file safely; a refused global or a corrupt file raises `UserError`."""
    where = os.fspath(path)
    try:
        fh = open(where, "rb")
    except FileNotFoundError:
        raise UserError(f"{where} does not exist; check the path.") from None
    except OSError as exc:
        raise UserError(f"cannot open {where} ({exc.strerror}); check the path and its permissions.") from None
    with fh:
        return _load_stream(fh, where)


def _load_stream(fh: Any, where: str) -> Any:
    try:
        # latin1: Python 2 pickles of numpy arrays store the raw bytes as py2 str.
        return RestrictedUnpickler(fh, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise UserError(
            f"{where} refers to {exc.module}.{exc.name}, which a data pickle may not contain "
            "(only numpy arrays, lists, dicts, tuples, str, bytes and numbers are read); "
            "re-save the file with plain numpy arrays."
        ) from None
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{where}: out of memory while reading the pickle; free memory or use a smaller file.") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a corrupt file
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise UserError(
            f"{where} is not a readable pickle ({reason}); the file is truncated or corrupt: "
            "download or generate it again."
        ) from None
