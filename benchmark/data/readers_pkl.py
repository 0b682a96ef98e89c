"""Readers for the pickled layouts: MMSA (MOSI/MOSEI/SIMS, synthetic data.pkl) and MulT (IEMOCAP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from msabench.core.errors import UserError
from msabench.data import safe_pickle
from msabench.data.container import SPLITS, DatasetData, SplitData
from msabench.data.readers_common import (
    PathLike,
    as_float,
    as_ids,
    as_int,
    files_hash,
    flat_labels,
    infer_name,
)
from msabench.data.validate import require_keys, validate_dataset


def _load_split_dict(path: PathLike, where: str, splits: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    obj = safe_pickle.load(path)
    if not isinstance(obj, dict):
        raise UserError(
            f"{where} holds a {type(obj).__name__}, not a dict of splits (train, valid, test); "
            "the file is not in the expected layout: use the original file."
        )
    require_keys(obj, splits, where, "(top level)")
    for s in splits:
        if not isinstance(obj[s], dict):
            raise UserError(f"{where}: split {s!r} is a {type(obj[s]).__name__}, not a dict of arrays; use the "
                            "original file.")
    return obj


def _full_lengths(values: np.ndarray) -> np.ndarray:
    return np.full(values.shape[0], values.shape[1], dtype=np.int64)


def is_aligned_name(path: PathLike) -> bool:
    stem = Path(path).stem.lower()
    return stem.startswith("aligned") or ("_aligned" in stem and "unaligned" not in stem)


def _mmsa_split(d: dict[str, Any], where: str, aligned: bool) -> SplitData:
    require_keys(d, ("id", "audio", "vision"), where)
    if "text" not in d and "text_bert" not in d:
        require_keys(d, ("text",), where)
    ids = as_ids(d["id"], f"{where} id")
    split = SplitData(ids=ids)
    if "raw_text" in d and d["raw_text"] is not None:
        raw = d["raw_text"]
        if not (isinstance(raw, (list, tuple)) or (isinstance(raw, np.ndarray) and raw.ndim == 1)):
            raise UserError(f"{where} raw_text is a {type(raw).__name__}, not one text per sample; use the original "
                            "file.")
        split.raw_text = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in list(raw)]
    # Text: precomputed features (N, T, D) and/or BERT inputs (N, 3, T) = ids, mask, segments.
    if "text" in d:
        split.text_feats = as_float(d["text"], f"{where} text", 3)
    if "text_bert" in d and d["text_bert"] is not None:
        bert = as_float(d["text_bert"], f"{where} text_bert", 3)
        if bert.shape[1] != 3:
            raise UserError(f"{where}: text_bert has shape {bert.shape}, expected (N, 3, T) (ids, mask, segments); use "
                            "the original file.")
        split.text_ids = as_int(bert[:, 0], f"{where} text_bert ids")
        split.text_lengths = as_int(bert[:, 1], f"{where} text_bert mask").sum(axis=1)
    elif split.text_feats is not None:
        split.text_lengths = _full_lengths(split.text_feats)
    for m in ("audio", "vision"):
        values = as_float(d[m], f"{where} {m}", 3)
        key = f"{m}_lengths"
        if key in d and d[key] is not None:
            lengths = as_int(d[key], f"{where} {key}").reshape(-1)
        elif aligned:
            # Aligned layouts are word-aligned to the text: same real length as the text.
            lengths = split.text_lengths if split.text_lengths is not None else _full_lengths(values)
        else:
            require_keys(d, (key,), where)
            raise UserError(f"{where}: {key} is None; the unaligned layout needs the real length of every sample: "
                            "use the original file.")
        setattr(split, m, values)
        setattr(split, key, lengths)
    if "regression_labels" in d:
        split.regression = flat_labels(d["regression_labels"], f"{where} regression_labels")
        for m in ("T", "A", "V"):
            key = f"regression_labels_{m}"
            if key in d:
                split.unimodal[m.lower()] = flat_labels(d[key], f"{where} {key}")
    elif "classification_labels" in d:
        split.classification = as_int(d["classification_labels"], f"{where} classification_labels").reshape(-1)
    elif "multilabel_labels" in d:
        split.multilabel = as_float(d["multilabel_labels"], f"{where} multilabel_labels", 2)
    else:
        require_keys(d, ("regression_labels",), where)
    return split


def read_mmsa_pickle(
    path: PathLike,
    *,
    name: str | None = None,
    family: str | None = None,
    aligned: bool | None = None,
    where: str | None = None,
    synthetic: bool = False,
    score_range: tuple[float, float] | str = "family",
    range_owner: str | None = None,
) -> DatasetData:
    """An MMSA feature pickle (`unaligned_50.pkl`, `aligned_50.pkl`, `unaligned_39.pkl`, data.pkl).

    dict split (train, valid, test) -> id, raw_text, text (N,T,768), text_bert (N,3,T), audio,
    vision, audio_lengths, vision_lengths, regression_labels (+ regression_labels_T/A/V for SIMS);
    synthetic files may hold classification_labels or multilabel_labels instead. Validated
    (`score_range`/`range_owner`: as `validate_dataset`; a dataset card gives its own range).
    """
    where = where or os.fspath(path)
    if aligned is None:
        aligned = is_aligned_name(path)
    obj = _load_split_dict(path, where, SPLITS)
    splits = {s: _mmsa_split(obj[s], f"{where} [{s}]", aligned) for s in SPLITS}
    train = splits["train"]
    label_kind = (
        "regression" if train.regression is not None
        else "classification" if train.classification is not None
        else "multilabel"
    )
    name = name or infer_name(path) or Path(path).stem
    if family is None:
        family = infer_name(path) or ("sims" if train.unimodal else "mosi")
    data = DatasetData(
        name=name, family=family, splits=splits, label_kind=label_kind, synthetic=synthetic,
        data_hash=files_hash([path]), source=where,
    )
    return validate_dataset(data, where=where, score_range=score_range, range_owner=range_owner)


def read_mult_pickle(
    path: PathLike,
    *,
    name: str = "iemocap",
    family: str = "iemocap",
    where: str | None = None,
) -> DatasetData:
    """MulT's IEMOCAP pickle (`iemocap_data_noalign.pkl`): dict split (train, valid, test) -> text,
    audio, vision (N,T,D) and labels (N,4,2), one-hot per emotion in the order
    `IEMOCAP_EMOTIONS` (neutral, happy, sad, angry: MulT's `eval_iemocap`);
    the multi-label is labels[..., 1]. MulT uses no lengths: every position counts as real."""
    where = where or os.fspath(path)
    obj = _load_split_dict(path, where, SPLITS)
    splits: dict[str, SplitData] = {}
    for s in SPLITS:
        d, sw = obj[s], f"{where} [{s}]"
        require_keys(d, ("text", "audio", "vision", "labels"), sw)
        labels = as_float(d["labels"], f"{sw} labels", (2, 3))
        if labels.ndim == 3:
            if labels.shape[1:] != (4, 2):
                raise UserError(f"{sw}: labels have shape {labels.shape}, expected (N, 4, 2) (one-hot per emotion); "
                                "use MulT's file.")
            labels = np.ascontiguousarray(labels[..., 1])
        elif labels.shape[1] != 4:
            raise UserError(f"{sw}: labels have shape {labels.shape}, expected (N, 4, 2) (one-hot per emotion); use "
                            "MulT's file.")
        n = labels.shape[0]
        if "id" in d and d["id"] is not None:
            ids = as_ids(d["id"], f"{sw} id")
        else:
            ids = np.char.add(f"{s}_", np.arange(n).astype(str))
        split = SplitData(ids=ids, multilabel=labels)
        split.text_feats = as_float(d["text"], f"{sw} text", 3)
        split.text_lengths = _full_lengths(split.text_feats)
        for m in ("audio", "vision"):
            values = as_float(d[m], f"{sw} {m}", 3)
            setattr(split, m, values)
            setattr(split, f"{m}_lengths", _full_lengths(values))
        splits[s] = split
    data = DatasetData(
        name=name, family=family, splits=splits, label_kind="multilabel", synthetic=False,
        data_hash=files_hash([path]), source=where,
    )
    return validate_dataset(data, where=where)


def looks_like_mult(path: PathLike) -> bool:
    return Path(path).name.lower().startswith("iemocap_data")
