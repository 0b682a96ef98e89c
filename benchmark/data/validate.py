"""Validation of a loaded dataset, exactly as docs/architecture.md §5 says.

- Audio `-inf` (COVAREP writes it) becomes 0 and is counted in `DatasetData.neg_inf_count`.
- NaN or `+inf` anywhere, or `-inf` anywhere but audio: `UserError`.
- Shapes vs lengths (a length above the padded length T, or a lengths count != N), label ranges
  ([-3, 3] MOSI/MOSEI, [-1, 1] SIMS, classes in {0, 1, 2}, multi-labels in {0, 1}), empty or
  missing splits, duplicate ids and missing keys: `UserError`.

Everything is vectorised: big arrays are scanned in row chunks with `min`/`max` reductions (no
temporary the size of the array, no per-sample Python loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from msabench.core.errors import UserError
from msabench.data.container import SPLITS, DatasetData, SplitData

# Sentiment score ranges by dataset family.
SCORE_RANGES: dict[str, tuple[float, float]] = {"mosi": (-3.0, 3.0), "mosei": (-3.0, 3.0), "sims": (-1.0, 1.0)}
N_CLASSES = 3
_CHUNK_ELEMENTS = 1 << 22  # about 16 MB of float32 per reduction


def require_keys(mapping: Mapping[str, Any], keys: Iterable[str], where: str, what: str = "") -> None:
    """UserError naming the missing keys of a reader's dict (a pickle split, an npz, a CSV header)."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        have = ", ".join(sorted(map(str, mapping))) or "nothing"
        raise UserError(
            f"{where}{' ' + what if what else ''} lacks {', '.join(map(repr, missing))} (it has: {have}); "
            "the file is not in the expected layout: use the original file or regenerate it."
        )


def scan_nonfinite(values: np.ndarray, *, where: str, allow_neg_inf: bool = False) -> tuple[np.ndarray, int]:
    """Raise on NaN/+inf (and -inf unless allowed); with `allow_neg_inf`, set -inf to 0.

    Returns the (possibly copied, when read-only) array and the number of -inf values replaced.
    """
    if not np.issubdtype(values.dtype, np.floating) or values.size == 0:
        return values, 0
    if values.ndim == 0:
        values = values.reshape(1)
    n = values.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // max(1, values.size // max(n, 1)))
    replaced = 0
    for start in range(0, n, rows):
        chunk = values[start:start + rows]  # a view: slicing the first axis never copies
        lo, hi = chunk.min(), chunk.max()
        if np.isnan(lo) or np.isnan(hi):
            raise UserError(f"{where} contains NaN; NaN is not allowed in any feature or label: clean or regenerate "
                            "the file.")
        if hi == np.inf:
            raise UserError(f"{where} contains +inf; +inf is not allowed in any feature or label: clean or regenerate "
                            "the file.")
        if lo == -np.inf:
            if not allow_neg_inf:
                raise UserError(
                    f"{where} contains -inf; -inf is allowed only in audio (COVAREP), not here: clean or regenerate "
                    "the file."
                )
            if not values.flags.writeable:
                values = np.array(values)  # read-only (memory-mapped) input: work on a copy
                chunk = values[start:start + rows]
            mask = np.isneginf(chunk)
            replaced += int(np.count_nonzero(mask))
            chunk[mask] = 0
    return values, replaced


def _check_lengths(values: np.ndarray, lengths: np.ndarray | None, n: int, where: str, name: str) -> np.ndarray | None:
    if values.shape[0] != n:
        raise UserError(f"{where}: {name} has {values.shape[0]} rows but the split has {n} ids; the file is "
                        "inconsistent: regenerate it.")
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.shape[0] != n:
        raise UserError(
            f"{where}: {name}_lengths has shape {lengths.shape} but the split has {n} samples; "
            "the file is inconsistent: regenerate it."
        )
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        as_int = lengths.astype(np.int64)
        if not np.array_equal(as_int, lengths):
            raise UserError(f"{where}: {name}_lengths holds non-integer values; lengths must be whole numbers: "
                            "regenerate the file.")
        lengths = as_int
    lengths = lengths.astype(np.int64, copy=False)
    if lengths.size:
        t = values.shape[1] if values.ndim > 1 else 1
        bad_hi, bad_lo = lengths > t, lengths < 0
        if bad_hi.any():
            i = int(np.argmax(bad_hi))
            raise UserError(
                f"{where}: {name}_lengths[{i}] = {int(lengths[i])} exceeds the padded length {t} "
                f"({int(bad_hi.sum())} samples do); the lengths do not match the arrays: regenerate the file."
            )
        if bad_lo.any():
            i = int(np.argmax(bad_lo))
            raise UserError(f"{where}: {name}_lengths[{i}] = {int(lengths[i])} is negative; regenerate the file.")
    return lengths


def _check_split(split: SplitData, *, where: str, range_owner: str, score_range: tuple[float, float] | None) -> int:
    ids = np.asarray(split.ids)
    n = ids.shape[0] if ids.ndim else 0
    if ids.ndim != 1:
        raise UserError(f"{where}: ids have shape {ids.shape}, expected one id per sample; regenerate the file.")
    if n == 0:
        raise UserError(f"{where} is empty; every split needs samples: check the file or its split column.")
    neg_inf = 0
    # Text.
    if split.text_ids is not None:
        if split.text_ids.ndim != 2:
            raise UserError(f"{where}: text ids have shape {split.text_ids.shape}, expected (N, T); regenerate the "
                            "file.")
        split.text_lengths = _check_lengths(split.text_ids, split.text_lengths, n, where, "text")
    if split.text_feats is not None:
        if split.text_feats.ndim != 3:
            raise UserError(f"{where}: text features have shape {split.text_feats.shape}, expected (N, T, D); "
                            "regenerate the file.")
        split.text_lengths = _check_lengths(split.text_feats, split.text_lengths, n, where, "text")
        if split.text_ids is not None and split.text_ids.shape[1] != split.text_feats.shape[1]:
            raise UserError(
                f"{where}: text ids have length {split.text_ids.shape[1]} but text features "
                f"{split.text_feats.shape[1]}; "
                "they must align: regenerate the file."
            )
        split.text_feats, _ = scan_nonfinite(split.text_feats, where=f"{where} text")
    # Audio (-inf allowed and zeroed) and vision.
    for name in ("audio", "vision"):
        values = getattr(split, name)
        if values is None:
            continue
        if values.ndim != 3:
            raise UserError(f"{where}: {name} has shape {values.shape}, expected (N, T, D); regenerate the file.")
        setattr(split, f"{name}_lengths", _check_lengths(values, getattr(split, f"{name}_lengths"), n, where, name))
        values, count = scan_nonfinite(values, where=f"{where} {name}", allow_neg_inf=(name == "audio"))
        setattr(split, name, values)
        neg_inf += count
    # Labels.
    if split.regression is not None:
        reg = split.regression
        if reg.shape != (n,):
            raise UserError(f"{where}: regression labels have shape {reg.shape}, expected ({n},); regenerate the file.")
        scan_nonfinite(reg, where=f"{where} regression labels")
        _check_range(reg, score_range, f"{where} regression labels", range_owner)
    for m, scores in split.unimodal.items():
        if np.shape(scores) != (n,):
            raise UserError(f"{where}: {m} unimodal labels have shape {np.shape(scores)}, expected ({n},); regenerate "
                            "the file.")
        scan_nonfinite(np.asarray(scores), where=f"{where} {m} unimodal labels")
        _check_range(np.asarray(scores), score_range, f"{where} {m} unimodal labels", range_owner)
    if split.classification is not None:
        cls = split.classification
        if cls.shape != (n,):
            raise UserError(f"{where}: class labels have shape {cls.shape}, expected ({n},); regenerate the file.")
        bad = (cls < 0) | (cls >= N_CLASSES)
        if bad.any():
            raise UserError(
                f"{where}: class label {cls[np.argmax(bad)]!r} is not one of 0, 1, 2 (negative, neutral, positive); "
                "fix the labels."
            )
    if split.multilabel is not None:
        ml = split.multilabel
        if ml.ndim != 2 or ml.shape[0] != n:
            raise UserError(f"{where}: multi-labels have shape {ml.shape}, expected ({n}, 4); regenerate the file.")
        scan_nonfinite(ml, where=f"{where} multi-labels")
        if not np.isin(ml, (0, 1)).all():
            raise UserError(f"{where}: multi-labels hold values other than 0 and 1; fix the labels.")
    if split.raw_text is not None and len(split.raw_text) != n:
        raise UserError(f"{where}: {len(split.raw_text)} texts for {n} ids; the file is inconsistent: regenerate it.")
    return neg_inf


def _check_range(values: np.ndarray, score_range: tuple[float, float] | None, where: str, owner: str) -> None:
    if score_range is None or values.size == 0:
        return
    lo, hi = score_range
    vmin, vmax = float(values.min()), float(values.max())
    if vmin < lo or vmax > hi:
        bad = vmin if vmin < lo else vmax
        raise UserError(
            f"{where}: score {bad:g} is outside [{lo:g}, {hi:g}], {owner}; "
            "check that the file belongs to this dataset."
        )


def validate_dataset(
    data: DatasetData,
    *,
    where: str | None = None,
    splits: Iterable[str] = SPLITS,
    score_range: tuple[float, float] | None | str = "family",
    range_owner: str | None = None,
) -> DatasetData:
    """Check `data` in place (audio -inf set to 0 and counted) and return it; UserError on a problem.

    `splits`: the splits that must be present and non-empty (all three by default).
    `score_range`: "family" (by `data.family`), None (no range check) or (lo, hi); `range_owner` says
    whose range it is in the error (default: the family's).
    """
    where = where or data.source or data.name
    if score_range == "family":
        score_range = SCORE_RANGES.get(data.family)
    required = list(splits)
    missing = [s for s in required if s not in data.splits]
    if missing:
        raise UserError(
            f"{where} has no {', '.join(missing)} split (it has: {', '.join(data.splits) or 'none'}); "
            "every dataset needs train, valid and test: use the complete file."
        )
    label_field = {"regression": "regression", "classification": "classification",
                   "multilabel": "multilabel"}.get(data.label_kind)
    neg_inf = 0
    dims: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, split in data.splits.items():
        split_where = f"{where} [{name}]"
        if label_field and getattr(split, label_field) is None:
            raise UserError(
                f"{split_where} has no {data.label_kind} labels; the file is not in the expected layout: regenerate it."
            )
        neg_inf += _check_split(split, where=split_where, score_range=score_range,
                                range_owner=range_owner or f"the range of {data.family} labels")
        for key in ("text_feats", "audio", "vision", "multilabel"):
            arr = getattr(split, key)
            if arr is None:
                continue
            tail = tuple(arr.shape[2:]) if key != "multilabel" else tuple(arr.shape[1:])
            if key in dims and dims[key][1] != tail:
                raise UserError(
                    f"{where}: {key} has feature shape {tail} in {name} but {dims[key][1]} in {dims[key][0]}; "
                    "all splits must share dims: regenerate the file."
                )
            dims.setdefault(key, (name, tail))
    _check_unique_ids(data, where)
    data.neg_inf_count += neg_inf
    return data


def _check_unique_ids(data: DatasetData, where: str) -> None:
    parts = [np.asarray(s.ids).astype(str) for s in data.splits.values()]
    if not parts:
        return
    ids = np.concatenate(parts)
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.shape[0] != ids.shape[0]:
        dup = uniq[counts > 1]
        shown = ", ".join(repr(str(x)) for x in dup[:3]) + (", ..." if dup.shape[0] > 3 else "")
        raise UserError(
            f"{where}: {dup.shape[0]} sample ids occur more than once ({shown}); ids must be unique within a dataset: "
            "fix the id column or the file."
        )
