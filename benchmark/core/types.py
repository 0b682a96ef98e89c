"""The run identity and shared constants (docs/architecture.md §4): `RunSpec`, canonical JSON, hashes,
the modality, task, class and emotion orders (one definition each). Torch-free.

The model-facing contract types (InputSpec, Batch, ModelOutput) live in `msabench.api.types`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msabench.core.config import identity_config, model_label

if TYPE_CHECKING:
    from msabench.api.types import InputSpec

MODALITIES = ("t", "a", "v")
MODALITY_NAMES = {"t": "text", "a": "audio", "v": "vision"}
TASKS = ("regression", "classification", "multilabel")
CLASS_NAMES = ("negative", "neutral", "positive")  # neg=0 neu=1 pos=2 everywhere
# The column order of MulT's `iemocap_data_noalign.pkl` labels, as its `eval_iemocap` names them
# (yaohungt/Multimodal-Transformer, src/eval_metrics.py: emos = [Neutral, Happy, Sad, Angry]).
IEMOCAP_EMOTIONS = ("neutral", "happy", "sad", "angry")

RUNSPEC_SCHEMA = 1
# RunSpec fields that describe a run without defining it (derived from the rest): out of the run id,
# and out of spec.json at their defaults, so the ids and files of existing stores stay as they were.
NAMING_FIELDS = ("model_keys", "smoke")


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
    # The spec's inline keys (`linear_probe:model.features=invariant`), kept to name the run (their
    # values are in `config` already).
    model_keys: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False  # a `--tiny` smoke run (its config says so too): tables mark it, never compare it
    schema: int = RUNSPEC_SCHEMA
    # What planning measured of the data (dims, lengths, vocabulary, feature groups): carried to the
    # runner so it never re-derives it. Not part of the run's identity, not written to spec.json.
    input_spec: InputSpec | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, input_spec=None))
        del data["input_spec"]
        for name in NAMING_FIELDS:
            if not data[name]:
                del data[name]
        return json.loads(canonical_json(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)} - {"input_spec"}
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
        for name in NAMING_FIELDS:
            data.pop(name, None)
        data["config"] = identity_config(data["config"])
        data["msabench_version"] = self.msabench_version or major_minor()
        return short_hash(data, 20)

    @property
    def label(self) -> str:
        """NAME[@VARIANT][:key=value,...]: how the run's model is named wherever it is shown."""
        return model_label(self.model, self.model_keys)

    @property
    def model_name(self) -> str:
        return self.model.split("@", 1)[0]
