"""`constant`: the floor every table is read against.

Predicts the training-set mean score (regression), the majority class (classification) or each
label's prevalence (multilabel), whatever the input. No paper: this is the usual trivial baseline
("closing the gap" is measured between it and `linear_probe:model.features=invariant`).

How it learns without opening data: during the first training epoch its `training_step`
accumulates label statistics from the batches it is given into buffers (no optimiser, no
backward); at the end of that epoch (or as soon as it sees a later epoch) the statistics freeze.
`forward` returns them, so they are saved with the checkpoint like any weight.

Outputs: regression -> the mean, (B,); classification -> logits log(class share) (floored at
1e-6), (B, C), whose argmax is the majority class (ties: the lowest class index) and whose
cross-entropy is the training label entropy; multilabel -> logit(prevalence) per label (clamped
to [1e-6, 1 - 1e-6]), (B, 4). Before any training batch: 0, uniform logits, logit 0.

Deviations:
- No paper to deviate from. Note that the training *mean* is not the L1-optimal constant (the
  median is); the mean is what the MSA literature reports as the trivial baseline.
- Statistics are accumulated in float32 (docs/architecture.md §1: float32 throughout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel


@dataclass(frozen=True)
class ConstantConfig:
    """`constant` has no architecture; the config exists for the plugin contract."""


@MODELS.register()
class Constant(MSAModel):
    name: ClassVar[str] = "constant"
    config_cls: ClassVar[type] = ConstantConfig
    CONSTANT_BY_DESIGN: ClassVar[bool] = True
    impl_version: ClassVar[int] = 1
    HAS_TRAINABLE_PARAMS: ClassVar[bool] = False
    # One pass over the training set is all it needs. There is no optimiser, so train.lr is never
    # used; it stays positive because the config layer requires a positive lr.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.lr": 1e-3,
        "train.batch_size": 256,
        "train.epochs": 1,
        "train.patience": 1,
        "train.weight_decay": 0.0,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg: ConstantConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        width = 1 if spec.task == "regression" else int(spec.n_outputs)
        # regression: sum of y; classification: count per class; multilabel: sum per label
        self.register_buffer("label_sum", torch.zeros(width))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self._epoch: int | None = None  # the epoch the statistics come from

    @classmethod
    def tiny(cls) -> ConstantConfig:
        return ConstantConfig()

    # -- statistics ---------------------------------------------------------------------------
    @torch.no_grad()
    def _accumulate(self, y: torch.Tensor) -> None:
        y = y.to(self.label_sum.device)
        task = self.spec.task
        if task == "regression":
            self.label_sum += y.float().reshape(-1).sum()
        elif task == "classification":
            self.label_sum += torch.bincount(y.long().reshape(-1), minlength=self.label_sum.numel())[
                : self.label_sum.numel()
            ].float()
        else:
            self.label_sum += y.float().reshape(-1, self.label_sum.numel()).sum(dim=0)
        self.count += y.shape[0]

    def _prediction(self) -> torch.Tensor:
        """The constant output for one sample: (1,) regression, (C,) logits otherwise."""
        task = self.spec.task
        n = self.count.clamp_min(1.0)
        if task == "regression":
            return self.label_sum / n
        if task == "classification":
            if float(self.count) == 0:
                return torch.zeros_like(self.label_sum)
            return torch.log((self.label_sum / n).clamp_min(1e-6))
        share = (self.label_sum / n).clamp(1e-6, 1 - 1e-6)
        if float(self.count) == 0:
            share = torch.full_like(share, 0.5)
        return torch.log(share) - torch.log1p(-share)

    # -- contract -----------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        b = len(batch)
        value = self._prediction()
        if self.spec.task == "regression":
            pred = value.expand(b).clone()
        else:
            pred = value.unsqueeze(0).expand(b, -1).clone()
        return ModelOutput(pred=pred)

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        epoch = int(getattr(ctx, "epoch", 0))
        if self._epoch is None and not bool(self.frozen):
            self._epoch = epoch
        if not bool(self.frozen) and epoch != self._epoch:
            self.frozen.fill_(True)  # a later epoch: the first one's statistics stand
        if not bool(self.frozen):
            self._accumulate(batch.y)
        with torch.no_grad():
            loss = ctx.loss_fn(self(batch).pred, batch.y)
        return {"task": float(loss), "total": float(loss)}

    def on_epoch_end(self, ctx: Any) -> None:
        if float(self.count) > 0:
            self.frozen.fill_(True)
