"""The contract types of design section 6: RunSpec, InputSpec, Batch, ModelOutput.

`RunSpec` and `InputSpec` are plain data (no torch); `Batch` and `ModelOutput` carry tensors but
are defined without importing torch at module import time so the report layer stays torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

MODALITIES = ("t", "a", "v")
MODALITY_NAMES = {"t": "text", "a": "audio", "v": "vision"}
TASKS = ("regression", "classification", "multilabel")
CLASS_NAMES = ("negative", "neutral", "positive")  # neg=0 neu=1 pos=2 everywhere
IEMOCAP_EMOTIONS = ("happy", "sad", "angry", "neutral")

RUNSPEC_SCHEMA = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def short_hash(obj: Any, n: int = 16) -> str:
    text = obj if isinstance(obj, str) else canonical_json(obj)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run; its canonical form is hashed into the run id."""

    protocol: str
    protocol_version: str
    setting: str  # "" for protocols without settings
    datasets: tuple[str, ...]  # source datasets first, then targets (DG)
    data_hashes: tuple[str, ...]
    model: str  # NAME[@VARIANT] as given, without inline keys
    config: dict[str, Any]  # fully resolved, namespaced: model.*, train.*, data.*, text.*
    impl_version: int
    seed: int
    rate: float = 0.0
    modalities: tuple[str, ...] = ("t", "a", "v")
    label_rule: str = "sign"
    task: str = "regression"
    source_domains: tuple[str, ...] = ()
    target_domains: tuple[str, ...] = ()
    selection_rules: tuple[str, ...] = ("val",)
    eval_rates: tuple[float, ...] = ()  # missing-rate-eval: extra test rates
    train_domains: tuple[str, ...] = ()  # lodo helper runs train on a subset of the sources
    valid_domains: tuple[str, ...] = ()
    msabench_version: str = ""
    schema: int = RUNSPEC_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return json.loads(canonical_json(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("datasets", "data_hashes", "modalities", "source_domains", "target_domains",
                    "selection_rules", "eval_rates", "train_domains", "valid_domains"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @property
    def run_id(self) -> str:
        from msabench import major_minor

        data = self.to_dict()
        data["msabench_version"] = self.msabench_version or major_minor()
        return short_hash(data, 20)

    @property
    def model_name(self) -> str:
        return self.model.split("@", 1)[0]


@dataclass(frozen=True)
class InputSpec:
    """What a model may know about its inputs: never a file, a split or a path."""

    modalities: tuple[str, ...]
    dims: dict[str, int]  # per modality feature dim (text: embedding dim when kind=features)
    max_lens: dict[str, int]
    text_kind: str = "features"  # "tokens" | "features"
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


@dataclass
class ModelOutput:
    pred: Any  # (B,) regression | (B, C) logits | (B, 4) multilabel logits
    aux_losses: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
