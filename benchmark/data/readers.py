"""Readers of the real data layouts (docs/architecture.md §5); each returns a validated `DatasetData`.

- `read_mmsa_pickle`: MMSA `unaligned_50.pkl` / `aligned_50.pkl` (MOSI, MOSEI), `unaligned_39.pkl`
  (SIMS), and the synthetic suite's `data.pkl` (same layout).
- `read_mult_pickle`: MulT's `iemocap_data_noalign.pkl`.
- `read_label_csv`: MMSA `label.csv` (+ optional `features.npz` beside it).
- `read_meld` / `read_meld_csv`: MELD's `{train,dev,test}_sent_emo.csv` (+ optional features.npz).
- `read_npz` / `attach_features`: features.npz (ids matched to the labels file's ids).

Pickles go through `msabench.data.safe_pickle` only. Every problem is a `UserError` naming the
file and what is wrong.
"""

from __future__ import annotations

from msabench.core.types import IEMOCAP_EMOTIONS
from msabench.data.readers_common import (
    DATA_ROOT_HINT,
    attach_features,
    files_hash,
    infer_name,
    read_npz,
    require_file,
    shown,
)
from msabench.data.readers_csv import (
    LABEL_CSV_COLUMNS,
    MELD_COLUMNS,
    MELD_FILES,
    SENTIMENTS,
    read_csv_rows,
    read_label_csv,
    read_meld,
    read_meld_csv,
)
from msabench.data.readers_pkl import is_aligned_name, looks_like_mult, read_mmsa_pickle, read_mult_pickle

__all__ = [
    "DATA_ROOT_HINT",
    "IEMOCAP_EMOTIONS",
    "LABEL_CSV_COLUMNS",
    "MELD_COLUMNS",
    "MELD_FILES",
    "SENTIMENTS",
    "attach_features",
    "files_hash",
    "infer_name",
    "is_aligned_name",
    "looks_like_mult",
    "read_csv_rows",
    "read_label_csv",
    "read_meld",
    "read_meld_csv",
    "read_mmsa_pickle",
    "read_mult_pickle",
    "read_npz",
    "require_file",
    "shown",
]
