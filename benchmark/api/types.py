"""The model-facing contract types (docs/architecture.md §6): InputSpec, Batch, MissingView, ModelOutput.

Plain dataclasses, torch-free at import (the planner builds an `InputSpec` without torch); the
tensor-side helpers import torch lazily when called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """What a model may know about its inputs: never a file, a split or a path."""

    modalities: tuple[str, ...]
    dims: dict[str, int]  # per modality feature dim (text: embedding dim when kind=features)
    max_lens: dict[str, int]
    text_kind: str = "features"  # "tokens" | "features" | "encoded" (a Hugging Face encoder's outputs)
    vocab_size: int = 0
    special_ids: dict[str, int] = field(default_factory=dict)  # pad, unk, cls, sep
    task: str = "regression"
    n_outputs: int = 1
    label_rule: str = "sign"
    family: str = "mosi"
    domains: tuple[str, ...] = ()
    # Synthetic data only: per modality, the input feature indices that the ground truth marks
    # {"invariant": [...], "spurious": [...], "style": [...]}; empty on real data.
    feature_groups: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    aligned: bool = False  # every modality at one sequence length, position t = word t
    # text_kind "encoded": the `msabench.api.text_encoder.EncoderSettings` as a dict, else empty.
    text_encoder: dict[str, Any] = field(default_factory=dict)


@dataclass
class MissingView:
    """Drop masks (True = dropped) and the complete inputs, when a missing rate is active."""

    drop: dict[str, Any]  # modality -> (B, T) bool tensor
    complete: dict[str, Any]  # modality -> the un-dropped tensor (text ids or feats, audio, vision)


@dataclass
class Batch:
    index: Any  # (B,) long: sample positions within the split
    domain: Any  # (B,) long
    y: Any  # (B,) float | (B,) long | (B, 4) float
    text_ids: Any = None  # (B, T) long, when text is tokens
    text_feats: Any = None  # (B, T, D) float, when text is features
    text_mask: Any = None  # (B, T) bool, True = a real position
    audio: Any = None
    audio_mask: Any = None
    vision: Any = None
    vision_mask: Any = None
    y_unimodal: dict[str, Any] | None = None
    missing: MissingView | None = None

    def modality(self, m: str) -> tuple[Any, Any]:
        """(values, mask) of modality 't', 'a' or 'v'."""
        if m == "t":
            return (self.text_ids if self.text_ids is not None else self.text_feats), self.text_mask
        if m == "a":
            return self.audio, self.audio_mask
        if m == "v":
            return self.vision, self.vision_mask
        raise KeyError(m)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def complete_view(self) -> Batch:
        """The same samples with the un-dropped inputs (when a missing rate is active), else `self`.

        The batch's own fields are the masked view; models that learn from both (DLFR, TFR-Net) read
        this one in training only (docs/adding-a-model.md, "two views of a batch").
        """
        if self.missing is None:
            return self
        values = {}
        for m, complete in self.missing.complete.items():
            if m == "t":
                values["text_ids" if self.text_ids is not None else "text_feats"] = complete
            else:
                values[_VALUE_FIELDS[m]] = complete
        return dataclasses.replace(self, missing=None, **values)

    def drop_mask(self, m: str) -> Any:
        """(B, T) bool, True where modality `m` was dropped; None without a missing rate."""
        return None if self.missing is None else self.missing.drop.get(m)


_VALUE_FIELDS = {"a": "audio", "v": "vision"}


@dataclass
class ModelOutput:
    pred: Any  # (B,) regression | (B, C) logits | (B, 4) multilabel logits
    aux_losses: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
