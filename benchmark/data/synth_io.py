"""Streaming writers for the synthetic suite: the `arrays/*.npy` (its one copy of the data) and, on
request, an MMSA `data.pkl` written from those arrays (`write_mmsa_pickle`).

`data.pkl` is written as a stream, one array at a time, so it never holds a whole split:
the nested dict is emitted opcode by opcode (protocol 4 opcodes, no memo), and each numpy array in
the form numpy 1.x wrote it (`numpy.core.multiarray._reconstruct` + `ndarray.__setstate__` with
the raw bytes). That form loads with plain `pickle.load` under numpy 1.x and 2.x (the arrays come
back writable, as MMSA's `audio[audio == -inf] = 0` needs) and uses only the globals a restricted
unpickler for real MMSA files must allow anyway (`numpy.core.multiarray._reconstruct`,
`numpy.ndarray`, `numpy.dtype`). Strings and lists are pickled normally (protocol 3, no memo).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import uuid
from pathlib import Path

import numpy as np

_PROTO4 = b"\x80\x04"
_EMPTY_DICT, _MARK, _SETITEMS, _STOP = b"}", b"(", b"u", b"."
_TUPLE, _REDUCE, _BUILD = b"t", b"R", b"b"
_NEWFALSE, _NEWTRUE, _NONE = b"\x89", b"\x88", b"N"


def _short_str(s: str) -> bytes:
    b = s.encode("utf-8")
    assert len(b) < 256
    return b"\x8c" + bytes([len(b)]) + b


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def _dtype_ops(dtype: np.dtype) -> bytes:
    # numpy.dtype('f4', False, True) then __setstate__((3, '<', None, None, None, -1, -1, 0))
    assert dtype.kind in "fiub" and dtype.fields is None
    order = "|" if dtype.itemsize == 1 else "<"
    assert dtype.byteorder in "=<|"
    return (b"cnumpy\ndtype\n" + _short_str(dtype.kind + str(dtype.itemsize)) + _NEWFALSE
            + _NEWTRUE + b"\x87" + _REDUCE + _MARK + _int(3) + _short_str(order) + _NONE * 3
            + _int(-1) + _int(-1) + _int(0) + _TUPLE + _BUILD)


def array_header(arr: np.ndarray) -> bytes:
    """The opcodes before an array's raw bytes (BINBYTES8 length included)."""
    shape = b"".join(_int(int(s)) for s in arr.shape)
    if arr.ndim in (1, 2, 3):
        shape += b"\x85\x86\x87"[arr.ndim - 1 : arr.ndim]  # TUPLE1/2/3
    else:
        shape = _MARK + shape + _TUPLE
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85"
            + b"C\x01b" + b"\x87" + _REDUCE + _MARK + _int(1) + shape + _dtype_ops(arr.dtype)
            + _NEWFALSE + b"\x8e" + struct.pack("<Q", arr.nbytes))


def _plain(obj) -> bytes:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=3)
    p.fast = True  # no memo: the fragment is spliced into a larger stream
    p.dump(obj)
    data = buf.getvalue()
    assert data[:2] == b"\x80\x03" and data[-1:] == _STOP
    return data[2:-1]


class PickleStream:
    """Writes nested dicts of str keys, arrays and plain objects as one pickle, in order."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.f.write(_PROTO4)
        self.depth = 0

    def begin(self, key: str | None = None) -> None:
        if key is not None:
            self.f.write(_short_str(key))
        self.f.write(_EMPTY_DICT + _MARK)
        self.depth += 1

    def end(self) -> None:
        self.f.write(_SETITEMS)
        self.depth -= 1

    def array(self, key: str, arr: np.ndarray) -> None:
        arr = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        self.f.write(_short_str(key) + array_header(arr))
        if arr.nbytes:
            self.f.write(memoryview(arr).cast("B"))
        self.f.write(_TUPLE + _BUILD)

    def plain(self, key: str, obj) -> None:
        self.f.write(_short_str(key) + _plain(obj))

    def close(self) -> None:
        assert self.depth == 0
        self.f.write(_STOP)
        self.f.close()

    def __enter__(self) -> PickleStream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.f.close()  # an unfinished stream: its folder is discarded


def save_npy(path: Path, arr: np.ndarray) -> None:
    """np.save's format (a version 1.0 header, then the C-order bytes)."""
    arr = arr if arr.flags.c_contiguous else np.array(arr, order="C")
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        if arr.nbytes:
            f.write(memoryview(arr).cast("B"))


SPLITS = ("train", "valid", "test")
# After id, raw_text and text_bert, in MMSA's order; the first label file present, then SIMS's unimodal ones.
PICKLE_ARRAYS = ("text", "audio", "audio_lengths", "vision", "vision_lengths")
PICKLE_LABELS = ("regression_labels", "classification_labels", "multilabel_labels")
UNIMODAL_LABELS = ("regression_labels_T", "regression_labels_A", "regression_labels_V")


def write_mmsa_pickle(folder: Path) -> Path:
    """`folder/data.pkl` in MMSA's layout from `folder/arrays/` (one domain's folder), streamed and
    renamed into place (never half-written). `text_bert` is rebuilt from the token ids and lengths:
    (ids, mask, zero segments), as MMSA stores it."""
    arrays = folder / "arrays"
    target = folder / "data.pkl"
    tmp = folder / f".data.pkl.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def load(split: str, key: str):
        path = arrays / f"{split}_{key}.npy"
        return np.load(path, mmap_mode="r", allow_pickle=False) if path.exists() else None

    try:
        with PickleStream(tmp) as pkl:
            pkl.begin()
            for split in SPLITS:
                pkl.begin(split)
                pkl.plain("id", load(split, "id").tolist())
                pkl.plain("raw_text", load(split, "raw_text").tolist())
                ids, lengths = np.asarray(load(split, "text_ids")), np.asarray(load(split, "text_lengths"))
                mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
                pkl.array("text_bert", np.stack([ids, mask, np.zeros_like(ids)], axis=1))
                del ids, mask
                for key in PICKLE_ARRAYS:
                    pkl.array(key, load(split, key))
                label = next(k for k in PICKLE_LABELS if (arrays / f"{split}_{k}.npy").exists())
                pkl.array(label, load(split, label))
                for key in UNIMODAL_LABELS:
                    if (value := load(split, key)) is not None:
                        pkl.array(key, value)
                pkl.end()
            pkl.end()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
