"""`linear_probe`: the yardstick of docs/architecture.md §5.

Each chosen modality's input features are averaged over the real time steps (padding masked),
the averages are concatenated and one ``nn.Linear`` maps them to the output (a score, class
logits or multilabel logits). No paper: it is the standard linear probe. "Closing the gap" is
measured between `constant` and `linear_probe:model.features=invariant`.

``model.features`` selects input features per modality from the synthetic ground truth
(``InputSpec.feature_groups[m]``): ``all`` (every feature; any dataset), ``invariant`` (the
invariant causes of the label only) or ``spurious`` (the domain-dependent ones only). The last two
need a synthetic dataset with ground truth. A modality the ground truth lists no features of in the
chosen group contributes nothing. Text as token ids enters as the mean of its `TextInput`
embeddings (trainable); with a Hugging Face encoder (``text.encoder``) as the mean of the encoder's
outputs (frozen: from the text cache; fine-tuned: at ``train.text_lr``). The ground truth names text
*feature* indices, so ``invariant`` / ``spurious`` with token or encoder text is an error.

The pooled, selected inputs are returned as ``features["input"]`` for analyses.

Deviations:
- No paper to deviate from. Inputs are not standardised (the probe sees the features as the
  dataset gives them); the optimiser defaults (Adam, lr 0.03, batch 64, up to 50 epochs,
  patience 8) are the harness's choice, not taken from a paper. The lr is high on purpose: a
  yardstick must converge within the synthetic suite's epoch caps (at 1e-3 the invariant probe
  reached 76% Acc-2 on synth-mosi in 10 epochs against 87.5% for a ridge fit on the same features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from msabench.api import (
    MODALITY_NAMES,
    MODELS,
    Batch,
    InputSpec,
    ModelOutput,
    MSAModel,
    TextInput,
    UserError,
    did_you_mean,
    masked_mean,
)

FEATURE_CHOICES = ("all", "invariant", "spurious")


@dataclass(frozen=True)
class LinearProbeConfig:
    features: str = "all"  # all | invariant | spurious (the synthetic ground truth)
    token_embed_dim: int = 64  # embedding width when text comes as token ids


def selected_indices(spec: InputSpec, features: str) -> dict[str, list[int]]:
    """Per modality, the input feature indices the probe reads (all of them for 'all')."""
    if features not in FEATURE_CHOICES:
        raise UserError(f"model.features={features!r} is not one of {', '.join(FEATURE_CHOICES)}."
                        f"{did_you_mean(features, FEATURE_CHOICES)}")
    if features == "all":
        return {m: list(range(int(spec.dims.get(m, 0)))) for m in spec.modalities}
    if "t" in spec.modalities and spec.text_kind != "features":
        raise UserError(f"linear_probe:model.features={features} selects input *features* from the ground "
                        f"truth, but text comes as token ids here (text.encoder={spec.text_kind}); use "
                        f"text.encoder=features, or leave text "
                        f"out (--modalities a,v)")
    if not spec.feature_groups:
        raise UserError(f"linear_probe:model.features={features} needs a synthetic dataset with ground "
                        f"truth (synth-*), which names the {features} input features; this dataset has "
                        f"none. Use model.features=all on real data.")
    out = {}
    for m in spec.modalities:
        groups = spec.feature_groups.get(m, {})
        idx = sorted(int(i) for i in groups.get(features, []))
        bad = [i for i in idx if not 0 <= i < int(spec.dims[m])]
        if bad:
            raise UserError(f"the ground truth names {MODALITY_NAMES[m]} features {bad} outside the "
                            f"input's {spec.dims[m]} features; the dataset is inconsistent, regenerate it")
        out[m] = idx
    if not any(out.values()):
        raise UserError(f"the ground truth lists no {features} features for modalities "
                        f"{','.join(spec.modalities)}; choose other modalities or model.features=all")
    return out


@MODELS.register()
class LinearProbe(MSAModel):
    name: ClassVar[str] = "linear_probe"
    config_cls: ClassVar[type] = LinearProbeConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 0.03,
        "train.batch_size": 64,
        "train.weight_decay": 0.0,
        "train.epochs": 50,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg: LinearProbeConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("linear_probe needs at least one modality")
        self.indices = selected_indices(spec, cfg.features)
        tokens = "t" in spec.modalities and spec.text_kind == "tokens"
        if tokens:  # features == "all" here: every dimension of the embedding
            self.indices["t"] = list(range(int(cfg.token_embed_dim)))
        self.order = tuple(m for m in ("t", "a", "v") if m in spec.modalities and self.indices[m])
        self.text_input = None
        if "t" in self.order:
            self.text_input = TextInput(spec, cfg.token_embed_dim if tokens else None)
        for m in self.order:
            self.register_buffer(f"idx_{m}", torch.tensor(self.indices[m], dtype=torch.long), persistent=False)
        in_dim = sum(len(self.indices[m]) for m in self.order)
        out_dim = 1 if spec.task == "regression" else int(spec.n_outputs)
        self.linear = nn.Linear(in_dim, out_dim)

    @classmethod
    def tiny(cls) -> LinearProbeConfig:
        return LinearProbeConfig(features="all", token_embed_dim=8)

    def pooled_inputs(self, batch: Batch) -> torch.Tensor:
        parts = []
        for m in self.order:
            if m == "t":
                x, mask = self.text_input(batch)
            else:
                x, mask = batch.modality(m)
            pooled = masked_mean(x.float(), mask)
            parts.append(pooled.index_select(1, getattr(self, f"idx_{m}")))
        return torch.cat(parts, dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.pooled_inputs(batch)
        out = self.linear(x)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        return ModelOutput(pred=out, features={"input": x})
