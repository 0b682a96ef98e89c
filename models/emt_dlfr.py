"""`emt_dlfr`: Efficient Multimodal Transformer with Dual-Level Feature Restoration (EMT-DLFR).

Paper: L. Sun, Z. Lian, B. Liu, J. Tao, "Efficient Multimodal Transformer with Dual-Level Feature
Restoration for Robust Multimodal Sentiment Analysis", IEEE Transactions on Affective Computing (2023)
(../shared/papers/emt-dlfr.txt). Reference code, read for facts: sunlicai/EMT-DLFR
(models/missingTask/EMT_DLFR.py, models/subNets/EMT.py, trains/missingTask/EMT_DLFR.py,
config/config_regression.py, data/load_data.py).

Architecture:
- Unimodal encoders (Sec. 3.2, eq. 1): text through `TextInput` (by default a fine-tuned BERT,
  `text.encoder`); its first position ([CLS]) is the utterance-level h_l and the positions after
  it, [SEP] excluded, the token sequence H_l (the reference code: `text[:, 1:]`, lengths - 2).
  Audio and vision: a one-layer LSTM (packed, so padding never enters), a linear layer to
  `audio_out` / `vision_out` on every step and on the last real step's hidden state, which is h_a /
  h_v (the reference code's AuViSubNet, dropout on the utterance vector only). Bias-free linear
  projections to d (one per modality, shared by H_m and h_m).
- EMT (Sec. 3.3): sinusoidal positions on H_m (`emb_dropout` after), then `layers` fusion layers
  built from the Mutual Promotion Unit. One direction of an MPU (`PromotionBlock`, eq. 5):
  pre-LN multi-head cross-attention (target queries, source keys/values, a LayerNorm for each),
  pre-LN self-attention, pre-LN FFN, each with a residual. An MPU is two directions (eq. 4).
  Fusion strategies (`model.fusion`):
  * `oagl` (eq. 8, EMT's): the global multimodal context G^[0] = [h_l; h_a; h_v] (M x d tokens);
    per modality H_m^[i+1] = MPU_{g->m}(H_m^[i], G^[i]) and G_m = MPU_{m->g}(G^[i], H_m^[i]);
    G^[i+1] = Pool(G_l, G_a, G_v) (eq. 9). The readout g is G^[L] flattened (M*d).
  * `oall` (eq. 7): the common message C^[0] = Concat_time(H_l, H_a, H_v); H_m^[i+1], C_m =
    MPU_{m<->c}(H_m^[i], C^[i]); C^[i+1] = Pool(C_l, C_a, C_v), position by position.
  * `ooll` (eq. 6): an MPU per pair of modalities; each modality's two promoted sequences are
    pooled position by position into H_m^[i+1].
  `serial` (5.2.1, oall and oagl): the context half reads the promoted H_m^[i+1] instead of H_m^[i].
  Pooling (`model.pooling`, 5.2.3): `attention` (eq. 9: softmax over the candidates of
  v^T tanh(W x + b); for OAGL x is a candidate context flattened to M*d, as in the reference code),
  `average`, `mlp` (one linear layer from the concatenated candidates to one).
  Hierarchical parameter sharing (Sec. 3.3.4): `share_mpu` (the two directions of an MPU),
  `share_modality` (the MPUs of a layer), `share_layer` (the layers, their pooling included).
  Unshared copies start as copies of one block, as the reference code's `copy.deepcopy` does.
- Prediction (Sec. 3.4): [g; h_l; h_a; h_v] (the encoders' utterance vectors before projection, as in
  the reference code) -> dropout -> Linear -> ReLU -> Linear -> ReLU -> Linear; L1 loss (eq. 10).
- DLFR (Sec. 3.5), training only, when the batch carries a missing view (`missing-rate`):
  low-level reconstruction (eq. 11): a linear decoder per modality on the masked view's EMT output
  Z_m, smooth L1 against the complete input (text: the complete view's text-encoder output,
  detached) on the dropped positions only, averaged over the dropped elements (the reference
  code's ReconLoss). High-level attraction (eqs. 13-15): symmetric SimSiam (projector: Linear +
  BatchNorm without affine; predictor: Linear (no bias) + BatchNorm + ReLU + Linear; stop-gradient
  on the targets) between the complete and the masked view for g and each h_m, plus the complete
  view's prediction loss. Total (eq. 16): L_task + lambda1 L_recon + lambda2 L_attr.
  `attraction=cosine` (5.2.6): -cos(masked, complete) per representation, no projector, predictor
  or stop-gradient. Without a missing view (the complete setting, `standard`) the loss is L_task
  alone (Sec. 3.6), unless `self_drop_rate` > 0 (below).

Defaults and presets: Table 3 (CMU-MOSI column = the defaults; PRESETS mosi, mosei, sims): batch
size, learning rates (other, BERT), Adam, early stop 8, gradient accumulation 4, d, L, heads, FFN
expansion, embedding/attention/FFN dropout, lambda1, lambda2. From the reference code's
config_regression.py (not in the paper): the audio/vision learning rates and weight decays, the
BERT weight decay (not on biases and LayerNorms), LSTM widths (audio 32/16, vision 64/32 on MOSI;
16/16, 32/32 on MOSEI and SIMS), predictor widths (g 128, text 256, audio 8, vision 16), the head's
width and dropout, the GEGLU FFN, and all three sharing levels on (Table 9's last row; its AUILC
equals Table 6's EMT-DLFR row). Text encoders: bert-base-uncased (MOSI, MOSEI), bert-base-chinese
(SIMS), fine-tuned (Sec. 4.3; `use_finetune`).

Switches (`model.*`; the variants name the paper's ablations): fusion (ooll/oall/oagl), serial,
pooling, share_mpu/share_modality/share_layer (Table 9: `@share-none` ... `@share-all`), dlfr
(`@emt`: no DLFR, Tables 4-5), recon_weight / attraction_weight (lambda1/lambda2; `@llfr`,
`@hlfr`, Fig. 9), attraction (`@cosine`, Fig. 11), ffn (geglu/gelu).

Deviations:
- The FFN is the reference code's GEGLU (Linear(d, 2*4d), x * GELU(gate), Linear(4d, d)), not the
  paper's "FFN in Transformer"; Table 9's parameter counts match GEGLU. `ffn=gelu` gives the
  vanilla FFN. Attention projections have no bias on q/k/v (reference code).
- OOLL and OALL are not in the reference code; the paper gives their MPU wiring (eqs. 6-7) but not
  how their promoted sequences are merged or read out. Ours: the pooling layer acts position by
  position on d-wide candidates (eq. 9's form with W in R^{d x d}), and the readout g is the masked
  time-mean of each modality's final H_m (M*d, the width of OAGL's g, so the head is unchanged).
  `serial` with `ooll` is refused (5.2.1 defines it for OALL and OAGL only).
- `self_drop_rate` is ours: with a rate > 0 and a batch without a missing view, training draws
  its own drop masks (each real position with that probability; token text keeps [CLS]/[SEP] and
  becomes [UNK], vectors become 0) and runs DLFR on them. 0 (the default) is the paper's complete
  setting. `tiny()` sets 0.3 so that the conformance suite and `--tiny` runs on complete data
  exercise every DLFR network; the official code draws no masks of its own: it trains at the
  run's missing rate with the static masks of data/load_data.py (`data.mask_scheme=emt` reproduces
  them), which `missing-rate` provides.
- Padding: keys at padded positions get no attention weight and a query with no visible key
  attends to nothing (the reference code masks with -max, which spreads such a row evenly over the
  padding); positions are numbered over the real steps (the reference code adds positions 0..T-1
  to every step). The local text sequence of a sample with only [CLS] (or [CLS][SEP]) is empty.
- SimSiam terms are skipped on a training batch of one sample (BatchNorm needs two); the
  reference code's loader would fail there.
- Model selection: the harness's rule (validation metric at the run's rate); the reference code
  selects on the validation total loss, DLFR terms included.
- Tasks: the reference code is regression-only; the head here has `n_outputs` logits for the
  harness's classification and multi-label tasks (with their losses).
- Text as plain token ids (`text.encoder=tokens`) gets a trainable embedding of `token_embed_dim`;
  its [CLS] vector would be the same for every sample, so the mean of the word vectors is h_l
  there (SimSiam's BatchNorm cannot learn from a constant). Precomputed text vectors are read as
  [CLS] ... [SEP] (MMSA's BERT features are).
- #Params (Table 9) counts the inference-time networks (`inference_parameter_count`, without the
  projectors, predictors and decoders, as the reference code's count_parameters_2). A BERT built
  from its config here has no pooler (the harness builds BERT without it; EMT never reads it); the
  reference code's BertModel.from_pretrained keeps the unused pooler (590,592 parameters), which the
  paper's counts include.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from msabench.api import (
    MODELS,
    Batch,
    InputSpec,
    MissingView,
    ModelOutput,
    MSAModel,
    TextInput,
    drop_positions,
    masked_mean,
)
from msabench.api.masking import random_drop_mask
from msabench.models.layers.transformer import real_positions, sinusoidal_embedding

MODALITY_ORDER = ("t", "a", "v")
FUSIONS = ("ooll", "oall", "oagl")
POOLINGS = ("attention", "average", "mlp")
ATTRACTIONS = ("simsiam", "cosine")
FFNS = ("geglu", "gelu")


@dataclass(frozen=True)
class EMTDLFRConfig:
    # EMT (Table 3, CMU-MOSI column)
    d_model: int = 128  # hidden unit size d
    layers: int = 3  # stacked layers L
    heads: int = 4
    ffn_expansion: int = 4
    emb_dropout: float = 0.0
    attn_dropout: float = 0.3
    ffn_dropout: float = 0.1
    ffn: str = "geglu"  # geglu (reference code) | gelu (vanilla Transformer FFN)
    fusion: str = "oagl"  # ooll | oall | oagl (Sec. 3.3.3)
    serial: bool = False  # 5.2.1's serial variants of oall / oagl
    pooling: str = "attention"  # attention (eq. 9) | average | mlp (5.2.3)
    # hierarchical parameter sharing (Sec. 3.3.4; reference config: all on)
    share_mpu: bool = True
    share_modality: bool = True
    share_layer: bool = True
    # unimodal encoders (reference config_regression.py, mosi)
    audio_lstm_hidden: int = 32
    vision_lstm_hidden: int = 64
    audio_out: int = 16
    vision_out: int = 32
    lstm_dropout: float = 0.0
    token_embed_dim: int = 128  # msabench: text given as plain token ids
    # prediction module (reference config)
    post_fusion_dim: int = 256
    post_fusion_dropout: float = 0.3
    # DLFR (Sec. 3.5-3.6; Table 3)
    dlfr: bool = True
    recon_weight: float = 1.0  # lambda1
    attraction_weight: float = 1.0  # lambda2
    attraction: str = "simsiam"  # simsiam (eqs. 13-15) | cosine (5.2.6)
    context_pred_dim: int = 128  # SimSiam predictor widths (reference config)
    text_pred_dim: int = 256
    audio_pred_dim: int = 8
    vision_pred_dim: int = 16
    self_drop_rate: float = 0.0  # ours: training masks drawn by the model on complete batches (0 = paper)


def _table3(batch_size: int, lr: float, text_lr: float, d: int, layers: int, attn_dropout: float,
            ffn_dropout: float, lambda1: float, lambda2: float) -> dict[str, Any]:
    """One column of Table 3 (Adam, early stop 8, accumulation 4, 4 heads, FFN x4, embedding dropout 0)."""
    return {"train.batch_size": batch_size, "train.lr": lr, "train.text_lr": text_lr, "model.d_model": d,
            "model.layers": layers, "model.attn_dropout": attn_dropout, "model.ffn_dropout": ffn_dropout,
            "model.recon_weight": lambda1, "model.attraction_weight": lambda2}


def _sharing(mpu: bool, modality: bool, layer: bool) -> dict[str, Any]:
    return {"model.share_mpu": mpu, "model.share_modality": modality, "model.share_layer": layer}


# -- EMT building blocks -----------------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head scaled dot-product attention (eqs. 2-3); q/k/v without bias (reference code)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, Tq, d) queries; context: (B, Tk, d) keys/values; context_mask: (B, Tk) bool or None
        b, tq, d = x.shape
        tk, dh = context.shape[1], d // self.heads
        q = self.to_q(x).view(b, tq, self.heads, dh).transpose(1, 2)  # (B, H, Tq, dh)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        k = k.reshape(b, tk, self.heads, dh).transpose(1, 2)  # (B, H, Tk, dh)
        v = v.reshape(b, tk, self.heads, dh).transpose(1, 2)
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(dh)  # (B, H, Tq, Tk)
        if context_mask is None:
            probs = scores.softmax(dim=-1)
        else:
            visible = context_mask[:, None, None, :]
            any_visible = visible.any(dim=-1, keepdim=True)  # a query with no real key attends to nothing
            probs = scores.masked_fill(~visible, float("-inf")).masked_fill(~any_visible, 0.0).softmax(dim=-1)
            probs = probs * any_visible
        out = torch.matmul(self.dropout(probs).to(v.dtype), v)  # (B, H, Tq, dh)
        return self.to_out(out.transpose(1, 2).reshape(b, tq, d))


class FeedForward(nn.Module):
    """Position-wise FFN: GEGLU (reference code) or Linear-GELU-Linear; dropout on the output."""

    def __init__(self, dim: int, expansion: int, kind: str, dropout: float):
        super().__init__()
        if kind not in FFNS:
            raise ValueError(f"model.ffn={kind!r}: use one of {', '.join(FFNS)}")
        self.kind = kind
        hidden = dim * expansion
        self.inner = nn.Linear(dim, 2 * hidden if kind == "geglu" else hidden)
        self.outer = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner(x)
        if self.kind == "geglu":
            h, gate = h.chunk(2, dim=-1)
            h = h * F.gelu(gate)
        else:
            h = F.gelu(h)
        return self.dropout(self.outer(h))


class PromotionBlock(nn.Module):
    """One direction of a Mutual Promotion Unit, MPU_{source->target} (eq. 5)."""

    def __init__(self, cfg: EMTDLFRConfig):
        super().__init__()
        d = cfg.d_model
        self.target_norm = nn.LayerNorm(d)
        self.source_norm = nn.LayerNorm(d)
        self.cross_attn = Attention(d, cfg.heads, cfg.attn_dropout)
        self.self_norm = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.heads, cfg.attn_dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_expansion, cfg.ffn, cfg.ffn_dropout)

    def forward(self, target: torch.Tensor, target_mask: torch.Tensor | None, source: torch.Tensor,
                source_mask: torch.Tensor | None) -> torch.Tensor:
        # target: (B, Tt, d), source: (B, Ts, d); masks (B, T) bool (None: every position real)
        x = target + self.cross_attn(self.target_norm(target), self.source_norm(source), source_mask)
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, target_mask)
        return x + self.ffn(self.ffn_norm(x))  # (B, Tt, d)


class AttentionPool(nn.Module):
    """Eq. 9: softmax over candidates of v^T tanh(W x + b), then their weighted sum."""

    def __init__(self, width: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, candidates: torch.Tensor) -> torch.Tensor:
        # candidates: (..., K, width) -> (..., width)
        weights = self.score(candidates).softmax(dim=-2)  # (..., K, 1)
        return (weights * candidates).sum(dim=-2)


class AveragePool(nn.Module):
    def forward(self, candidates: torch.Tensor) -> torch.Tensor:
        return candidates.mean(dim=-2)


class MLPPool(nn.Module):
    """One fully connected layer from the K concatenated candidates to one (5.2.3)."""

    def __init__(self, width: int, candidates: int):
        super().__init__()
        self.fc = nn.Linear(width * candidates, width)

    def forward(self, candidates: torch.Tensor) -> torch.Tensor:
        return self.fc(candidates.flatten(-2))


def _pool(kind: str, width: int, candidates: int) -> nn.Module:
    if kind == "attention":
        return AttentionPool(width)
    if kind == "average":
        return AveragePool()
    if kind == "mlp":
        return MLPPool(width, candidates)
    raise ValueError(f"model.pooling={kind!r}: use one of {', '.join(POOLINGS)}")


def _clones(module: nn.Module, n: int, share: bool) -> nn.ModuleList:
    """n entries of one module: the same object when shared, else deep copies (reference `_get_clones`)."""
    return nn.ModuleList([module if share else copy.deepcopy(module) for _ in range(n)])


class EMTFusion(nn.Module):
    """The fusion module of EMT (Sec. 3.3): `units[layer][unit]` = the two directions of one MPU.

    Units: OAGL and OALL one per modality (local <-> context); OOLL one per pair (m, n), direction 0
    promoting m from n, direction 1 promoting n from m. `forward` returns the readout g (B, M*d)
    and the final local sequences.
    """

    def __init__(self, cfg: EMTDLFRConfig, n_modalities: int):
        super().__init__()
        if cfg.fusion not in FUSIONS:
            raise ValueError(f"model.fusion={cfg.fusion!r}: use one of {', '.join(FUSIONS)}")
        if cfg.serial and cfg.fusion == "ooll":
            raise ValueError("model.serial=true: the serial variants exist for oall and oagl (EMT-DLFR 5.2.1)")
        self.cfg = cfg
        self.n = n_modalities
        d = cfg.d_model
        self.pairs = [(i, j) for i in range(n_modalities) for j in range(i + 1, n_modalities)]
        n_units = len(self.pairs) if cfg.fusion == "ooll" else n_modalities
        block = PromotionBlock(cfg)
        mpu = _clones(block, 2, cfg.share_mpu)  # level 1: the two directions
        layer = _clones(mpu, n_units, cfg.share_modality) if n_units else nn.ModuleList()  # level 2
        self.units = _clones(layer, cfg.layers, cfg.share_layer)  # level 3
        if cfg.fusion == "oagl":  # a candidate is a whole context (M tokens) flattened, as in the reference code
            pool = _pool(cfg.pooling, n_modalities * d, n_modalities)
        else:  # position by position over the candidates
            pool = _pool(cfg.pooling, d, n_modalities if cfg.fusion == "oall" else max(n_modalities - 1, 1))
        self.pools = _clones(pool, cfg.layers, cfg.share_layer)
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)

    def forward(self, context: torch.Tensor, sequences: list[torch.Tensor], masks: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # context: (B, M, d) = G^[0]; sequences[k]: (B, T_k, d); masks[k]: (B, T_k) bool
        d = self.cfg.d_model
        seqs = [self.emb_dropout(x + sinusoidal_embedding(real_positions(m), d).to(x.dtype))
                for x, m in zip(sequences, masks)]
        if self.cfg.fusion == "oagl":
            g = self._oagl(context, seqs, masks)  # (B, M, d)
            return g.flatten(1), seqs
        if self.cfg.fusion == "oall":
            self._oall(seqs, masks)
        else:
            self._ooll(seqs, masks)
        g = torch.cat([masked_mean(x, m) for x, m in zip(seqs, masks)], dim=-1)  # (B, M*d)
        return g, seqs

    def _oagl(self, context: torch.Tensor, seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        b, m_count, d = context.shape
        for layer, pool in zip(self.units, self.pools):
            candidates = []
            for k, (to_local, to_context) in enumerate(layer):
                promoted = to_local(seqs[k], masks[k], context, None)  # H_m^[i+1]: (B, T_k, d)
                source = promoted if self.cfg.serial else seqs[k]
                candidates.append(to_context(context, None, source, masks[k]).flatten(1))  # (B, M*d)
                seqs[k] = promoted
            context = pool(torch.stack(candidates, dim=1)).view(b, m_count, d)  # G^[i+1]: (B, M, d)
        return context

    def _oall(self, seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
        common, common_mask = torch.cat(seqs, dim=1), torch.cat(masks, dim=1)  # C^[0]: (B, sum T, d)
        for layer, pool in zip(self.units, self.pools):
            candidates = []
            for k, (to_local, to_context) in enumerate(layer):
                promoted = to_local(seqs[k], masks[k], common, common_mask)
                source = promoted if self.cfg.serial else seqs[k]
                candidates.append(to_context(common, common_mask, source, masks[k]))  # (B, sum T, d)
                seqs[k] = promoted
            common = pool(torch.stack(candidates, dim=2))  # C^[i+1]: (B, sum T, d)

    def _ooll(self, seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
        if not self.pairs:
            return
        for layer, pool in zip(self.units, self.pools):
            promoted: list[list[torch.Tensor]] = [[] for _ in seqs]
            for (i, j), (to_i, to_j) in zip(self.pairs, layer):
                promoted[i].append(to_i(seqs[i], masks[i], seqs[j], masks[j]))  # H_{j->i}
                promoted[j].append(to_j(seqs[j], masks[j], seqs[i], masks[i]))  # H_{i->j}
            for k, candidates in enumerate(promoted):
                seqs[k] = pool(torch.stack(candidates, dim=2))  # (B, T_k, d)


# -- encoders and DLFR heads --------------------------------------------------------------------------

class SequenceEncoder(nn.Module):
    """Audio / vision: LSTM over the real steps, a linear layer on every step and on the last state."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, out_dim) if hidden != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, D_in), mask: (B, T) -> H (B, T, out), h (B, out)
        lengths = mask.long().sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
        steps, (last, _) = self.rnn(packed)
        steps, _ = pad_packed_sequence(steps, batch_first=True, total_length=x.shape[1])
        return self.out(steps), self.out(self.dropout(last[-1]))


class Projector(nn.Sequential):
    """SimSiam projector p (reference code): Linear + BatchNorm without affine."""

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim), nn.BatchNorm1d(dim, affine=False))


class Predictor(nn.Sequential):
    """SimSiam predictor q (reference code): Linear (no bias) + BatchNorm + ReLU + Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, dim))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. 14 with the stop-gradient on z: -cos(p, sg(z)), averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """Eqs. 11-12 on the dropped positions only, averaged over their elements (reference ReconLoss)."""
    # pred, target: (B, T, D); dropped: (B, T) bool
    w = dropped.unsqueeze(-1).to(pred.dtype)
    total = F.smooth_l1_loss(pred.float() * w, target.float() * w, reduction="sum")
    return total / (w.sum() * pred.shape[-1] + 1e-6)


@dataclass
class Encoding:
    pred: torch.Tensor  # (B,) or (B, C)
    utterance: dict[str, torch.Tensor]  # "g" (B, M*d) and each modality's h_m (B, D_m)
    local: dict[str, torch.Tensor]  # modality -> Z_m, the EMT output sequence (B, T_m', d)
    local_masks: dict[str, torch.Tensor]  # modality -> (B, T_m') bool
    text_sequence: torch.Tensor | None  # the text encoder's token sequence after [CLS] (B, T-1, D_t)
    fusion: torch.Tensor  # the head's input (B, M*d + sum D_m)


@MODELS.register()
class EMTDLFR(MSAModel):
    name: ClassVar[str] = "emt_dlfr"
    config_cls: ClassVar[type] = EMTDLFRConfig
    impl_version: ClassVar[int] = 1
    USES_TEXT_ENCODER: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # Table 3 (CMU-MOSI) and the reference config (mosi)
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.text_lr": 5e-5,
        "train.batch_size": 32,
        "train.grad_accum": 4,
        "train.patience": 8,
        "train.epochs": 100,  # the reference loop has no cap (early stopping ends it); ours
        "train.weight_decay": 1e-3,  # the fusion, head and DLFR networks
        "train.text_weight_decay": 1e-3,  # BERT, not on biases and LayerNorms
        "train.audio_lr": 1e-3,
        "train.audio_weight_decay": 1e-2,
        "train.vision_lr": 1e-4,
        "train.vision_weight_decay": 1e-3,
    }
    _BERT_EN: ClassVar[dict[str, Any]] = {"text.encoder": "bert-base-uncased", "text.frozen": False}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": {**_BERT_EN, **_table3(32, 1e-3, 5e-5, 128, 3, 0.3, 0.1, 1.0, 1.0)},
        "mosei": {**_BERT_EN, **_table3(16, 1e-4, 2e-5, 128, 2, 0.0, 0.0, 1.0, 1.0),
                  "train.audio_lr": 1e-4, "train.audio_weight_decay": 1e-3, "train.vision_lr": 1e-4,
                  "model.audio_lstm_hidden": 16, "model.vision_lstm_hidden": 32, "model.post_fusion_dim": 128,
                  "model.post_fusion_dropout": 0.0},
        "sims": {"text.encoder": "bert-base-chinese", "text.frozen": False, "text.max_length": 39,
                 **_table3(32, 1e-3, 2e-5, 32, 4, 0.0, 0.0, 0.5, 0.5),
                 "train.weight_decay": 0.0, "train.audio_lr": 1e-3, "train.audio_weight_decay": 0.0,
                 "train.vision_lr": 1e-3, "train.vision_weight_decay": 0.0,
                 "model.audio_lstm_hidden": 16, "model.vision_lstm_hidden": 32, "model.post_fusion_dropout": 0.0},
    }
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "emt": {"model.dlfr": False},  # Tables 4-5 and Fig. 9's EMT
        # Table 9 (MPU, modality, layer)
        "share-none": _sharing(False, False, False),
        "share-mpu": _sharing(True, False, False),
        "share-modality": _sharing(False, True, False),
        "share-layer": _sharing(False, False, True),
        "share-mpu-modality": _sharing(True, True, False),
        "share-mpu-layer": _sharing(True, False, True),
        "share-modality-layer": _sharing(False, True, True),
        "share-all": _sharing(True, True, True),
        # Figs. 7-11 (no template yet)
        "ooll": {"model.fusion": "ooll"},
        "oall": {"model.fusion": "oall"},
        "oall-serial": {"model.fusion": "oall", "model.serial": True},
        "oagl-serial": {"model.serial": True},
        "pool-average": {"model.pooling": "average"},
        "pool-mlp": {"model.pooling": "mlp"},
        "llfr": {"model.attraction_weight": 0.0},
        "hlfr": {"model.recon_weight": 0.0},
        "cosine": {"model.attraction": "cosine"},
    }

    def __init__(self, cfg: EMTDLFRConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if cfg.attraction not in ATTRACTIONS:
            raise ValueError(f"model.attraction={cfg.attraction!r}: use one of {', '.join(ATTRACTIONS)}")
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("emt_dlfr needs at least one modality")
        d = cfg.d_model
        widths: dict[str, int] = {}
        if "t" in self.modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            widths["t"] = self.text_input.out_dim
        self.sequence_encoders = nn.ModuleDict()
        lstm = {"a": (cfg.audio_lstm_hidden, cfg.audio_out), "v": (cfg.vision_lstm_hidden, cfg.vision_out)}
        for m, (hidden, out) in lstm.items():
            if m in self.modalities:
                self.sequence_encoders[m] = SequenceEncoder(int(spec.dims[m]), hidden, out, cfg.lstm_dropout)
                widths[m] = out
        self.widths = widths
        self.proj = nn.ModuleDict({m: nn.Linear(w, d, bias=False) if w != d else nn.Identity()
                                   for m, w in widths.items()})
        self.fusion = EMTFusion(cfg, len(self.modalities))
        context_width = len(self.modalities) * d
        head_in = context_width + sum(widths.values())
        n_out = 1 if spec.task == "regression" else int(spec.n_outputs)
        self.head = nn.Sequential(nn.Dropout(cfg.post_fusion_dropout), nn.Linear(head_in, cfg.post_fusion_dim),
                                  nn.ReLU(), nn.Linear(cfg.post_fusion_dim, cfg.post_fusion_dim), nn.ReLU(),
                                  nn.Linear(cfg.post_fusion_dim, n_out))
        # DLFR: training-only networks (left out of inference_parameter_count)
        self.decoders = nn.ModuleDict()
        self.projectors = nn.ModuleDict()
        self.predictors = nn.ModuleDict()
        if cfg.dlfr:
            self.decoders.update({m: nn.Linear(d, widths["t"] if m == "t" else int(spec.dims[m]))
                                  for m in self.modalities})
            if cfg.attraction == "simsiam":
                pred_dims = {"g": cfg.context_pred_dim, "t": cfg.text_pred_dim, "a": cfg.audio_pred_dim,
                             "v": cfg.vision_pred_dim}
                for key, width in (("g", context_width), *widths.items()):
                    self.projectors[key] = Projector(width)
                    self.predictors[key] = Predictor(width, pred_dims[key])

    @classmethod
    def tiny(cls) -> EMTDLFRConfig:
        return EMTDLFRConfig(d_model=8, layers=1, heads=2, ffn_expansion=2, attn_dropout=0.0, ffn_dropout=0.0,
                             audio_lstm_hidden=8, vision_lstm_hidden=8, audio_out=6, vision_out=6, token_embed_dim=8,
                             post_fusion_dim=16, post_fusion_dropout=0.0, context_pred_dim=8, text_pred_dim=8,
                             audio_pred_dim=4, vision_pred_dim=4, self_drop_rate=0.3)

    # -- forward ----------------------------------------------------------------------------------------

    def _encode(self, batch: Batch) -> Encoding:
        utterance: dict[str, torch.Tensor] = {}
        sequences, masks = [], []
        text_sequence = None
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)  # (B, T, D_t) [CLS] w_1 ... [SEP], (B, T)
                x = x.float()
                lengths = mask.long().sum(dim=1)
                text_sequence = x[:, 1:]  # (B, T-1, D_t)
                # the words: after [CLS], before [SEP] (reference: text[:, 1:], lengths - 2)
                seq_mask = torch.arange(x.shape[1] - 1, device=x.device)[None, :] < (lengths - 2)[:, None]
                seq = text_sequence
                if self._plain_token_embedding():
                    # a context-free embedding's [CLS] is one vector for every sample: the words' mean stands in
                    utterance[m] = masked_mean(text_sequence, seq_mask)  # (B, D_t)
                else:
                    utterance[m] = x[:, 0]  # (B, D_t)
            else:
                values, mask = batch.modality(m)
                seq, utterance[m] = self.sequence_encoders[m](values, mask.bool())  # (B, T, D_m), (B, D_m)
                seq_mask = mask.bool()
            sequences.append(self.proj[m](seq))  # (B, T_m', d)
            masks.append(seq_mask)
        context = torch.stack([self.proj[m](utterance[m]) for m in self.modalities], dim=1)  # G^[0]: (B, M, d)
        g, local = self.fusion(context, sequences, masks)  # (B, M*d), [(B, T_m', d)]
        utterance["g"] = g
        fused = torch.cat([g] + [utterance[m] for m in self.modalities], dim=-1)  # [g; h_l; h_a; h_v]
        out = self.head(fused)
        pred = out.squeeze(-1) if self.spec.task == "regression" else out
        return Encoding(pred=pred, utterance=utterance, local=dict(zip(self.modalities, local)),
                        local_masks=dict(zip(self.modalities, masks)), text_sequence=text_sequence, fusion=fused)

    def forward(self, batch: Batch) -> ModelOutput:
        enc = self._encode(batch)  # the batch as given: the masked view under a missing rate
        return ModelOutput(pred=enc.pred, features={"fusion": enc.fusion, "context": enc.utterance["g"]})

    def inference_parameter_count(self) -> int:
        training_only = {id(p) for net in (self.decoders, self.projectors, self.predictors) for p in net.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in training_only)

    # -- training ---------------------------------------------------------------------------------------

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The reference trainer's groups: BERT (decay / no decay on biases and LayerNorms), audio, vision, rest."""
        lr = float(train_cfg.get("train.lr", 1e-3))
        wd = float(train_cfg.get("train.weight_decay", 0.0))
        text_lr = float(train_cfg.get("train.text_lr", lr))
        encoder = getattr(getattr(self, "text_input", None), "encoder", None)
        bert = {n: p for n, p in encoder.named_parameters() if p.requires_grad} if encoder is not None else {}
        no_decay = [p for n, p in bert.items() if "bias" in n or "LayerNorm" in n]
        decay = [p for n, p in bert.items() if not ("bias" in n or "LayerNorm" in n)]
        groups = [
            {"params": decay, "lr": text_lr, "weight_decay": float(train_cfg.get("train.text_weight_decay", wd)),
             "name": "text_encoder"},
            {"params": no_decay, "lr": text_lr, "weight_decay": 0.0, "name": "text_encoder_no_decay"},
        ]
        taken = {id(p) for p in bert.values()}
        for m, key in (("a", "audio"), ("v", "vision")):
            if m in self.sequence_encoders:
                params = [p for p in self.sequence_encoders[m].parameters() if p.requires_grad]
                taken.update(id(p) for p in params)
                groups.append({"params": params, "lr": float(train_cfg.get(f"train.{key}_lr", lr)),
                               "weight_decay": float(train_cfg.get(f"train.{key}_weight_decay", wd)),
                               "name": f"{key}_encoder"})
        groups.append({"params": [p for p in self.parameters() if p.requires_grad and id(p) not in taken],
                       "lr": lr, "weight_decay": wd, "name": "other"})
        return {"main": [g for g in groups if g["params"]]}

    def _restoration_view(self, batch: Batch) -> Batch | None:
        """The masked view DLFR learns from: the protocol's, else one drawn here (`self_drop_rate`), else None."""
        if not self.cfg.dlfr:
            return None
        if batch.missing is not None:
            return batch
        rate = self.cfg.self_drop_rate
        if rate <= 0:
            return None
        drops, complete, values = {}, {}, {}
        for m in self.modalities:
            x, real = batch.modality(m)
            ids = m == "t" and self._text_as_ids()
            drops[m] = random_drop_mask(real.bool(), rate, keep_ends=ids)
            complete[m] = x
            unk = int(self.spec.special_ids.get("unk", 0)) if ids else None
            field = {"a": "audio", "v": "vision"}.get(m, "text_ids" if ids else "text_feats")
            values[field] = drop_positions(x, drops[m], unk_id=unk)
        return dataclasses.replace(batch, missing=MissingView(drop=drops, complete=complete), **values)

    def _plain_token_embedding(self) -> bool:
        """Whether text is token ids through a trainable embedding (no contextual encoder)."""
        return self.spec.text_kind == "tokens" and getattr(self.text_input, "encoder", None) is None

    def _text_as_ids(self) -> bool:
        """Whether the batch's text is token ids (plain tokens, or a fine-tuned encoder's input)."""
        return self.spec.text_kind == "tokens" or getattr(self.text_input, "encoder", None) is not None

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        masked = self._restoration_view(batch)
        if masked is None:  # the complete setting (Sec. 3.6) or EMT without DLFR: L = L_task
            with ctx.autocast():
                loss = ctx.loss_fn(self._encode(batch).pred, batch.y)
            ctx.backward(loss)
            ctx.step()
            return {"task": float(loss.detach()), "total": float(loss.detach())}
        cfg = self.cfg
        with ctx.autocast():
            enc_m = self._encode(masked)
            task = ctx.loss_fn(enc_m.pred, batch.y)
            loss = task
            logged = {"task": float(task.detach())}
            enc_c = self._encode(masked.complete_view()) if cfg.attraction_weight > 0 else None
            if cfg.recon_weight > 0:
                recon = self._reconstruction(masked, enc_m, enc_c)
                loss = loss + cfg.recon_weight * recon
                logged["recon"] = float(recon.detach())
            if enc_c is not None:
                attraction = self._attraction(enc_m, enc_c) + ctx.loss_fn(enc_c.pred, batch.y)
                loss = loss + cfg.attraction_weight * attraction
                logged["attraction"] = float(attraction.detach())
        ctx.backward(loss)
        ctx.step()
        logged["total"] = float(loss.detach())
        return logged

    def _reconstruction(self, masked: Batch, enc_m: Encoding, enc_c: Encoding | None) -> torch.Tensor:
        """L_recon (eq. 11): decoders on the masked view's Z_m against the complete inputs at dropped positions."""
        complete = masked.complete_view()
        total = enc_m.pred.new_zeros(())
        for m in self.modalities:
            dropped = masked.drop_mask(m)
            if dropped is None:
                continue
            if m == "t":  # target: the complete view's text-encoder output after [CLS], detached (reference code)
                if enc_c is not None:
                    target = enc_c.text_sequence
                else:
                    with torch.no_grad():
                        target = self.text_input(complete)[0].float()[:, 1:]
                target, dropped = target.detach(), dropped[:, 1:]
            else:
                target = complete.modality(m)[0]
            total = total + masked_smooth_l1(self.decoders[m](enc_m.local[m]), target, dropped.bool())
        return total

    def _attraction(self, enc_m: Encoding, enc_c: Encoding) -> torch.Tensor:
        """The representation terms of L_attr (eqs. 13-14): symmetric SimSiam, or plain negative cosine."""
        total = enc_m.pred.new_zeros(())
        for key in ("g", *self.modalities):
            masked, complete = enc_m.utterance[key], enc_c.utterance[key]
            if self.cfg.attraction == "cosine":
                total = total - F.cosine_similarity(masked, complete, dim=-1).mean()
                continue
            if masked.shape[0] < 2:  # BatchNorm needs two samples
                continue
            p, q = self.projectors[key], self.predictors[key]
            z_m, z_c = p(masked), p(complete)
            total = total + 0.5 * (negative_cosine(q(z_m), z_c) + negative_cosine(q(z_c), z_m))
        return total
