"""`mad`: Modality-Agnostic Debiasing (a re-implementation) on S2LIF's multimodal DG backbone.

Paper: S. Qu, Y. Pan, G. Chen, T. Yao, C. Jiang, T. Mei, "Modality-Agnostic Debiasing for Single
Domain Generalization", CVPR 2023 (arXiv 2303.07123). No public code exists (the CVPR 2023 code lists
say "Code: None"). Used as a baseline by S2LIF (../shared/papers/s2lif.txt, Tables 1-2, rows
"MAD (V | T-Frozen | T-Fine tuning | M-Frozen | M-finetune)"), which summarises it as "a two-stage
learning strategy, learning domain-specific and domain-invariant features respectively to constrain
the two features by regular terms".

What the method is, as far as it could be read here (the abstract, the caption of the paper's
Fig. 2, S2LIF's sentence above; the method section's equations were not reachable):
1. a backbone and a two-branch classifier: a *biased branch* that identifies the domain-specific
   (superficial) features, and a *general branch* that captures the domain-generalised features on
   the basis of the biased branch's knowledge; the general branch makes the predictions;
2. two stages: first the biased branch, "a multi-head cooperated classifier", learns the
   domain-specific features; then the general branch learns under the guidance of a regulariser
   L_reg built from the biased branch;
3. pluggable into any backbone and modality.

The form used here (points 1-3 kept; every detail below is this re-implementation's choice):
- backbone: the shared DG backbone (`msabench.models.layers.dg_backbone`) gives h (B, D);
- biased branch: f_b = ReLU(Linear(h)) (B, D), `biased_heads` linear heads on f_b; the heads
  cooperate by averaging their class probabilities, p_b = mean_m softmax(head_m(f_b));
- general branch: f_g = ReLU(Linear(h)) (B, D) and one linear head: the model's logits;
- stage 1, the first max(1, round(`stage1_share` x train.epochs)) epochs (at least one epoch is
  left for stage 2): backbone and biased branch trained with the generalised cross-entropy
  (1 - p_b[y]^q) / q, q = `gce_q`. GCE (Zhang & Sabuncu, NeurIPS 2018) weights each sample's gradient
  by p^q, so the branch keeps fitting what it already fits: the easiest cues. It is the loss the
  debiasing literature (e.g. LfF, Nam et al., NeurIPS 2020) uses to *make* a classifier biased,
  chosen here for "identify the domain-specific features"; the general branch is not trained;
- stage 2, the remaining epochs: the biased branch is fixed (f_b computed without gradient, its
  heads untouched); backbone and general branch trained with cross-entropy on the general logits
  plus `reg_weight` * L_reg, where L_reg is the mean squared Pearson correlation, over the batch,
  between every general feature and every biased feature:
      L_reg = 1 / (D_g D_b) * sum_{i,j} corr(f_g[:, i], f_b[:, j])^2,
  0 when no general feature is linearly related to any biased one, 1 when each is an affine copy
  (constant features count as uncorrelated). It is this re-implementation's reading of "constrain
  the two features by regular terms": the general features must carry what the biased
  (domain-specific) features do not.
- inference: the general branch only; the epochs of stage 1 are evaluated with the general branch
  as it stands (untrained), so the post-hoc selection rules pass over them.

Defaults: `biased_heads` 3, `gce_q` 0.7 (GCE's and LfF's value), `stage1_share` 0.1, `reg_weight` 1.0:
none comes from the MAD paper (not reachable), none is tuned. Training as S2LIF section 4.2 (Adam,
lr 7e-5, batch 16, 200 epochs: stage 1 = 20 of them); ELECTRA text encoder. Variants: the five rows
of S2LIF's tables, `mad@v`, `mad@t-frozen`, `mad@t-finetune`, `mad@m-frozen`, `mad@m-finetune`;
plain `mad` is the multimodal model with the frozen encoder (M-Frozen).

Deviations:
- Everything listed above as this re-implementation's choice may differ from the paper: the loss
  of stage 1, how the heads cooperate, the form and weight of L_reg, whether the backbone trains
  in stage 2, the stage lengths. S2LIF's MAD rows cannot be expected to be reproduced exactly.
- The backbone is S2LIF's description of its own encoders (see dg_backbone.py); MAD was
  evaluated on text, image and point-cloud backbones of its own.
- L_reg needs room: with a width of 8 (H = 8, one branch) the general branch of `mad@v` stayed at
  one predicted class for 8 epochs on synth-dg (lr 1e-3), since every general feature had to be
  decorrelated from 8 biased features computed from the same 8 numbers; at H = 16 and more it
  trained (synth-dg/mosei valid accuracy 0.92 after 8 epochs). `tiny()` uses H = 16 for that reason.
- Stage 1's epochs are not complete (`epoch_is_complete`): its general head, which predicts, is
  untrained there, so no selection rule picks a stage-1 epoch and early stopping cannot end stage 1.
- Classification only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.dg_backbone import (
    DG_VARIANTS,
    ELECTRA_PRESETS,
    S2LIF_TRAIN_DEFAULTS,
    DGBackbone,
    DGBackboneConfig,
)

EPS = 1e-8


@dataclass(frozen=True)
class MADConfig(DGBackboneConfig):
    biased_heads: int = 3  # heads of the cooperated biased classifier
    gce_q: float = 0.7  # q of the generalised cross-entropy that trains the biased branch
    stage1_share: float = 0.1  # share of train.epochs spent on stage 1 (the biased branch)
    reg_weight: float = 1.0  # weight of L_reg in stage 2


def generalized_cross_entropy(probs: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """(B, K) class probabilities, (B,) labels -> mean of (1 - p_y^q) / q."""
    p_true = probs.gather(1, y.long()[:, None]).squeeze(1).clamp_min(EPS)  # (B,)
    return ((1.0 - p_true ** q) / q).mean()


def cross_correlation_penalty(general: torch.Tensor, biased: torch.Tensor) -> torch.Tensor:
    """(B, D_g), (B, D_b) -> mean over the D_g x D_b pairs of the squared Pearson correlation over
    the batch (a feature constant over the batch correlates with nothing)."""
    g = general.float() - general.float().mean(dim=0, keepdim=True)
    b = biased.float() - biased.float().mean(dim=0, keepdim=True)
    g = g / g.pow(2).sum(dim=0, keepdim=True).sqrt().clamp_min(EPS)
    b = b / b.pow(2).sum(dim=0, keepdim=True).sqrt().clamp_min(EPS)
    corr = g.transpose(0, 1) @ b  # (D_g, D_b)
    return corr.pow(2).mean()


def stage1_epochs(share: float, epochs: int) -> int:
    """Epochs of stage 1: max(1, round(share * epochs)), leaving at least one epoch for stage 2."""
    if epochs <= 1:
        return 0
    return min(max(1, round(share * epochs)), epochs - 1)


@MODELS.register()
class MAD(MSAModel):
    name: ClassVar[str] = "mad"
    config_cls: ClassVar[type] = MADConfig
    impl_version: ClassVar[int] = 2  # 2: epochs before the last stage are provisional (never selected)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = dict(S2LIF_TRAIN_DEFAULTS)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = ELECTRA_PRESETS
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = DG_VARIANTS
    SUPPORTED_MODALITIES: ClassVar[tuple[str, ...]] = ("t", "v")
    TASKS: ClassVar[tuple[str, ...]] = ("classification",)
    USES_TEXT_ENCODER: ClassVar[bool] = True
    CONFORMANCE_EPOCHS: ClassVar[int] = 2  # stage 1 (biased branch), then stage 2 (general branch)

    def __init__(self, cfg: MADConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if cfg.biased_heads < 1:
            raise ValueError("model.biased_heads must be at least 1")
        self.backbone = DGBackbone(cfg, spec)
        dim, n_classes = self.backbone.out_dim, int(spec.n_outputs)
        self.biased_proj = nn.Linear(dim, dim)
        self.biased_heads = nn.ModuleList(nn.Linear(dim, n_classes) for _ in range(cfg.biased_heads))
        self.general_proj = nn.Linear(dim, dim)
        self.general_head = nn.Linear(dim, n_classes)

    @classmethod
    def tiny(cls) -> MADConfig:
        return MADConfig(hidden=16, num_heads=2, token_embed_dim=8, biased_heads=2)

    def branches(self, batch: Batch, biased_grad: bool = True) -> dict[str, torch.Tensor]:
        """Backbone features and both branches' features and outputs for one batch."""
        feats = self.backbone(batch)
        h = feats.fused  # (B, D)
        with torch.set_grad_enabled(biased_grad and torch.is_grad_enabled()):
            biased = F.relu(self.biased_proj(h))  # (B, D)
            head_probs = torch.stack([head(biased).float().softmax(dim=-1) for head in self.biased_heads])
            biased_probs = head_probs.mean(dim=0)  # (B, K): the heads' cooperated prediction
        general = F.relu(self.general_proj(h))  # (B, D)
        return {**feats.per_branch, "fusion": h, "biased": biased, "biased_probs": biased_probs,
                "general": general, "logits": self.general_head(general)}

    def forward(self, batch: Batch) -> ModelOutput:
        out = self.branches(batch)
        features = {k: v for k, v in out.items() if k not in ("logits", "biased_probs")}
        return ModelOutput(pred=out["logits"], features=features)  # pred: (B, K) from the general branch

    def in_stage1(self, ctx: Any) -> bool:
        return ctx.epoch < stage1_epochs(self.cfg.stage1_share, int(ctx.epochs))

    def on_epoch_start(self, ctx: Any) -> None:
        ctx.stage = "biased" if self.in_stage1(ctx) else "general"

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        stage1 = self.in_stage1(ctx)
        with ctx.autocast():
            out = self.branches(batch, biased_grad=stage1)
            task = ctx.loss_fn(out["logits"], batch.y)
        if stage1:
            biased = generalized_cross_entropy(out["biased_probs"], batch.y, self.cfg.gce_q)
            ctx.backward(biased)  # the general branch gets no gradient: only the heads' outputs are in it
            ctx.step()
            return {"task": float(task.detach()), "biased_gce": float(biased.detach()),
                    "total": float(biased.detach())}
        reg = cross_correlation_penalty(out["general"], out["biased"].detach())
        loss = task + self.cfg.reg_weight * reg
        ctx.backward(loss)
        ctx.step()
        return {"task": float(task.detach()), "reg": float(reg.detach()), "total": float(loss.detach())}

    def epoch_is_complete(self, ctx: Any) -> bool:
        """Stage 1 trains the biased heads alone: the general head that predicts is untrained, so no
        selection rule picks a stage-1 epoch (and early stopping cannot end stage 1)."""
        return not self.in_stage1(ctx)
