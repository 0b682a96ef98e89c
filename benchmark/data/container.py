"""In-memory form of a loaded dataset, shared by every reader and the synthetic suite.

Arrays are numpy (possibly memory-mapped); no torch here. Sequences are padded to a fixed
length with real positions first; `*_lengths` give the number of real positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclass
class SplitData:
    ids: np.ndarray  # (N,) str, unique within the dataset
    regression: np.ndarray | None = None  # (N,) float32 sentiment score
    classification: np.ndarray | None = None  # (N,) int64, neg=0 neu=1 pos=2
    multilabel: np.ndarray | None = None  # (N, 4) float32 (IEMOCAP: columns in IEMOCAP_EMOTIONS order)
    text_ids: np.ndarray | None = None  # (N, T) int64 WordPiece ids with [CLS] ... [SEP]
    text_feats: np.ndarray | None = None  # (N, T, D) float32 token features
    text_lengths: np.ndarray | None = None  # (N,) int64
    audio: np.ndarray | None = None  # (N, T, D) float32
    audio_lengths: np.ndarray | None = None
    vision: np.ndarray | None = None
    vision_lengths: np.ndarray | None = None
    raw_text: list[str] | None = None
    unimodal: dict[str, np.ndarray] = field(default_factory=dict)  # SIMS: {"t","a","v"} scores

    def __len__(self) -> int:
        return int(len(self.ids))

    def modality(self, m: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if m == "t":
            return (self.text_feats if self.text_feats is not None else self.text_ids), self.text_lengths
        if m == "a":
            return self.audio, self.audio_lengths
        if m == "v":
            return self.vision, self.vision_lengths
        raise KeyError(m)


@dataclass
class DatasetData:
    name: str  # "mosi", "synth-mosi", "synth-dg/meld", ...
    family: str  # preset key: mosi | mosei | sims | meld | iemocap
    splits: dict[str, SplitData]
    label_kind: str  # "regression" | "classification" | "multilabel": what the files hold
    synthetic: bool
    data_hash: str
    vocab: list[str] | None = None
    special_ids: dict[str, int] = field(default_factory=dict)
    neg_inf_count: int = 0  # audio -inf values set to 0 (COVAREP)
    source: str = ""  # the file(s) read, or the synthetic cache folder
    ground_truth: dict[str, Any] | None = None

    def dims(self) -> dict[str, int]:
        out: dict[str, int] = {}
        split = self.splits["train"]
        if split.text_feats is not None:
            out["t"] = int(split.text_feats.shape[-1])
        if split.audio is not None:
            out["a"] = int(split.audio.shape[-1])
        if split.vision is not None:
            out["v"] = int(split.vision.shape[-1])
        return out

    def max_lens(self) -> dict[str, int]:
        split = self.splits["train"]
        out: dict[str, int] = {}
        for m in ("t", "a", "v"):
            values, _ = split.modality(m)
            if values is not None:
                out[m] = int(values.shape[1])
        return out
