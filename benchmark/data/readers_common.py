"""Helpers shared by the readers: file hashing, missing-file errors, features.npz, id handling."""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from msabench.core.errors import UserError, require_regular_file
from msabench.data.container import SplitData

PathLike = str | os.PathLike[str]

DATA_ROOT_HINT = (
    "pass --data-root DIR (or set MSABENCH_DATA_ROOT) to the folder laid out as "
    "MOSI/Processed/unaligned_50.pkl, MOSI/label.csv, MOSEI/..., SIMS/Processed/unaligned_39.pkl, "
    "MELD/{train,dev,test}_sent_emo.csv, IEMOCAP/iemocap_data_noalign.pkl"
)


def files_hash(paths: Iterable[PathLike], n: int = 16) -> str:
    """Short sha256 over the bytes of the files (streamed), in the given order, with their names."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        require_regular_file(p)
        h.update(f"{p.name}\x00{p.stat().st_size}\x00".encode())
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:n]


def shown(path: PathLike, root: PathLike | None = None) -> str:
    """The path relative to the data root when it lies under it, else as given."""
    p = Path(path)
    if root is not None:
        try:
            return p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return os.fspath(p)


def require_file(path: PathLike, *, origin: str = "", root: PathLike | None = None) -> Path:
    """The path, or a UserError naming the file, where it comes from and the data-root layout."""
    p = Path(path)
    if p.is_file():
        return p
    where = f"{shown(p, root)} under {root}" if root is not None else os.fspath(p)
    came = f" (it is {origin})" if origin else ""
    raise UserError(f"{where} not found{came}; {DATA_ROOT_HINT}.")


def _array(values: object, where: str, dtype: object = None) -> np.ndarray:
    """np.asarray, with a ragged or non-numeric value (ValueError, TypeError, OverflowError) as a UserError."""
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        what = "numeric" if dtype is not None else "a regular array (equal-length rows)"
        raise UserError(f"{where} is not {what}; the file is not in the expected layout: regenerate it.") from None


def as_ids(values: object, where: str) -> np.ndarray:
    """(N,) str array from a list/array of ids (bytes decoded as UTF-8, 2-d rows joined by '$_$')."""
    arr = _array(values, where)
    if arr.dtype.kind == "S":
        try:
            arr = np.char.decode(arr, "utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{where}: ids are not UTF-8; re-save the file with text ids.") from None
    if arr.ndim == 2:  # (video_id, clip_id) rows
        if arr.shape[1] == 0:
            raise UserError(f"{where}: ids have shape {arr.shape}, expected one id per sample; re-save the file.")
        arr = arr.astype(str)
        joined = arr[:, 0]
        for j in range(1, arr.shape[1]):
            joined = np.char.add(np.char.add(joined, "$_$"), arr[:, j])
        arr = joined
    if arr.ndim != 1:
        raise UserError(f"{where}: ids have shape {arr.shape}, expected one id per sample; re-save the file.")
    if arr.dtype == object:
        arr = np.array([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.tolist()])
    return arr.astype(str)


def as_float(values: object, where: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    raw = _array(values, where)
    if raw.dtype.kind == "c":  # a cast would drop the imaginary part silently
        raise UserError(f"{where} holds complex numbers; features and labels are real numbers: regenerate the file.")
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 4 and raw.size:
        with np.errstate(invalid="ignore"):
            finite = np.abs(raw[np.isfinite(raw)])
        if finite.size and finite.max() > np.finfo(np.float32).max:  # would become +-inf as float32
            raise UserError(f"{where} holds {finite.max():.3g}, beyond the float32 range (3.4e38) msabench reads "
                            "features in; rescale or regenerate the file.")
    arr = _array(raw, where, np.float32)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-d" for d in ndims)
        raise UserError(f"{where} has shape {arr.shape}, expected a {want} array; the file is not in the expected "
                        "layout.")
    return arr


def as_int(values: object, where: str) -> np.ndarray:
    arr = _array(values, where)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    try:
        as_f = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where} is not numeric; the file is not in the expected layout: regenerate it.") from None
    if as_f.size and not (np.isfinite(as_f).all() and np.array_equal(as_f, np.round(as_f))):
        raise UserError(f"{where} holds non-integer values; whole numbers are expected: regenerate the file.")
    return as_f.astype(np.int64)


def flat_labels(values: object, where: str) -> np.ndarray:
    arr = as_float(values, where, (1, 2))
    if arr.ndim == 2:
        if arr.shape[1] != 1:
            raise UserError(f"{where} has shape {arr.shape}, expected one score per sample; regenerate the file.")
        arr = arr[:, 0]
    return arr


# A compressed member may inflate to at most this many times its compressed size (beyond a few MB):
# float features compress a few times at most, padding somewhat more; a member of zeros compresses
# a thousandfold, so a 3 MB zip bomb would otherwise cost GBs of RAM before anything is checked.
MAX_INFLATION, INFLATION_SLACK = 100, 16 << 20


def _check_npz_sizes(where: str) -> None:
    """Each member's .npy header must claim exactly the bytes the member holds: a 100-byte file must
    not make np.load allocate the terabytes its header claims; and no compressed member may inflate
    more than MAX_INFLATION times (a zip bomb)."""
    with zipfile.ZipFile(where) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            if info.compress_type != zipfile.ZIP_STORED and \
                    info.file_size > max(MAX_INFLATION * info.compress_size, INFLATION_SLACK):
                raise UserError(
                    f"{where}: {info.filename} inflates from {info.compress_size} to {info.file_size} bytes "
                    f"(more than {MAX_INFLATION} times: a zip bomb, or features that are mostly zeros); "
                    "save the features uncompressed (np.savez, not np.savez_compressed).")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    continue  # np.load refuses or handles it (3.0: same checks inside numpy)
                if dtype.hasobject:
                    continue  # refused by allow_pickle=False
                claimed = dtype.itemsize
                for n in shape:
                    claimed *= int(n)
                held = info.file_size - fh.tell()
                if claimed != held:
                    raise UserError(f"{where}: {info.filename} claims {claimed} bytes of data (shape {tuple(shape)}, "
                                    f"{dtype}) but holds {held}; the file is corrupt: regenerate it.")


def read_npz(path: PathLike) -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickled objects allowed); UserError on a bad file."""
    where = os.fspath(path)
    require_regular_file(where)
    try:
        _check_npz_sizes(where)
        with np.load(where, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except MemoryError:
        raise UserError(f"{where}: out of memory while reading it; free memory, or the file is corrupt: "
                        "regenerate it.") from None
    except FileNotFoundError:
        raise UserError(f"{where} does not exist; check the path.") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UserError(
                f"{where} stores Python objects; save ids and features as plain string and numeric arrays "
                "(np.savez with dtype str / float32)."
            ) from None
        raise UserError(f"{where} is not a readable .npz ({exc}); regenerate it.") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # zlib.error: a damaged compressed member; NotImplementedError: an unknown compression; RuntimeError:
        # an encrypted member
        raise UserError(f"{where} is not a readable .npz ({type(exc).__name__}: {exc}); regenerate it.") from None


FEATURE_MODALITIES = {"text": "t", "audio": "a", "vision": "v"}


def attach_features(splits: dict[str, SplitData], path: PathLike, *, where: str | None = None) -> None:
    """Fill text_feats/audio/vision (+ lengths) of each split from a features.npz, matching rows by id.

    The npz holds `id` (N,) strings and any of `text`, `audio`, `vision` as (N, D) (one step) or
    (N, T, D), with optional `<modality>_lengths` (N,); it may cover more ids than the splits.
    """
    where = where or os.fspath(path)
    arrays = read_npz(path)
    if "id" not in arrays:
        raise UserError(f"{where} lacks 'id' (it has: {', '.join(sorted(arrays)) or 'nothing'}); features.npz needs an "
                        "id array to match rows.")
    ids = as_ids(arrays["id"], f"{where} id")
    n = ids.shape[0]
    present = [m for m in FEATURE_MODALITIES if m in arrays]
    if not present:
        raise UserError(f"{where} holds none of text, audio, vision; add at least one feature array.")
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in present:
        values = as_float(arrays[m], f"{where} {m}", (2, 3))
        if values.shape[0] != n:
            raise UserError(f"{where}: {m} has {values.shape[0]} rows but id has {n}; the arrays must align: "
                            "regenerate the file.")
        if values.ndim == 2:
            values = values[:, None, :]
        key = f"{m}_lengths"
        if key in arrays:
            lengths = as_int(arrays[key], f"{where} {key}")
            if lengths.shape != (n,):
                raise UserError(f"{where}: {key} has shape {lengths.shape}, expected ({n},); regenerate the file.")
        else:
            lengths = np.full(n, values.shape[1], dtype=np.int64)
        feats[m] = (values, lengths)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if n > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        raise UserError(f"{where}: id {str(dup[0])!r} occurs more than once; ids must be unique: fix the file.")
    for split_name, split in splits.items():
        want = np.asarray(split.ids).astype(str)
        pos = np.searchsorted(sorted_ids, want)
        pos_c = np.minimum(pos, max(n - 1, 0))
        found = (pos < n) & (sorted_ids[pos_c] == want) if n else np.zeros(want.shape, bool)
        if not found.all():
            missing = want[~found]
            raise UserError(
                f"{where} has no features for {missing.shape[0]} {split_name} ids (e.g. {str(missing[0])!r}); "
                "it must cover every id of the labels file: regenerate it."
            )
        rows = order[pos_c]
        for m, (values, lengths) in feats.items():
            short = FEATURE_MODALITIES[m]
            if short == "t":
                split.text_feats = values[rows]
                split.text_lengths = lengths[rows]
            elif short == "a":
                split.audio, split.audio_lengths = values[rows], lengths[rows]
            else:
                split.vision, split.vision_lengths = values[rows], lengths[rows]


KNOWN_FAMILIES = ("mosi", "mosei", "sims", "meld", "iemocap")


def infer_name(path: PathLike) -> str | None:
    """The real dataset a path belongs to, from its folder names (MOSI/..., MELD/...), or None."""
    for part in reversed(Path(os.path.abspath(path)).parts[:-1]):
        low = part.lower()
        if low in KNOWN_FAMILIES:
            return low
        for fam in KNOWN_FAMILIES:
            if low in (f"cmu-{fam}", f"ch-{fam}", f"cmu_{fam}"):
                return fam
    return None
