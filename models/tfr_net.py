"""`tfr_net`: Transformer-based Feature Reconstruction Network (TFR-Net), robust to random feature missing.

Paper: Z. Yuan, W. Li, H. Xu, W. Yu, "Transformer-based Feature Reconstruction Network for Robust
Multimodal Sentiment Analysis", ACM MM 2021. The paper is not among the project's papers; the facts
come from its code, thuiar/TFR-Net, and the copy in MMSA 2.2.1 (src/MMSA/models/missingTask/TFR_NET/
model.py, alignment.py, generator.py, fusion.py; trainer trains/missingTask/TFR_NET.py), which have
the same networks and losses (their configs differ: thuiar's MOSI learning_rate_bert is 1e-5 and its
weight_sim_loss is commented out; the defaults here are MMSA's). EMT-DLFR (shared/papers/emt-dlfr.txt)
describes it as intra- and inter-modal attention plus a feature reconstruction module (Sec. 4.5),
trained and tested at one missing rate (Sec. 5.1.2).

Architecture (unaligned input, `missing-rate` protocol: the batch's fields are the masked view):
- text through `TextInput` (a fine-tuned BERT by default), dropout `text_dropout`;
- per modality a bias-free Conv1d with "same" padding ((k - 1) // 2; kernels `conv_kernel_t/a/v`,
  odd) to `embed_dim`, skipped when the widths are equal;
- per target modality m: an intra-modal transformer (self-attention, max(`cross_layers`,
  `intra_min_layers`) layers, attention dropout `attn_dropout`) and one cross-modal transformer per
  other modality (`cross_layers` layers, the *source*'s attention dropout), the transformer blocks of
  `msabench.models.layers.transformer` (MulT's, with positions and MulT's future mask
  `future_mask`); the outputs concatenated [intra, with t/a/v]: (B, T_m, k * embed_dim);
- fusion (MMSA's "c_gate"): per modality a bidirectional GRU (`fusion_gru_layers`, hidden
  `fusion_hidden_t/a/v`) over the real steps, a sigmoid gate from Conv1d(2h -> 1, kernel 3),
  tanh(Linear([x; tanh(gru) * gate])), max over the real steps, dropout `fusion_dropout`; the three
  (t, a, v) concatenated -> BatchNorm1d -> Linear(`cls_hidden`) -> LeakyReLU -> dropout
  `cls_dropout` -> Linear to the output;
- reconstruction (training only, the part that needs the two views): per modality the concatenated
  sequence turned sideways (its k * embed_dim channels are the tokens, the padded length T_max =
  `InputSpec.max_lens[m]` the embedding), a transformer over the channels (max(`cross_layers`,
  `intra_min_layers`) layers, gcd(T_max, `temporal_heads`) heads, no positions), turned back, and
  Linear(k * embed_dim -> input width) per step: the reconstructed input. Its target is the complete
  view (`batch.complete_view()`): audio/vision features, and text as `TextInput` gives it for the
  complete ids (the fine-tuned encoder run a second time, gradient included, as the reference does).
  The loss is taken on the dropped positions only (`batch.drop_mask(m)`): SmoothL1 summed over
  them plus `cmd_weight` x CMD (`cmd_moments` central moments) between the masked tensors, both
  divided by (number of dropped elements + 1e-4); weighted per modality `rec_weight_t/a/v` and
  added to the L1 task loss from epoch `reconstruction_start_epoch` (MMSA: from the second epoch).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "tfr_net": datasetParams
mosi (= the defaults), mosei, sims: dst_feature_dim_nheads -> `embed_dim`, `num_heads`; nlevels ->
`cross_layers`; conv1d_kernel_size_{l,a,v}; text/attn/attn_a/attn_v/relu/embed/res dropouts;
fusion_{t,a,v}_hid, fusion_gru_layers, fusion_drop, cls_hidden_dim, cls_dropout; weight_gen_loss ->
`rec_weight_t/a/v`; weight_sim_loss -> `cmd_weight`; num_temporal_head -> `temporal_heads`;
grad_clip -> `grad_clip_value`; batch_size; learning_rate_other -> train.lr; learning_rate_bert ->
train.text_lr; weight_decay_other -> train.weight_decay; weight_decay_bert ->
train.text_weight_decay; patience -> train.scheduler_patience; commonParams: attn_mask ->
`future_mask`, early_stop 6 -> train.patience, update_epochs 4 -> train.grad_accum, use_bert_finetune
-> text.frozen=false, pretrained -> text.encoder (bert-base-uncased; bert-base-chinese for sims).
`intra_min_layers` 3: the `layers=3` of alignment.py's *_mem and *_final networks; `cmd_moments` 3
and the 1e-4: RECLoss/CMD in model.py. Trainer: Adam, BERT weights at learning_rate_bert with
weight_decay_bert (biases and LayerNorm weights without decay), the rest at learning_rate_other
with weight_decay_other; gradients clipped by value after each backward; ReduceLROnPlateau (min,
factor 0.1) on the valid loss: train.scheduler=plateau; selection on the valid loss (KeyEval "Loss").

Deviations:
- The reconstruction transformer attends over each sample's feature channels. The reference code
  hands TransformerEncoder (which reads (seq, batch, embed)) a (B, channels, T) tensor, so its
  attention runs across the *samples of a batch* (with the future mask over the batch order) and a
  sample's reconstruction depends on the batch it is in; that is taken for an unintended transpose.
  Here it has no future mask (meaningless over channels); the parameter count is the same.
- `self_drop_rate` (default 0 = the reference): when a training batch carries no protocol masks
  (rate 0, the `standard` protocol) and the rate is > 0, the model drops positions itself with the
  protocol's semantics (`msabench.api.masking`: [UNK] for token ids, 0 for vectors, [CLS]/[SEP]
  kept) and trains on that view. Without it the reconstruction networks get no gradient at rate 0,
  as in the reference. `tiny()` sets 0.2 so that the conformance suite (batches without masks)
  trains every parameter; `--tiny` runs therefore self-mask where no protocol mask exists.
- Padding is masked: padded keys get no attention weight, inputs are zeroed on padding before the
  convolutions, the GRUs run over the real steps (MMSA does that too), the fusion max runs over the
  real steps only (MMSA: over every padded step), and the reconstruction transformer's input is
  zero on padded time steps. Future mask and positions use the real lengths (as `mult`).
- The temporal embedding width is `InputSpec.max_lens[m]` (MMSA: the dataset's seq_lens); shorter
  batches are zero-padded to it. The number of its heads is gcd(T_max, `temporal_heads`) (MMSA
  requires T_max divisible by 25; at MOSI's 50/375/500 the gcd is 25, the same).
- A modality with no dropped position in the batch adds 0 (the reference's CMD term adds the
  constant 3e-6 / 1e-4 there, with no gradient). CMD and SmoothL1 run in float32.
- Training: update_epochs 4 is train.grad_accum 4 (the config's comment: "the batch_size of each
  epoch is update_epochs * batch_size"). MMSA's trainer zeroes the gradients every 4 batches but
  calls optimizer.step() after *every* batch (and once more every 4th), i.e. it steps on running
  sums; that is not reproduced. The value clip is divided by train.grad_accum (the loop averages
  micro-batch losses where MMSA sums them) and scaled with the fp16 loss scale, as in `mult`.
- The loop steps a partial accumulation at the end of an epoch. MMSA trains until early stopping
  with no cap; train.epochs caps at 100.
- Modality subsets: each target has the cross-modal transformers of the modalities present (the
  paper defines the trimodal model); classification/multilabel heads end in n_outputs units (MMSA
  has a regression head only and uses the regression config for both).
- Text as precomputed features (text.encoder=features) is reconstructed in that feature space; as
  token ids through a trainable embedding, in the embedding's space. BERT's pooler is not built
  (MMSA's from_pretrained builds it, unused: 590,592 parameters in its count).
- BatchNorm on a training batch of one sample uses its running statistics instead of raising.
- `inference_parameter_count` leaves out the reconstruction transformers and generators (used only
  in training); EMT-DLFR's Table 8 (124.3M) counts the whole MMSA model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from msabench.api import MODELS, Batch, InputSpec, MissingView, ModelOutput, MSAModel, OptimizerSpec, TextInput
from msabench.api.masking import drop_positions, random_drop_mask
from msabench.models.layers.subnets import _batch_norm, output_width
from msabench.models.layers.transformer import CrossModalEncoder

MODALITY_ORDER = ("t", "a", "v")  # MMSA's l, a, v
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")  # MMSA's bert_no_decay
REC_EPS = 1e-4  # RECLoss: / (sum(mask) + 1e-4)


@dataclass(frozen=True)
class TFRNetConfig:
    # MMSA config_regression.json "tfr_net" / "mosi"
    embed_dim: int = 30  # dst_feature_dim_nheads[0]
    num_heads: int = 6  # dst_feature_dim_nheads[1]
    cross_layers: int = 3  # nlevels
    conv_kernel_t: int = 1
    conv_kernel_a: int = 5
    conv_kernel_v: int = 3
    text_dropout: float = 0.2
    attn_dropout: float = 0.2  # text as source, every intra-modal and reconstruction transformer
    attn_dropout_a: float = 0.1
    attn_dropout_v: float = 0.0
    relu_dropout: float = 0.2
    embed_dropout: float = 0.2
    res_dropout: float = 0.2
    future_mask: bool = True  # commonParams attn_mask
    temporal_heads: int = 25  # num_temporal_head
    fusion_hidden_t: int = 36
    fusion_hidden_a: int = 20
    fusion_hidden_v: int = 48
    fusion_gru_layers: int = 3
    fusion_dropout: float = 0.2  # fusion_drop
    cls_hidden: int = 128  # cls_hidden_dim
    cls_dropout: float = 0.0
    rec_weight_t: float = 5.0  # weight_gen_loss
    rec_weight_a: float = 2.0
    rec_weight_v: float = 20.0
    cmd_weight: float = 5.0  # weight_sim_loss (recloss_type "combine")
    grad_clip_value: float = 0.8  # grad_clip; 0 = off
    # MMSA alignment.py / model.py / trainer
    intra_min_layers: int = 3  # get_network(..., layers=3) of *_mem and *_final
    cmd_moments: int = 3  # CMD.forward(n_moments=3)
    reconstruction_start_epoch: int = 1  # the trainer adds gen_loss when epochs > 1 (1-based)
    # msabench
    self_drop_rate: float = 0.0  # >0: drop positions itself when a training batch has no protocol masks
    token_embed_dim: int = 128  # embedding width when text comes as token ids


def tfr_preset(*, nlevels: int, relu: float, embed: float, cls_dropout: float, batch_size: int, lr: float,
               text_lr: float, plateau_patience: int, rec_weights: tuple[float, float, float],
               encoder: str) -> dict[str, Any]:
    """A preset in the shape of MMSA's "tfr_net" datasetParams (the keys that differ between datasets)."""
    return {
        "model.cross_layers": nlevels, "model.relu_dropout": relu, "model.embed_dropout": embed,
        "model.cls_dropout": cls_dropout, "model.rec_weight_t": rec_weights[0],
        "model.rec_weight_a": rec_weights[1], "model.rec_weight_v": rec_weights[2],
        "train.batch_size": batch_size, "train.lr": lr, "train.text_lr": text_lr,
        "train.scheduler_patience": plateau_patience, "text.encoder": encoder, "text.frozen": False,
    }


class SameConv(nn.Module):
    """Bias-free Conv1d over time with "same" padding, on inputs zeroed at padded steps."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"tfr_net's convolution kernels must be odd (same padding), got {kernel}")
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D_in), mask: (B, T) -> (B, T, E)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class GatedGRUPool(nn.Module):
    """MMSA's C_GATE: bi-GRU over the real steps, conv sigmoid gate, tanh projection, max over real steps."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.gate = nn.Conv1d(2 * hidden, 1, kernel_size=3, stride=1, padding=1)
        self.fc = nn.Linear(2 * hidden + in_dim, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), mask: (B, T) -> (B, hidden)
        lengths = mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)
        packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, 2h), 0 on padding
        gate = torch.sigmoid(self.gate(out.transpose(1, 2)).transpose(1, 2))  # (B, T, 1)
        rep = torch.tanh(self.fc(torch.cat([x.float(), torch.tanh(out) * gate], dim=-1)))  # (B, T, h)
        real = mask.clone()
        real[:, 0] = True  # a sample with no real step reads out its first
        rep = rep.masked_fill(~real.unsqueeze(-1), float("-inf")).max(dim=1).values  # (B, h)
        return self.dropout(rep)


def cmd(x1: torch.Tensor, x2: torch.Tensor, moments: int) -> torch.Tensor:
    """Central moment discrepancy between the rows of (N, D) x1 and x2 (Zellinger et al.; MMSA's CMD)."""
    def match(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b).pow(2).sum() + 1e-12).sqrt()

    m1, m2 = x1.mean(dim=0), x2.mean(dim=0)
    s1, s2 = x1 - m1, x2 - m2
    total = match(m1, m2)
    for k in range(2, moments + 1):
        total = total + match(s1.pow(k).mean(dim=0), s2.pow(k).mean(dim=0))
    return total


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, dropped: torch.Tensor, cmd_weight: float,
                        moments: int = 3) -> torch.Tensor:
    """MMSA's RECLoss ("combine") on the dropped positions only.

    pred, target: (B, T, D); dropped: (B, T) bool. SmoothL1 summed over the dropped elements plus
    cmd_weight x CMD of the masked tensors, each divided by (dropped elements + 1e-4); 0 when nothing
    was dropped.
    """
    if not bool(dropped.any()):
        return pred.new_zeros((), dtype=torch.float32)
    keep = dropped.unsqueeze(-1).expand_as(pred).to(torch.float32)
    p, t = pred.float() * keep, target.float() * keep
    n = keep.sum() + REC_EPS
    loss = F.smooth_l1_loss(p, t, reduction="sum") / n
    if cmd_weight:
        loss = loss + cmd_weight * cmd(p.reshape(-1, p.shape[-1]), t.reshape(-1, t.shape[-1]), moments) / n
    return loss


@dataclass
class TFREncoding:
    """The alignment's outputs: per modality the concatenated sequence (B, T_m, k * E) and real steps."""

    joined: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


@MODELS.register()
class TFRNet(MSAModel):
    name: ClassVar[str] = "tfr_net"
    config_cls: ClassVar[type] = TFRNetConfig
    impl_version: ClassVar[int] = 1
    USES_TEXT_ENCODER: ClassVar[bool] = True
    # the reconstruction loss starts at epoch `reconstruction_start_epoch` (1 in tiny())
    CONFORMANCE_EPOCHS: ClassVar[int] = 2
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-3,  # learning_rate_other
        "train.text_lr": 2e-6,  # learning_rate_bert
        "train.weight_decay": 1e-3,  # weight_decay_other
        "train.text_weight_decay": 1e-4,  # weight_decay_bert (no decay on biases and LayerNorm)
        "train.batch_size": 24,
        "train.grad_accum": 4,  # update_epochs
        "train.epochs": 100,
        "train.patience": 6,  # early_stop
        "train.scheduler": "plateau",  # ReduceLROnPlateau(mode min, factor 0.1) on the valid loss
        "train.scheduler_factor": 0.1,
        "train.scheduler_patience": 5,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": tfr_preset(nlevels=3, relu=0.2, embed=0.2, cls_dropout=0.0, batch_size=24, lr=1e-3, text_lr=2e-6,
                           plateau_patience=5, rec_weights=(5.0, 2.0, 20.0), encoder="bert-base-uncased"),
        "mosei": tfr_preset(nlevels=3, relu=0.2, embed=0.2, cls_dropout=0.0, batch_size=24, lr=2e-3, text_lr=1e-5,
                            plateau_patience=5, rec_weights=(5e-6, 2e-6, 2e-5), encoder="bert-base-uncased"),
        "sims": tfr_preset(nlevels=2, relu=0.0, embed=0.1, cls_dropout=0.1, batch_size=16, lr=2e-3, text_lr=1e-5,
                           plateau_patience=10, rec_weights=(1.0, 0.01, 1e-4), encoder="bert-base-chinese"),
        # no MMSA entry: the model's text encoder, nothing else
        "meld": {"text.encoder": "bert-base-uncased", "text.frozen": False},
        "iemocap": {"text.encoder": "bert-base-uncased", "text.frozen": False},
    }

    def __init__(self, cfg: TFRNetConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("tfr_net needs at least one modality")
        d = cfg.embed_dim
        if "t" in self.modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        self.text_dropout = nn.Dropout(cfg.text_dropout)
        self.in_dims = {m: (self.text_input.out_dim if m == "t" else int(spec.dims[m])) for m in self.modalities}
        self.max_lens = {m: int(spec.max_lens[m]) for m in self.modalities}
        kernels = {"t": cfg.conv_kernel_t, "a": cfg.conv_kernel_a, "v": cfg.conv_kernel_v}
        self.proj = nn.ModuleDict({m: (SameConv(self.in_dims[m], d, kernels[m]) if self.in_dims[m] != d
                                       else nn.Identity()) for m in self.modalities})

        common = {"relu_dropout": cfg.relu_dropout, "res_dropout": cfg.res_dropout,
                  "embed_dropout": cfg.embed_dropout}
        source_attn = {"t": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v}
        intra_layers = max(cfg.cross_layers, cfg.intra_min_layers)
        self.sources = {t: tuple(s for s in self.modalities if s != t) for t in self.modalities}
        self.intra = nn.ModuleDict({m: CrossModalEncoder(d, cfg.num_heads, intra_layers, attn_dropout=cfg.attn_dropout,
                                                         future_mask=cfg.future_mask, **common)
                                    for m in self.modalities})
        self.cross = nn.ModuleDict()
        for target, sources in self.sources.items():
            for source in sources:
                self.cross[f"{target}_with_{source}"] = CrossModalEncoder(
                    d, cfg.num_heads, cfg.cross_layers, attn_dropout=source_attn[source], future_mask=cfg.future_mask,
                    **common)
        self.widths = {m: d * (1 + len(self.sources[m])) for m in self.modalities}

        # reconstruction (training only): channels as tokens, the padded time axis as the embedding
        self.temporal = nn.ModuleDict({
            m: CrossModalEncoder(self.max_lens[m], math.gcd(self.max_lens[m], cfg.temporal_heads), intra_layers,
                                 attn_dropout=cfg.attn_dropout, future_mask=False, positional=False, **common)
            for m in self.modalities})
        self.generator = nn.ModuleDict({m: nn.Linear(self.widths[m], self.in_dims[m]) for m in self.modalities})

        hidden = {"t": cfg.fusion_hidden_t, "a": cfg.fusion_hidden_a, "v": cfg.fusion_hidden_v}
        self.fusion = nn.ModuleDict({m: GatedGRUPool(self.widths[m], hidden[m], cfg.fusion_gru_layers,
                                                     cfg.fusion_dropout) for m in self.modalities})
        fused = sum(hidden[m] for m in self.modalities)
        self.cls_norm = nn.BatchNorm1d(fused)
        self.cls_hidden = nn.Linear(fused, cfg.cls_hidden)
        self.cls_dropout = nn.Dropout(cfg.cls_dropout)
        self.cls_out = nn.Linear(cfg.cls_hidden, output_width(spec))

    @classmethod
    def tiny(cls) -> TFRNetConfig:
        return TFRNetConfig(embed_dim=8, num_heads=2, cross_layers=1, intra_min_layers=1, conv_kernel_t=1,
                            conv_kernel_a=3, conv_kernel_v=3, temporal_heads=5, fusion_hidden_t=6, fusion_hidden_a=4,
                            fusion_hidden_v=4, fusion_gru_layers=1, cls_hidden=8, text_dropout=0.1, attn_dropout=0.1,
                            attn_dropout_a=0.1, attn_dropout_v=0.1, relu_dropout=0.1, embed_dropout=0.1,
                            res_dropout=0.1, fusion_dropout=0.1, self_drop_rate=0.2, token_embed_dim=8)

    # -- forward -------------------------------------------------------------------------------

    def inputs(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each modality's input sequence (text: `TextInput`'s vectors) and its real steps."""
        values, masks = {}, {}
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)  # (B, T, D)
            else:
                x, mask = batch.modality(m)
                x = x.float()
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            values[m], masks[m] = x, mask.bool()
        return values, masks

    def encode(self, values: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> TFREncoding:
        projected = {}
        for m in self.modalities:
            x = self.text_dropout(values[m]) if m == "t" else values[m]
            proj = self.proj[m]
            projected[m] = proj(x, masks[m]) if isinstance(proj, SameConv) else x * masks[m].unsqueeze(-1).to(x.dtype)
        joined = {}
        for target in self.modalities:
            x, mask = projected[target], masks[target]
            parts = [self.intra[target](x, mask).hidden]  # (B, T, E)
            for source in self.sources[target]:
                parts.append(self.cross[f"{target}_with_{source}"](x, mask, projected[source], masks[source]).hidden)
            joined[target] = torch.cat(parts, dim=-1)  # (B, T, k * E)
        return TFREncoding(joined=joined, masks=masks)

    def head(self, enc: TFREncoding) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reps = {m: self.fusion[m](enc.joined[m], enc.masks[m]) for m in self.modalities}  # m -> (B, h_m)
        fused = torch.cat([reps[m] for m in self.modalities], dim=-1)  # (B, sum h)
        h = self.cls_dropout(F.leaky_relu(self.cls_hidden(_batch_norm(self.cls_norm, fused))))
        out = self.cls_out(h)  # (B, 1) | (B, C)
        reps["fusion"] = fused
        return (out.squeeze(-1) if self.spec.task == "regression" else out), reps

    def forward(self, batch: Batch) -> ModelOutput:
        values, masks = self.inputs(batch)
        pred, features = self.head(self.encode(values, masks))
        return ModelOutput(pred=pred, features=features)

    # -- reconstruction ------------------------------------------------------------------------

    def reconstruct(self, m: str, joined: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, k * E) alignment output -> (B, T, D_m) reconstructed input of modality m."""
        b, t, _ = joined.shape
        t_max = self.max_lens[m]
        if t > t_max:
            raise ValueError(f"tfr_net: modality {m} has {t} steps, more than the input spec's {t_max}")
        x = joined * mask.unsqueeze(-1).to(joined.dtype)
        x = F.pad(x, (0, 0, 0, t_max - t)).transpose(1, 2)  # (B, k * E, T_max): channels as tokens
        channels = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x = self.temporal[m](x, channels).hidden.transpose(1, 2)[:, :t]  # (B, T, k * E)
        return self.generator[m](x)  # (B, T, D_m)

    def reconstruction_losses(self, enc: TFREncoding, batch: Batch) -> dict[str, torch.Tensor]:
        """Per modality the weighted reconstruction loss against the complete view, on dropped positions."""
        complete, _ = self.inputs(batch.complete_view())
        weights = {"t": self.cfg.rec_weight_t, "a": self.cfg.rec_weight_a, "v": self.cfg.rec_weight_v}
        losses = {}
        for m in self.modalities:
            dropped = batch.drop_mask(m)
            if dropped is None or not weights[m]:
                continue
            if dropped.shape != enc.masks[m].shape:  # pooled text (text.pooling cls/mean): no token to rebuild
                continue
            dropped = dropped.bool() & enc.masks[m]
            pred = self.reconstruct(m, enc.joined[m], enc.masks[m])
            losses[f"rec_{m}"] = weights[m] * reconstruction_loss(pred, complete[m], dropped, self.cfg.cmd_weight,
                                                                  self.cfg.cmd_moments)
        return losses

    def self_dropped(self, batch: Batch) -> Batch:
        """The batch with positions dropped at `self_drop_rate`, as the missing-rate protocol drops them."""
        fields, drop, complete = {}, {}, {}
        for m in self.modalities:
            values, mask = batch.modality(m)
            real = mask.bool() if mask is not None else torch.ones(values.shape[:2], dtype=torch.bool,
                                                                  device=values.device)
            ids = m == "t" and values.dim() == 2  # token ids: keep [CLS]/[SEP], dropped -> [UNK]
            drop[m] = random_drop_mask(real, self.cfg.self_drop_rate, keep_ends=ids)
            complete[m] = values
            name = ("text_ids" if ids else "text_feats") if m == "t" else {"a": "audio", "v": "vision"}[m]
            fields[name] = drop_positions(values, drop[m], unk_id=self.spec.special_ids.get("unk") if ids else None)
        return dataclasses.replace(batch, missing=MissingView(drop=drop, complete=complete), **fields)

    # -- training ------------------------------------------------------------------------------

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        if batch.missing is None and self.cfg.self_drop_rate > 0:
            batch = self.self_dropped(batch)
        with ctx.autocast():
            values, masks = self.inputs(batch)
            enc = self.encode(values, masks)
            pred, _ = self.head(enc)
            task = ctx.loss_fn(pred, batch.y)
            rec = (self.reconstruction_losses(enc, batch)
                   if batch.missing is not None and ctx.epoch >= self.cfg.reconstruction_start_epoch else {})
            loss = task + sum(rec.values()) if rec else task
        ctx.backward(loss)
        if self.cfg.grad_clip_value > 0:
            ctx.clip_accumulated_values(self.parameters(), self.cfg.grad_clip_value)
        ctx.step()
        logged = {"task": float(task.detach())}
        logged.update({k: float(v.detach()) for k, v in rec.items()})
        logged["total"] = float(loss.detach())
        return logged

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, OptimizerSpec]:
        """MMSA's TFR_NET trainer: a fine-tuned encoder at train.text_lr with train.text_weight_decay
        (none on biases and LayerNorm weights); every other parameter at train.lr, train.weight_decay."""
        encoder = getattr(getattr(self, "text_input", None), "encoder", None)
        bert = {} if encoder is None else {n: p for n, p in encoder.named_parameters() if p.requires_grad}
        bert_ids = {id(p) for p in bert.values()}
        others = [p for p in self.parameters() if p.requires_grad and id(p) not in bert_ids]
        groups = [{"params": others, "weight_decay": float(train_cfg.get("train.weight_decay", 0.0))}]
        if bert:
            text_lr = float(train_cfg.get("train.text_lr", 5e-5))
            decay = [p for n, p in bert.items() if not any(nd in n for nd in NO_DECAY)]
            no_decay = [p for n, p in bert.items() if any(nd in n for nd in NO_DECAY)]
            groups += [{"params": decay, "lr": text_lr, "name": "text_encoder",
                        "weight_decay": float(train_cfg.get("train.text_weight_decay", 0.0))},
                       {"params": no_decay, "lr": text_lr, "name": "text_encoder_no_decay", "weight_decay": 0.0}]
        return {"main": OptimizerSpec(groups=[g for g in groups if g["params"]])}

    def inference_parameter_count(self) -> int:
        """Leaves out the reconstruction transformers and generators (used only in training)."""
        training_only = {id(p) for mod in (self.temporal, self.generator) for p in mod.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in training_only)
