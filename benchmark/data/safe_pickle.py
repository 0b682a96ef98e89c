"""A restricted unpickler for untrusted data pickles (docs/architecture.md §5).

MMSA's and MulT's feature files are pickles, and a pickle can run arbitrary code when loaded.
`load` reads only plain data: numpy arrays and scalars, lists, dicts, tuples, sets, str, bytes,
numbers, bool and None. Any other global the pickle names is refused *before* it is called, with a
`UserError` naming it, so nothing from the file runs. Never use plain `pickle.load` on a user file.

Even the permitted numpy calls are not trusted with the file's arguments: numpy's own C code takes
malformed states on trust (`dtype.__setstate__` with a 6-tuple whose fields are a str segfaults;
a float dtype whose state claims object flags would read bytes as pointers). So the numpy names
resolve to checking wrappers, and the BUILD opcode (which calls `__setstate__`) goes through
`_load_build`, which accepts the states numpy writes for plain (non-structured) dtypes and arrays,
with consistent sizes, and nothing else. That needs the pure-Python unpickler (`pickle._Unpickler`,
whose opcode table can be extended); on data pickles it is as fast as the C one (the time goes into
copying the big byte strings).
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle
import reprlib
import struct
from typing import Any

from msabench.core.errors import UserError, require_regular_file

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
    ("builtins", "bytes"),  # protocols 0-2 write b"" as bytes()
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("collections", "OrderedDict"),
}
ALLOWED_GLOBALS = frozenset(_NUMPY_GLOBALS | _BUILTIN_GLOBALS | {("_codecs", "encode")})

EXPANSION_FACTOR, EXPANSION_SLACK = 4, 1_000_000  # items a pickle may expand to: 4 per byte, plus slack

_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol 0-2 pickles use it for bytes: only the latin-1 text codec."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1 or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as str.encode('latin1')")
    return obj.encode("latin1")


def _plain_bytes(kind: type) -> Any:
    """`bytes` / `bytearray` as protocols 0-2 call them: with no argument or with bytes (the output of
    `_codecs.encode`), never with a size (bytearray(10**12) would allocate it) or an iterable."""

    def make(*args: Any) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        raise pickle.UnpicklingError(f"builtins.{kind.__name__} is allowed only as {kind.__name__}() or "
                                     f"{kind.__name__}(b'...')")

    return make


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict, _REPR.maxset = 2, 6, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40


def _short(value: Any) -> str:
    """A bounded repr for error messages: a crafted object can be a tree of 10**12 nodes built from a
    few memo references, and repr(...)[:80] would walk all of them first."""
    return _REPR.repr(value)


def _children(node: Any) -> Any:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, (list, tuple, set, frozenset)):
        return node
    return node.ravel().tolist()  # an object array


def _is_container(node: Any) -> bool:
    import numpy as np

    return isinstance(node, (list, tuple, dict, set, frozenset)) or (
        type(node) is np.ndarray and node.dtype.hasobject)


def check_expanded_size(obj: Any, limit: int) -> None:
    """Refuse a pickle whose containers, counted as often as they are referenced, hold more than
    `limit` items: memo references let a few KB describe 10**12 list items ("billion laughs"), which
    cost nothing to load but hours to convert or print. Each container is walked once (sizes are
    memoised by identity), so the check costs as much as the file is big."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            total = 1 + sum(sizes.get(id(child), 1) for child in _children(node))
            if total > limit:
                raise _Refused(f"its lists, tuples and dicts expand to more than {limit} items through shared "
                               "references (a pickle bomb)")
            sizes[id(node)] = total
            continue
        if id(node) in sizes or not _is_container(node):
            continue
        sizes[id(node)] = 1  # in progress: a cycle counts once
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if _is_container(child) and id(child) not in sizes)


class _Refused(pickle.UnpicklingError):
    """A permitted global called with arguments (or a state) that numpy's pickling never writes."""


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 32 or not all(type(v) is int and v >= 0 for v in value):
        raise _Refused(f"bad array shape {_short(value)}")
    return value


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def _elements(shape: tuple[int, ...], dtype: Any, data_bytes: int) -> int:
    """The element count of an array of `shape` and `dtype` whose data is `data_bytes` long. Zero-size
    elements (dtype S0, U0, V0) are refused unless the array is empty: with them a shape of 10**15
    costs no bytes in the file, and every reader that converts the array then runs out of memory.
    With elements of at least one byte the count is bounded by the data, hence by the file."""
    n = _count(shape)
    if dtype.itemsize == 0 and n != 0:
        raise _Refused(f"an array of {n} zero-size elements (dtype {dtype}) is not data")
    if not dtype.hasobject and n * dtype.itemsize != data_bytes:
        raise _Refused(f"an array of shape {shape} and dtype {dtype} needs {n * dtype.itemsize} bytes of data, "
                       f"the pickle has {data_bytes}")
    return n


def _plain_dtype(dtype: Any) -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype):
        raise _Refused(f"expected a numpy dtype, got a {type(dtype).__name__}")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind in "Mm":
        raise _Refused(f"dtype {dtype} (structured, sub-array or datetime) is not read from a data pickle")
    return dtype


def _np_dtype(obj: Any, align: Any = False, copy: Any = True) -> Any:
    """numpy.dtype as pickles call it: dtype('f8', False, True). Always a fresh copy: a BUILD on it
    must never reach numpy's shared dtype singletons."""
    import numpy as np

    if not isinstance(obj, str) or len(obj) > 16 or type(align) not in (bool, int) or type(copy) not in (bool, int):
        raise _Refused(f"numpy.dtype{_short((obj, align, copy))} is not how a data pickle names a dtype")
    try:
        dtype = np.dtype(obj, bool(align), True)
    except (TypeError, ValueError) as exc:
        raise _Refused(f"bad dtype {obj!r}: {exc}") from None
    return _plain_dtype(dtype)


_NDARRAY = object()  # what ("numpy", "ndarray") resolves to: an argument of _reconstruct, never called


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's `_reconstruct(ndarray, (0,), b'b')`: the empty array a BUILD then fills."""
    import numpy as np

    if subtype is not _NDARRAY or _count(_shape(shape)) != 0 or not isinstance(dtype, (bytes, str)) \
            or len(dtype) > 4:
        raise _Refused("numpy _reconstruct is allowed only as _reconstruct(numpy.ndarray, (0,), b'b')")
    return _numpy_module("numpy._core.multiarray")._reconstruct(np.ndarray, shape, dtype)


def _np_scalar(dtype: Any, obj: Any = None) -> Any:
    dtype = _plain_dtype(dtype)
    if dtype.hasobject:
        return obj
    if isinstance(obj, str):  # Python 2 pickles: the bytes as a latin-1 str
        obj = obj.encode("latin1")
    if not isinstance(obj, (bytes, bytearray)) or len(obj) != dtype.itemsize:
        raise _Refused(f"a numpy {dtype} scalar needs {dtype.itemsize} bytes")
    return _numpy_module("numpy._core.multiarray").scalar(dtype, bytes(obj))


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    """numpy's `_frombuffer` (protocol 5 arrays), with the size checked against the buffer."""
    import numpy as np

    dtype, shape = _plain_dtype(dtype), _shape(shape)
    if isinstance(buf, pickle.PickleBuffer):
        buf = buf.raw()
    if not isinstance(buf, (bytes, bytearray, memoryview)) or dtype.hasobject or order not in ("C", "F"):
        raise _Refused("numpy _frombuffer needs a byte buffer, a plain dtype and order C or F")
    _elements(shape, dtype, memoryview(buf).nbytes)
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _check_dtype_state(dtype: Any, state: Any) -> None:
    """The state numpy writes for a plain dtype: (3, order, None, None, None, elsize, alignment,
    flags) (+ metadata, version 4), with the size, alignment and flags the dtype already has: only
    the byte order may change (flags claiming objects would make numpy read bytes as pointers)."""
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] != len(state) - 5 \
            or type(state[0]) is not int:
        raise _Refused(f"dtype state {_short(state)} is not one numpy writes")
    _, order, subarray, names, fields, elsize, alignment, flags = state[:8]
    if order not in ("<", ">", "|", "=") or subarray is not None or names is not None or fields is not None:
        raise _Refused("a dtype state with sub-arrays or fields is not read from a data pickle")
    if elsize not in (-1, dtype.itemsize) or alignment not in (-1, dtype.alignment) or flags != dtype.flags \
            or not all(type(v) is int for v in (elsize, alignment, flags)):
        raise _Refused(f"dtype state {_short(state)} does not fit dtype {dtype}")
    if len(state) == 9 and not (state[8] is None or isinstance(state[8], dict)):
        raise _Refused("dtype metadata must be a dict")


def _check_array_state(array: Any, state: Any) -> None:
    """The state numpy writes for an array: (1, shape, dtype, is_fortran, data) where data is a list
    of the elements (object arrays) or the raw bytes, exactly as many as the shape and dtype say."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _Refused(f"array state {_short(state)} is not one numpy writes")
    if len(state) == 5:
        if state[0] != 1 or type(state[0]) is not int:
            raise _Refused(f"array state version {_short(state[0])} is not one numpy writes")
        state = state[1:]
    shape, dtype, fortran, data = state
    shape, dtype = _shape(shape), _plain_dtype(dtype)
    if array.size != 0 or type(fortran) not in (bool, int) or fortran not in (0, 1):
        raise _Refused("an array state must fill an empty array, with is_fortran 0 or 1")
    if dtype.hasobject:
        n = _count(shape)
        if not isinstance(data, list) or len(data) != n:
            raise _Refused(f"an object array of shape {shape} needs a list of {n} elements")
    elif not isinstance(data, (bytes, bytearray, str)):
        raise _Refused(f"an array of dtype {dtype} needs its data as bytes")
    else:
        _elements(shape, dtype, len(data))


_WRAPPERS = {"dtype": _np_dtype, "ndarray": _NDARRAY, "_reconstruct": _np_reconstruct, "scalar": _np_scalar,
             "_frombuffer": _np_frombuffer}


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


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its BUILD can be checked
    """Resolves only `ALLOWED_GLOBALS` (numpy's through checking wrappers); everything else raises
    before anything is called; BUILD sets the state of numpy dtypes and arrays only, checked."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, *, max_bytes: int, **kwargs: Any):
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes  # what is left of the file: no length field may claim more
        read = self._file_read

        def checked_read(n: int = -1) -> bytes:
            if n is not None and n > self.max_bytes:  # never ask the file (and memory) for more than it has
                if self.max_bytes == 0:
                    raise EOFError("Ran out of input")
                raise pickle.UnpicklingError(f"pickle data was truncated: a length field claims {n} bytes, the "
                                             f"file holds {self.max_bytes}")
            return read(n)

        self._file_read = checked_read

    def load_bytearray8(self) -> None:  # the stock one allocates (and zeroes) the claimed size first
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self.max_bytes:
            raise pickle.UnpicklingError(f"pickle data was truncated: BYTEARRAY8 claims {n} bytes, the file "
                                         f"holds {self.max_bytes}")
        buf = bytearray(n)
        self.readinto(buf)
        self.append(buf)

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

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
        if (module, name) in (("builtins", "bytes"), ("builtins", "bytearray")):
            return _plain_bytes(bytes if name == "bytes" else bytearray)
        if module.startswith("numpy"):
            return _WRAPPERS[name]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data pickle")

    def load_build(self) -> None:
        import numpy as np

        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif type(inst) is np.ndarray:
            _check_array_state(inst, state)
        else:
            raise _Refused(f"BUILD on a {type(inst).__name__}: a data pickle sets the state of numpy dtypes and "
                           "arrays only")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build


def loads(data: bytes, *, where: str = "pickle") -> Any:
    return _load_stream(io.BytesIO(data), where)


def load(path: str | os.PathLike[str]) -> Any:
    """Unpickle a data file safely; a refused global or a corrupt file raises `UserError`."""
    where = os.fspath(path)
    require_regular_file(where)
    try:
        fh = open(where, "rb")
    except FileNotFoundError:
        raise UserError(f"{where} does not exist; check the path.") from None
    except OSError as exc:
        raise UserError(f"cannot open {where} ({exc.strerror}); check the path and its permissions.") from None
    with fh:
        return _load_stream(fh, where)


def _remaining(fh: Any) -> int:
    if isinstance(fh, io.BytesIO):
        return len(fh.getbuffer()) - fh.tell()
    return os.fstat(fh.fileno()).st_size - fh.tell()


def _load_stream(fh: Any, where: str) -> Any:
    try:
        # latin1: Python 2 pickles of numpy arrays store the raw bytes as py2 str.
        size = _remaining(fh)
        obj = RestrictedUnpickler(fh, max_bytes=size, encoding="latin1").load()
        # Without shared references a container item costs at least one byte of the file.
        check_expanded_size(obj, EXPANSION_FACTOR * size + EXPANSION_SLACK)
        return obj
    except _RefusedGlobal as exc:
        raise UserError(
            f"{where} refers to {exc.module}.{exc.name}, which a data pickle may not contain "
            "(only numpy arrays, lists, dicts, tuples, str, bytes and numbers are read); "
            "re-save the file with plain numpy arrays."
        ) from None
    except _Refused as exc:
        raise UserError(
            f"{where} is not a plain data pickle ({exc}); the file is corrupt or crafted: download or generate "
            "it again."
        ) from None
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{where}: out of memory while reading the pickle; free memory or use a smaller "
                        "file.") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a corrupt file
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise UserError(
            f"{where} is not a readable pickle ({reason}); the file is truncated or corrupt: "
            "download or generate it again."
        ) from None
