"""The multimodal backbone of S2LIF's domain-generalisation baselines (RIDG, MAD): text and visual
encoders, a common width, late fusion by concatenation. The DG methods differ only in their heads
and losses, which live in their own plugins (models/ridg.py, models/mad.py).

Source: S2LIF (../shared/papers/s2lif.txt), section 3 "Model Overview" and section 4.2: a
pre-trained text encoder (ELECTRA) and visual frame features (VGGFace2) with a one-layer
Transformer encoder give the hidden representations x_t and x_v, and "a multilayer perceptron
unifies the multimodal feature dimensions". S2LIF does not describe how it fitted RIDG and MAD to
this setting beyond "V, T, M" (visual, textual, multimodal features) and "frozen / fine tuning"
(its Tables 1-2); what follows is the reading used here:

- text: `TextInput` (a Hugging Face encoder by `text.*`, frozen through the engine's cache or
  fine-tuned inside the model; or precomputed features; or token ids through an embedding),
  averaged over the real tokens (with `text.pooling=cls` the encoder hands over its first token
  alone), then the MLP Linear(D_t, H) -> ReLU -> dropout -> Linear(H, H): x_t (B, H);
- vision: per frame the MLP Linear(D_v, H) -> ReLU -> dropout -> Linear(H, H), a one-layer
  Transformer encoder over the frames (the repository's pre-LN encoder block,
  `msabench.models.layers.transformer.CrossModalEncoder`, self-attention only: sqrt(H) scale,
  sinusoidal positions of the real frames, padded frames never attended to, final LayerNorm),
  then the mean over the real frames: x_v (B, H);
- fusion: the concatenation [x_t; x_v] (B, 2H) for M; x_t or x_v alone for T or V (`branches`).

`branches` chooses the branches among the run's modalities: "all" (every one of t and v the run
has), or "t", "v", "tv". A branch the run lacks is an error naming `--modalities`; a modality the
run has but `branches` leaves out is read by no layer (the paper tables' T and V rows give the run
only that modality, so nothing is encoded for nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from msabench.api import Batch, InputSpec, TextInput, UserError, masked_mean
from msabench.models.layers.transformer import CrossModalEncoder

BRANCH_ORDER = ("t", "v")
BRANCH_CHOICES = ("all", "t", "v", "tv")


@dataclass(frozen=True)
class DGBackboneConfig:
    """The backbone's `model.*` keys; RIDG's and MAD's configs extend it."""

    branches: str = "all"  # all | t | v | tv: which of the run's modalities feed the fusion
    hidden: int = 128  # H, the common width (S2LIF gives none)
    num_heads: int = 4  # heads of the visual Transformer layer (S2LIF gives none)
    dropout: float = 0.1  # MLPs and the Transformer layer (attention, ReLU, residual, embedding)
    token_embed_dim: int = 64  # embedding width when text comes as plain token ids


def chosen_branches(spec: InputSpec, branches: str) -> tuple[str, ...]:
    """The modalities the backbone encodes, in t, v order; a clear error when the run lacks one."""
    if branches not in BRANCH_CHOICES:
        raise UserError(f"model.branches={branches!r}: use one of {', '.join(BRANCH_CHOICES)}")
    if branches == "all":
        chosen = tuple(m for m in BRANCH_ORDER if m in spec.modalities)
        if not chosen:
            raise UserError(f"the DG backbone reads text and/or vision; this run has modalities "
                            f"{','.join(spec.modalities)}: use --modalities t,v")
        return chosen
    chosen = tuple(m for m in BRANCH_ORDER if m in branches)
    missing = [m for m in chosen if m not in spec.modalities]
    if missing:
        raise UserError(f"model.branches={branches} reads {','.join(missing)}, which this run lacks (modalities "
                        f"{','.join(spec.modalities)}): run it with --modalities {','.join(chosen)}")
    return chosen


def _mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden))


@dataclass
class DGFeatures:
    per_branch: dict[str, torch.Tensor] = field(default_factory=dict)  # "t" / "v" -> (B, H)
    fused: torch.Tensor | None = None  # (B, H * n_branches)


class DGBackbone(nn.Module):
    """Batch -> `DGFeatures`: x_t, x_v (B, H) and their concatenation (B, out_dim)."""

    def __init__(self, cfg: DGBackboneConfig, spec: InputSpec):
        super().__init__()
        self.branches = chosen_branches(spec, cfg.branches)
        h = int(cfg.hidden)
        if "t" in self.branches:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            self.text_mlp = _mlp(self.text_input.out_dim, h, cfg.dropout)
        if "v" in self.branches:
            self.frame_mlp = _mlp(int(spec.dims["v"]), h, cfg.dropout)
            self.frame_encoder = CrossModalEncoder(h, cfg.num_heads, 1, attn_dropout=cfg.dropout,
                                                   relu_dropout=cfg.dropout, res_dropout=cfg.dropout,
                                                   embed_dropout=cfg.dropout, future_mask=False)
        self.out_dim = h * len(self.branches)

    def forward(self, batch: Batch) -> DGFeatures:
        out = DGFeatures()
        if "t" in self.branches:
            tokens, mask = self.text_input(batch)  # (B, T, D_t), (B, T)
            out.per_branch["t"] = self.text_mlp(masked_mean(tokens, mask))  # (B, H)
        if "v" in self.branches:
            frames, mask = batch.modality("v")  # (B, T_v, D_v), (B, T_v) or None
            frames = frames.float()
            if mask is None:
                mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
            mask = mask.bool()
            # zeroed before the MLP so that padded frames hold no values at all, whatever the input
            frames = frames * mask.unsqueeze(-1).to(frames.dtype)
            encoded = self.frame_encoder(self.frame_mlp(frames), mask).hidden  # (B, T_v, H)
            out.per_branch["v"] = masked_mean(encoded, mask)  # (B, H)
        out.fused = torch.cat([out.per_branch[m] for m in self.branches], dim=-1)  # (B, H * n)
        return out


# -- what the plugins on this backbone share -----------------------------------------------------------------

# S2LIF section 4.2: "text pre-trained language model Electra"; which size it does not say. `--tiny` on the
# synthetic suite puts tiny-bert in its place (msabench.plan.planner._tiny_text_encoder).
ELECTRA = "google/electra-base-discriminator"
FAMILIES = ("mosi", "mosei", "meld", "sims", "iemocap")
# The encoder is a `text.*` key, which TRAIN_DEFAULTS cannot hold: every family's preset names it.
ELECTRA_PRESETS = {family: {"text.encoder": ELECTRA} for family in FAMILIES}

# S2LIF section 4.2 and appendix B: Adam, batch size 16, learning rate 7e-5 (one rate: the fine-tuned text
# encoder trains at it too), 200 epochs with the test result at the best validation epoch (no early
# stopping: patience = the epoch count). No weight decay is mentioned.
S2LIF_TRAIN_DEFAULTS = {
    "train.optimizer": "adam",
    "train.lr": 7e-5,
    "train.text_lr": 7e-5,
    "train.batch_size": 16,
    "train.epochs": 200,
    "train.patience": 200,
    "train.weight_decay": 0.0,
}

# The rows of S2LIF Tables 1-2: V, T, M = visual, textual, multimodal features; frozen or fine-tuned text
# encoder. The templates give each row's run the matching --modalities.
DG_VARIANTS = {
    "v": {"model.branches": "v"},
    "t-frozen": {"model.branches": "t", "text.frozen": True},
    "t-finetune": {"model.branches": "t", "text.frozen": False},
    "m-frozen": {"model.branches": "tv", "text.frozen": True},
    "m-finetune": {"model.branches": "tv", "text.frozen": False},
}
