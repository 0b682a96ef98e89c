"""Readers for the CSV layouts: MMSA `label.csv` (+ features.npz) and MELD's `*_sent_emo.csv`."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from msabench.core.errors import UserError, require_regular_file
from msabench.data.container import SPLITS, DatasetData, SplitData
from msabench.data.readers_common import PathLike, attach_features, files_hash, infer_name
from msabench.data.validate import validate_dataset

LABEL_CSV_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MELD_COLUMNS = ("Utterance", "Sentiment", "Dialogue_ID", "Utterance_ID")
MELD_FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
MELD_PREFIX = {"train_sent_emo.csv": "train", "dev_sent_emo.csv": "dev", "test_sent_emo.csv": "test"}
MELD_SPLIT = {"train": "train", "dev": "valid", "test": "test"}
SENTIMENTS = {"negative": 0, "neutral": 1, "positive": 2}


def read_csv_rows(path: PathLike, where: str, required: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a UTF-8 CSV read with the csv module; UserError on encoding/columns."""
    require_regular_file(path, where)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise UserError(f"{where} does not exist; check the path.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{where} is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8 "
            "(e.g. iconv -f cp1252 -t utf-8)."
        ) from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UserError(f"{where} is not a valid CSV ({exc}); use the original file.") from None
    if not rows:
        raise UserError(f"{where} is empty; it needs a header row with {', '.join(required)}.")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        shown_header = " ".join(", ".join(header).split())  # one line, whatever the cells hold
        if len(shown_header) > 160:
            shown_header = shown_header[:160] + "..."
        raise UserError(
            f"{where} lacks the column(s) {', '.join(missing)} (its header is: {shown_header}); "
            f"the file needs {', '.join(required)}: use the original file."
        )
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    width = len(header)
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != width and any(cell.strip() for cell in r):
            raise UserError(f"{where} line {i} has {len(r)} fields but the header has {width}; fix the row (quote "
                            "fields with commas).")
    return header, body


def _cell(value: str, n: int = 40) -> str:
    """A cell as shown in an error: repr (one line), cut after `n` characters."""
    return repr(value if len(value) <= n else value[:n] + "...")


def _column(header: list[str], name: str) -> int:
    return header.index(name)


def read_label_csv(
    path: PathLike,
    *,
    name: str | None = None,
    family: str | None = None,
    features: PathLike | None | str = "auto",
    where: str | None = None,
    features_where: str | None = None,
    score_range: tuple[float, float] | str = "family",
    range_owner: str | None = None,
) -> DatasetData:
    """MMSA's `label.csv` (video_id, clip_id, text, label, annotation, mode in train/valid/test;
    SIMS adds label_T/label_A/label_V); ids are `video_id$_$clip_id`. `features`: a features.npz
    to attach (rows matched by id), None for none, "auto" for `features.npz` beside the CSV.
    `score_range`/`range_owner`: as `validate_dataset` (a dataset card gives its own range)."""
    where = where or os.fspath(path)
    header, rows = read_csv_rows(path, where, LABEL_CSV_COLUMNS)
    ci = {c: _column(header, c) for c in LABEL_CSV_COLUMNS}
    uni = {m: header.index(f"label_{m.upper()}") for m in ("t", "a", "v") if f"label_{m.upper()}" in header}
    by_split: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
    for i, r in enumerate(rows, start=2):
        mode = r[ci["mode"]].strip()
        if mode not in by_split:
            raise UserError(f"{where} line {i}: mode {_cell(mode)} is not train, valid or test; fix the mode column.")
        by_split[mode].append(r)
    splits: dict[str, SplitData] = {}
    for s, rs in by_split.items():
        ids = np.array([f"{r[ci['video_id']].strip()}$_${r[ci['clip_id']].strip()}" for r in rs], dtype=str)
        split = SplitData(ids=ids if rs else np.array([], dtype=str))
        split.raw_text = [r[ci["text"]] for r in rs]
        split.regression = _floats([r[ci["label"]] for r in rs], where, "label")
        for m, j in uni.items():
            split.unimodal[m] = _floats([r[j] for r in rs], where, f"label_{m.upper()}")
        splits[s] = split
    files = [Path(path)]
    if features == "auto":
        beside = Path(path).with_name("features.npz")
        features = beside if beside.is_file() else None
    if features is not None:
        attach_features(splits, features, where=features_where or os.fspath(features))
        files.append(Path(features))
    name = name or infer_name(path) or "label-csv"
    if family is None:
        family = infer_name(path) or ("sims" if uni else "mosi")
    data = DatasetData(
        name=name, family=family, splits=splits, label_kind="regression", synthetic=False,
        data_hash=files_hash(files), source=where + (f" + {features_where or os.fspath(features)}" if features else ""),
    )
    return validate_dataset(data, where=where, score_range=score_range, range_owner=range_owner)


def _floats(cells: list[str], where: str, column: str) -> np.ndarray:
    try:
        return np.array([float(c) for c in cells], dtype=np.float32)
    except ValueError:
        for c in cells:
            try:
                float(c)
            except ValueError:
                raise UserError(f"{where}: {column} value {_cell(c)} is not a number; fix the {column} "
                                "column.") from None
        raise


def read_meld_csv(path: PathLike, *, where: str | None = None) -> tuple[str, SplitData]:
    """One of MELD's `{train,dev,test}_sent_emo.csv` -> (split name, SplitData); dev -> valid.

    Ids are `{train|dev|test}_dia{Dialogue_ID}_utt{Utterance_ID}`: MELD's dialogue ids restart in
    each file, so the id names the file."""
    where = where or os.fspath(path)
    fname = Path(path).name
    prefix = MELD_PREFIX.get(fname.lower())
    if prefix is None:
        raise UserError(f"{where} is not one of MELD's files ({', '.join(MELD_PREFIX)}); keep MELD's file names.")
    header, rows = read_csv_rows(path, where, MELD_COLUMNS)
    iu, isent, idia, iutt = (header.index(c) for c in MELD_COLUMNS)
    ids, labels = [], []
    for i, r in enumerate(rows, start=2):
        sent = r[isent].strip().lower()
        if sent not in SENTIMENTS:
            raise UserError(f"{where} line {i}: Sentiment {_cell(r[isent])} is not negative, neutral or positive; fix "
                            "the Sentiment column.")
        labels.append(SENTIMENTS[sent])
        ids.append(f"{prefix}_dia{r[idia].strip()}_utt{r[iutt].strip()}")
    split = SplitData(
        ids=np.array(ids, dtype=str),
        classification=np.array(labels, dtype=np.int64),
        raw_text=[r[iu] for r in rows],
    )
    return MELD_SPLIT[prefix], split


def read_meld(
    folder: PathLike | None = None,
    *,
    files: dict[str, PathLike] | None = None,
    name: str = "meld",
    features: PathLike | None | str = "auto",
    root: PathLike | None = None,
    require_all: bool = True,
) -> DatasetData:
    """MELD's three sentiment CSVs (in `folder`, or the given split -> path `files`), with an
    optional `features.npz` beside them; sentiment negative/neutral/positive -> 0/1/2."""
    from msabench.data.readers_common import shown

    if files is None:
        if folder is None:
            raise ValueError("read_meld needs a folder or files")
        files = {s: Path(folder) / f for s, f in MELD_FILES.items()}
    splits: dict[str, SplitData] = {}
    read: list[Path] = []
    for p in files.values():
        split_name, split = read_meld_csv(p, where=shown(p, root))
        splits[split_name] = split
        read.append(Path(p))
    folder = Path(folder) if folder is not None else read[0].parent
    if features == "auto":
        beside = folder / "features.npz"
        features = beside if beside.is_file() else None
    if features is not None:
        attach_features(splits, features, where=shown(features, root))
        read.append(Path(features))
    where = shown(folder, root) if root is not None else os.fspath(folder)
    data = DatasetData(
        name=name, family="meld", splits=splits, label_kind="classification", synthetic=False,
        data_hash=files_hash(read), source=", ".join(shown(p, root) for p in read),
    )
    return validate_dataset(data, where=where, splits=SPLITS if require_all else list(splits))
