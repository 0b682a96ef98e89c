"""`ridg`: Rationale Invariance for Domain Generalisation on S2LIF's multimodal DG backbone.

Paper: L. Chen, Y. Zhang, Y. Song, A. van den Hengel, L. Liu, "Domain Generalization via Rationale
Invariance", ICCV 2023. Reference code read for facts: public RIDG trainers in DomainBed and Dassl
style (a class `RIDG` with `rational_bank`, `init` and the hyper-parameters `momentum` and
`ridg_reg`; the authors' repository liangchen527/RIDG announces its code). Used as a baseline by
S2LIF (../shared/papers/s2lif.txt, Tables 1-2, rows "RIDG (V | T-Frozen | T-Fine tuning | M-Frozen | M-Fine tuning)").

Architecture: the shared DG backbone (`msabench.models.layers.dg_backbone`: text encoder + MLP, frame
MLP + one-layer Transformer, concatenation) gives the feature vector z (B, D); one linear classifier
W (K, D), b (K) gives the logits.

Loss (the paper's rationale invariance, as the reference code computes it):
- the rationale of a sample is the (K, D) matrix R[k] = W[k] * z, element-wise: each feature's
  contribution to each class logit (bias left out);
- per class c a running mean R_bar[c] (K, D) of the rationales of the class's samples, kept as a
  buffer (`rationale_bank`, with `bank_initialised`): the first batch that holds class c sets it to
  the batch's class mean, every later batch moves it by R_bar[c] <- (1 - mu) R_bar[c] + mu mean_c(R),
  mu = `momentum`; the update comes before the loss, and the means never carry gradient;
- L_rat = sum over the classes present in the batch of mean over their samples and over the K rows of
  ||R - R_bar[c]||^2 (sum over D);
- L = cross-entropy + `reg_weight` * L_rat.

Defaults: mu = 0.001 and weight 0.01 (issue 16, S2LIF's RIDG baseline); training as S2LIF
section 4.2 (Adam, lr 7e-5, batch 16, 200 epochs, best validation epoch); ELECTRA text encoder.
Variants: the five rows of S2LIF's tables, `ridg@v`, `ridg@t-frozen`, `ridg@t-finetune`,
`ridg@m-frozen`, `ridg@m-finetune` (`model.branches` and `text.frozen`); plain `ridg` is the
multimodal model with the frozen encoder (M-Frozen).

Deviations:
- The backbone is S2LIF's description of its own encoders, filled in where it is silent (widths,
  text pooling, fusion by concatenation: see dg_backbone.py); the RIDG paper used image CNNs.
- S2LIF gives no RIDG hyper-parameters; mu and the weight are issue 16's, not a tuning.
- The bank is updated once per micro-batch (with gradient accumulation, several times per
  optimisation step), as the reference updates it once per forward pass.
- Classification only (RIDG's rationale is per class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.dg_backbone import (
    DG_VARIANTS,
    ELECTRA_PRESETS,
    S2LIF_TRAIN_DEFAULTS,
    DGBackbone,
    DGBackboneConfig,
)


@dataclass(frozen=True)
class RIDGConfig(DGBackboneConfig):
    momentum: float = 0.001  # mu of the per-class running means of the rationale
    reg_weight: float = 0.01  # weight of the rationale-invariance term


@MODELS.register()
class RIDG(MSAModel):
    name: ClassVar[str] = "ridg"
    config_cls: ClassVar[type] = RIDGConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = dict(S2LIF_TRAIN_DEFAULTS)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = ELECTRA_PRESETS
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = DG_VARIANTS
    SUPPORTED_MODALITIES: ClassVar[tuple[str, ...]] = ("t", "v")
    TASKS: ClassVar[tuple[str, ...]] = ("classification",)
    USES_TEXT_ENCODER: ClassVar[bool] = True

    def __init__(self, cfg: RIDGConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.backbone = DGBackbone(cfg, spec)
        n_classes, dim = int(spec.n_outputs), self.backbone.out_dim
        self.classifier = nn.Linear(dim, n_classes)
        self.register_buffer("rationale_bank", torch.zeros(n_classes, n_classes, dim))  # (class, K, D)
        self.register_buffer("bank_initialised", torch.zeros(n_classes, dtype=torch.bool))

    @classmethod
    def tiny(cls) -> RIDGConfig:
        return RIDGConfig(hidden=16, num_heads=2, token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        feats = self.backbone(batch)
        logits = self.classifier(feats.fused)  # (B, K)
        return ModelOutput(pred=logits, features={**feats.per_branch, "fusion": feats.fused})

    def rationale(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) features -> (B, K, D): each feature's contribution to each class's logit."""
        return self.classifier.weight.float()[None, :, :] * z.float()[:, None, :]

    def rationale_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Update the per-class running means with this batch, then the distance of each sample's
        rationale to its class's mean (the reference code's order)."""
        r = self.rationale(z)  # (B, K, D)
        loss = r.new_zeros(())
        for c in torch.unique(y).tolist():
            members = r[y == c]  # (n_c, K, D)
            with torch.no_grad():
                batch_mean = members.mean(dim=0)  # (K, D)
                if bool(self.bank_initialised[c]):
                    mu = float(self.cfg.momentum)
                    self.rationale_bank[c] = (1.0 - mu) * self.rationale_bank[c] + mu * batch_mean
                else:
                    self.rationale_bank[c] = batch_mean
                    self.bank_initialised[c] = True
            loss = loss + ((members - self.rationale_bank[c]) ** 2).sum(dim=-1).mean()
        return loss

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            out = self(batch)
            task = ctx.loss_fn(out.pred, batch.y)
        rationale = self.rationale_loss(out.features["fusion"], batch.y)
        loss = task + self.cfg.reg_weight * rationale
        ctx.backward(loss)
        ctx.step()
        return {"task": float(task.detach()), "rationale": float(rationale.detach()), "total": float(loss.detach())}
