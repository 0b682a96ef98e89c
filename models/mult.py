"""`mult`: Multimodal Transformer (MulT).

Paper: Y.-H. H. Tsai, S. Bai, P. P. Liang, J. Z. Kolter, L.-P. Morency, R. Salakhutdinov,
"Multimodal Transformer for Unaligned Multimodal Language Sequences", ACL 2019.
Reference code: the authors' yaohungt/Multimodal-Transformer (src/models.py, modules/) for the
architecture, MMSA 2.2.1 (thuiar/MMSA, src/MMSA/models/singleTask/MULT.py, trainer
trains/singleTask/MULT.py) for the configuration the MSA literature's MulT rows are run with.
The transformer blocks live in `msabench.models.layers.transformer` (shared with MulT-based models).

Architecture (unaligned input: each modality keeps its own length):
- temporal convolution: per modality a Conv1d (no bias, no padding, kernel `conv_kernel_t/a/v`)
  from the input width to `embed_dim` (skipped when the widths are equal, as in the reference);
  text vectors first go through dropout `text_dropout` (MMSA);
- six cross-modal transformers, one per direction source -> target (`cross_layers` layers of
  width `embed_dim` each): the target's sequence gives the queries, the source's the keys and
  values; attention dropout follows the *source* modality (`attn_dropout` for text,
  `attn_dropout_a`, `attn_dropout_v`), as in the reference's get_network;
- per target modality, the outputs of its two cross-modal transformers are concatenated (sources in
  t, a, v order) and passed through a self-attention transformer ("memory", width 2 x `embed_dim`,
  max(`cross_layers`, `memory_min_layers`) layers, attention dropout `attn_dropout`);
- each memory's last step, concatenated (t, a, v): 6 x `embed_dim`; a residual block
  x + Linear(dropout(ReLU(Linear(x)))) with dropout `output_dropout`, then Linear to the output
  (regression: no squashing);
- every transformer: sqrt(E) scaling, sinusoidal positions, embedding dropout `embed_dropout`,
  pre-LN layers with attention/ReLU/residual dropouts, final LayerNorm; MulT's future mask
  (`future_mask`, MMSA's `attn_mask`).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "mult": datasetParams
mosi (= the defaults), mosei, sims: dst_feature_dim_nheads -> `embed_dim`, `num_heads`; nlevels ->
`cross_layers`; conv1d_kernel_size_{l,a,v}; attn_dropout{,_a,_v}, relu_dropout, embed_dropout,
res_dropout, text_dropout, output_dropout; grad_clip -> `grad_clip_value`; batch_size,
learning_rate; patience -> train.scheduler_patience; commonParams attn_mask -> `future_mask`,
early_stop 8 -> train.patience, update_epochs 8 -> train.grad_accum. `memory_min_layers` 3: the
`layers=3` of MULT.py's memory networks. Trainer (MMSA trains/singleTask/MULT.py): Adam without
weight decay, L1 loss / cross-entropy, gradients clipped by value after each backward,
ReduceLROnPlateau (mode min, factor 0.1) on the valid loss: train.scheduler=plateau.

Text: `mult@frozen` and `mult@finetune` set text.frozen=true/false; they change nothing until a
Hugging Face text encoder is configured (text.encoder), which MMSA's use_bert / use_finetune mean.
`mult@mask-frozen` / `mult@mask-finetune` (S2LIF Tables 1-2 "MuLT + Mask", `model.feature_mask`): S2LIF's
learnable mask (eqs. 6-11) on each projected unimodal sequence (after the temporal convolution, before
the cross-modal transformers), the sparsity term (eq. 12) weighted by `mask_sparsity_weight` added to
the task loss. S2LIF does not say where it adds its masks to MulT nor with which weight: both are this
re-implementation's choice (layers/learnable_mask.ModalityMasks).

Deviations:
- Padding is masked (MulT's and MMSA's code mask nothing): padded keys get no attention weight in
  every transformer; padded inputs are zeroed before the convolution and a sequence of L real
  steps keeps L - k + 1 (at least 1) real steps after it, as an unpadded sequence would; the
  readout takes each memory at the sample's last real step, where the reference code takes the
  last padded step (index -1).
- The future mask lets query i see key j when j <= i + |L_k - L_q| with each sample's real lengths
  L (the reference code: the padded lengths, the same for all samples).
- Positions are numbered over the real steps (the reference code treats a step whose first
  feature is exactly 0 as padding, with a zero embedding).
- Positional embeddings are on (`positional_embedding`, the paper and its code); MMSA 2.2.1's copy
  of the encoder leaves them off (its TransformerEncoder's `position_embedding` defaults to False
  and MULT.py never sets it): `model.positional_embedding=false` reproduces MMSA.
- The source sequence of a cross-modal transformer gets one embedding-dropout mask shared by keys
  and values (the reference code draws two).
- Modality subsets: with two modalities each target has one source (memory width `embed_dim`);
  with one modality there is no cross-modal transformer and the memory runs over the projected
  sequence itself. The paper defines only the trimodal model (its code's `lonly`/`aonly`/`vonly`
  keep one target with both sources, a different thing).
- Text enters through `TextInput`: features pass through (MMSA: the 768-d BERT features of the
  pickle, use_bert false); token ids go through a trainable embedding of width `token_embed_dim`
  until the Hugging Face text encoder lands. `text_dropout` is MMSA's (the original code uses
  `embed_dropout` at that place).
- Training: update_epochs 8 is train.grad_accum 8; the loop averages the micro-batch losses
  where MMSA sums them, so the value clip is divided by train.grad_accum (identical clipping;
  Adam's update is unchanged up to its epsilon); under fp16 loss scaling the clip is scaled with
  the loss. The loop steps a partial accumulation at the end of an epoch; MMSA carries it into
  the next epoch. MMSA's config weight_decay is unused by its MULT trainer: train.weight_decay 0.
- Multilabel head (IEMOCAP): 4 logits; classification uses the regression presets (MMSA's one
  config file serves both).
- Epochs: MMSA trains until early stopping with no cap; train.epochs caps at 100.
- The paper's own hyper-parameters (its Table 5) are not the defaults; MMSA's tuned values are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.learnable_mask import ModalityMasks
from msabench.models.layers.transformer import CrossModalEncoder, EncoderOutput, TemporalConv, last_real_step

MODALITY_ORDER = ("t", "a", "v")  # MMSA's l, a, v


@dataclass(frozen=True)
class MulTConfig:
    # MMSA config_regression.json "mult" / "mosi"
    embed_dim: int = 50  # dst_feature_dim_nheads[0]
    num_heads: int = 10  # dst_feature_dim_nheads[1]
    cross_layers: int = 4  # nlevels
    conv_kernel_t: int = 5
    conv_kernel_a: int = 5
    conv_kernel_v: int = 5
    attn_dropout: float = 0.3  # text as source, and every memory transformer
    attn_dropout_a: float = 0.2
    attn_dropout_v: float = 0.0
    relu_dropout: float = 0.0
    res_dropout: float = 0.0
    embed_dropout: float = 0.2
    text_dropout: float = 0.5
    output_dropout: float = 0.5
    grad_clip_value: float = 0.6  # grad_clip; 0 = off
    # MMSA commonParams attn_mask
    future_mask: bool = True
    # MMSA MULT.py get_network(self_type='*_mem', layers=3): max(cross_layers, this)
    memory_min_layers: int = 3
    # the paper and yaohungt/Multimodal-Transformer (MMSA 2.2.1 leaves them off)
    positional_embedding: bool = True
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128
    # S2LIF Tables 1-2 "MuLT + Mask": learnable masks on the projected unimodal sequences
    # (layers/learnable_mask.ModalityMasks); the weight is S2LIF's alpha as `s2lif` sets it (not given by the paper)
    feature_mask: bool = False
    mask_sparsity_weight: float = 0.01


def mult_preset(dim_heads: tuple[int, int], nlevels: int, kernels: tuple[int, int, int],
                attn: tuple[float, float, float], relu: float, embed: float, res: float, text: float,
                output: float, grad_clip: float, batch_size: int, lr: float, plateau_patience: int
                ) -> dict[str, Any]:
    """A preset in the shape of MMSA's "mult" datasetParams (attn: attn_dropout, _a, _v)."""
    return {
        "model.embed_dim": dim_heads[0], "model.num_heads": dim_heads[1], "model.cross_layers": nlevels,
        "model.conv_kernel_t": kernels[0], "model.conv_kernel_a": kernels[1], "model.conv_kernel_v": kernels[2],
        "model.attn_dropout": attn[0], "model.attn_dropout_a": attn[1], "model.attn_dropout_v": attn[2],
        "model.relu_dropout": relu, "model.embed_dropout": embed, "model.res_dropout": res,
        "model.text_dropout": text, "model.output_dropout": output, "model.grad_clip_value": grad_clip,
        "train.batch_size": batch_size, "train.lr": lr, "train.scheduler_patience": plateau_patience,
    }


@dataclass
class MulTEncoding:
    """Every intermediate of one forward pass, for models built on MulT (MICA, S2LIF's MulT + Mask).

    projected/masks: the unimodal sequences after the temporal convolution, (B, T'_m, E), and their
    real steps; cross: "{target}_with_{source}" -> that cross-modal transformer's output (with
    per-layer `AttentionTrace`s when asked); memory: target -> its self-attention transformer's
    output; last: target -> (B, D_m) at the last real step; fused: their concatenation.
    """

    projected: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    cross: dict[str, EncoderOutput] = field(default_factory=dict)
    memory: dict[str, EncoderOutput] = field(default_factory=dict)
    last: dict[str, torch.Tensor] = field(default_factory=dict)
    fused: torch.Tensor | None = None


@MODELS.register()
class MulT(MSAModel):
    name: ClassVar[str] = "mult"
    config_cls: ClassVar[type] = MulTConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 2e-3,
        "train.batch_size": 16,
        "train.grad_accum": 8,
        "train.weight_decay": 0.0,
        "train.epochs": 100,
        "train.patience": 8,
        "train.scheduler": "plateau",  # MMSA: ReduceLROnPlateau(mode min, factor 0.1) on the valid loss
        "train.scheduler_factor": 0.1,
        "train.scheduler_patience": 5,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mult_preset((50, 10), 4, (5, 5, 5), (0.3, 0.2, 0.0), relu=0.0, embed=0.2, res=0.0, text=0.5,
                            output=0.5, grad_clip=0.6, batch_size=16, lr=2e-3, plateau_patience=5),
        "mosei": mult_preset((30, 6), 4, (5, 1, 3), (0.4, 0.0, 0.0), relu=0.0, embed=0.0, res=0.0, text=0.3,
                             output=0.5, grad_clip=0.6, batch_size=4, lr=5e-4, plateau_patience=20),
        "sims": mult_preset((50, 10), 2, (5, 1, 1), (0.2, 0.1, 0.0), relu=0.0, embed=0.1, res=0.2, text=0.3,
                            output=0.1, grad_clip=0.6, batch_size=16, lr=2e-3, plateau_patience=10),
    }
    # Take effect once a Hugging Face text encoder is configured (text.encoder); with precomputed
    # features or token ids there is nothing to freeze or fine-tune.
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "frozen": {"text.frozen": True},
        "finetune": {"text.frozen": False},
        "mask-frozen": {"text.frozen": True, "model.feature_mask": True},  # S2LIF "MuLT + Mask (M-Frozen)"
        "mask-finetune": {"text.frozen": False, "model.feature_mask": True},  # "MuLT + Mask (M-Fine tuning)"
    }

    def __init__(self, cfg: MulTConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("mult needs at least one modality")
        d = cfg.embed_dim
        kernels = {"t": cfg.conv_kernel_t, "a": cfg.conv_kernel_a, "v": cfg.conv_kernel_v}
        source_attn_dropout = {"t": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v}
        if "t" in self.modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        self.text_dropout = nn.Dropout(cfg.text_dropout)
        self.proj = nn.ModuleDict()
        for m in self.modalities:
            in_dim = self.text_input.out_dim if m == "t" else int(spec.dims[m])
            self.proj[m] = TemporalConv(in_dim, d, kernels[m]) if in_dim != d else nn.Identity()
        self.feature_masks = (ModalityMasks({m: d for m in self.modalities}, cfg.mask_sparsity_weight)
                              if cfg.feature_mask else None)

        common = {"relu_dropout": cfg.relu_dropout, "res_dropout": cfg.res_dropout,
                  "embed_dropout": cfg.embed_dropout, "future_mask": cfg.future_mask,
                  "positional": cfg.positional_embedding}
        self.sources = {t: tuple(s for s in self.modalities if s != t) for t in self.modalities}
        self.cross = nn.ModuleDict()
        for target, sources in self.sources.items():
            for source in sources:
                self.cross[f"{target}_with_{source}"] = CrossModalEncoder(
                    d, cfg.num_heads, cfg.cross_layers, attn_dropout=source_attn_dropout[source], **common)
        self.memory = nn.ModuleDict()
        memory_layers = max(cfg.cross_layers, cfg.memory_min_layers)
        for target, sources in self.sources.items():
            self.memory[target] = CrossModalEncoder(
                d * max(len(sources), 1), cfg.num_heads, memory_layers, attn_dropout=cfg.attn_dropout, **common)

        combined = sum(d * max(len(s), 1) for s in self.sources.values())
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.output_dropout = nn.Dropout(cfg.output_dropout)
        self.out_layer = nn.Linear(combined, 1 if spec.task == "regression" else int(spec.n_outputs))

    @classmethod
    def tiny(cls) -> MulTConfig:
        return MulTConfig(embed_dim=8, num_heads=2, cross_layers=1, memory_min_layers=1, conv_kernel_t=3,
                          conv_kernel_a=1, conv_kernel_v=3, attn_dropout=0.1, attn_dropout_a=0.1,
                          attn_dropout_v=0.1, relu_dropout=0.1, res_dropout=0.1, embed_dropout=0.1,
                          text_dropout=0.1, output_dropout=0.1, token_embed_dim=8)

    def project(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each present modality's sequence after the temporal convolution, and its real steps."""
        projected, masks = {}, {}
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)
                x = self.text_dropout(x)
            else:
                x, mask = batch.modality(m)
                x = x.float()
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            mask = mask.bool()
            proj = self.proj[m]
            if isinstance(proj, TemporalConv):
                projected[m], masks[m] = proj(x, mask)  # (B, T'_m, E)
            else:
                projected[m], masks[m] = x * mask.unsqueeze(-1).to(x.dtype), mask
            if self.feature_masks is not None:
                projected[m] = self.feature_masks(m, projected[m])  # (B, T'_m, E), eq. 10
        return projected, masks

    def encode(self, batch: Batch, return_traces: bool = False) -> MulTEncoding:
        projected, masks = self.project(batch)
        enc = MulTEncoding(projected=projected, masks=masks)
        for target, sources in self.sources.items():
            parts = []
            for source in sources:
                key = f"{target}_with_{source}"
                enc.cross[key] = self.cross[key](projected[target], masks[target], projected[source],
                                                 masks[source], return_traces=return_traces)
                parts.append(enc.cross[key].hidden)  # (B, T_target, E)
            joined = torch.cat(parts, dim=-1) if parts else projected[target]  # (B, T_target, E * n_sources)
            enc.memory[target] = self.memory[target](joined, masks[target], return_traces=return_traces)
            enc.last[target] = last_real_step(enc.memory[target].hidden, masks[target])  # (B, D_target)
        enc.fused = torch.cat([enc.last[m] for m in self.modalities], dim=-1)  # (B, combined)
        return enc

    def forward(self, batch: Batch) -> ModelOutput:
        enc = self.encode(batch)
        fused = enc.fused
        residual = self.proj2(self.output_dropout(F.relu(self.proj1(fused))))
        out = self.out_layer(fused + residual)  # (B, 1) | (B, C)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = dict(enc.last)
        features["fusion"] = fused
        return ModelOutput(pred=out, features=features)

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            out = self(batch)
            task = ctx.loss_fn(out.pred, batch.y)
            loss = task if self.feature_masks is None else task + self.feature_masks.penalty()
        ctx.backward(loss)
        if self.cfg.grad_clip_value > 0:
            ctx.clip_accumulated_values(self.parameters(), self.cfg.grad_clip_value)
        ctx.step()
        logged = {"task": float(task.detach()), "total": float(loss.detach())}
        if self.feature_masks is not None:
            logged.update({f"kept_{m}": share for m, share in self.feature_masks.kept_shares().items()})
        return logged
