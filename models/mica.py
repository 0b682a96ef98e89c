"""`mica`: Modality-Invariant Crossmodal Attention (re-implementation from the paper; no public code).

Paper: T. Liang, G. Lin, L. Feng, Y. Zhang, F. Lv, "Attention is not Enough: Mitigating the
Distribution Discrepancy in Asynchronous Multimodal Sequence Fusion", ICCV 2021.
Reference code: none is public. This is a re-implementation from the paper's text (Sec. 3.4,
Table 1); where the paper is silent it follows the MulT code it builds on
(yaohungt/Multimodal-Transformer, main.py and src/models.py), read for facts. The transformer
layers are the shared ones in `msabench.models.layers.transformer`.

Architecture (Sec. 3.4, Fig. 2):
- per modality a 1-D temporal convolution (no bias, no padding, kernel `conv_kernel_t/a/v`) to
  width `embed_dim` (skipped when the widths are equal, as in MulT), then sqrt(d) scaling,
  sinusoidal positions of the real steps and embedding dropout (MulT's embedding); the text input
  is dropped out before its convolution (`text_dropout`), as MulT's code does
  (`F.dropout(x_l, p=embed_dropout)` in MULTModel.forward);
- `layers` (D) cross-modal layers. In layer i every ordered pair s -> t has its own cross-modal
  attention block CA^[i]_{s->t} (a pre-LN MulT layer: the target's sequence Z_t^[i] gives the
  queries, the source's Z_s^[i] the keys and values); the two blocks that share a target are merged
  by the gate G = sigmoid(Z_{s1->t} W_{s1->t} + Z_{s2->t} W_{s2->t} + b_t),
  Z_t^[i+1] = G * Z_{s1->t} + (1 - G) * Z_{s2->t}, at EVERY layer (W: d x d, b_t: T_t x d, one
  per position as printed; `gate_bias=channel`: one d-vector for all positions); s1, s2 in t, a, v
  order. Z^[i+1] of every modality feeds layer i+1 as target and as source (`sources=input`: the
  sources stay Z^[0], as in MulT's cross-modal transformers);
- per modality a final LayerNorm, then a self-attention transformer of max(D, `memory_min_layers`)
  layers at width d (MulT's memory), its last real step; the three concatenated (3d);
- MulT's head: x + Linear(dropout(ReLU(Linear(x)))), then Linear to the output.

Losses (Sec. 3.4), L = L_p + alpha L_m + beta L_e, computed in `training_step` from the per-layer
traces (queries, keys, attention probabilities) of every cross-modal block:
- L_m (marginal alignment): for every block s -> t and layer i, the MMD between the keys k_s
  (every real source step of the batch) and the queries q_t (every real target step), summed over
  blocks and layers. Kernel: the multi-kernel Gaussian of DAN (Long et al., ICML 2015, the paper's
  ref. [10] for MMD): `mmd_kernels` (5) Gaussians exp(-||x - y||^2 / s_k) with bandwidths
  s_k = s * `mmd_kernel_mul`^(k - kernels//2), k = 0..4 (multiplier 2: s/4 ... 4s), where s is the
  mean pairwise squared distance of the pooled keys and queries, detached (DAN's choice: the family
  spans two octaves either side of the data's own scale, so the test stays sensitive whether the
  two sets are far apart early in training or close late). The biased (V-statistic) estimate, as
  the paper's empirical formula.
- L_e (propagated element-level alignment, eq. 2): per block, layer, sample and head, W^[i] marks
  the attention probabilities at or above gamma, the value ranked tau * T_s * T_t (real lengths) in
  that head's probability matrix; V^[i] = union of W^[0..i] of the same block and head (the
  propagation); d = sum V * ||q_n - k_m||^2 over the head's query/key slices, divided by sum V and
  averaged over heads (`element_norm=pairs`, see Deviations; `element_norm=sum`: as printed, summed
  over the matched pairs and the heads). With `propagate=false`, V^[i] = W^[i] (Table 5, last row).
- `align_warmup_epochs` (not in the paper; 0 = the paper): alpha and beta ramp linearly from 0 to
  their values over that many epochs (per optimisation step).
- `alpha=0` skips the MMD term, `beta=0` the element-level term (Table 5's rows: variants
  `mica@backbone` = both off, `mica@mmd` = MMD only, `mica@no-propagation`).

Defaults and presets: Table 1 of the paper. Defaults = the CMU-MOSI column; PRESETS mosi, mosei,
iemocap: batch size, epochs, learning rate, d (`embed_dim`), heads, tau, alpha, beta, kernel sizes
(L/V/A -> conv_kernel_t/v/a), D (`layers`), Adam. Not in the paper, taken from MulT's main.py
defaults (MICA's backbone is MulT's code with the gate added): dropouts attn 0.1 (text source) /
0.0 (audio, vision sources), relu 0.1, res 0.1, output 0.0; grad-norm clip 0.8 (train.clip; also
MulT's Table 5, CMU-MOSI); ReduceLROnPlateau(factor 0.1, patience `when` 20) on the validation loss;
MulT's future mask on; `memory_min_layers` 3 (MulT's memory networks: max(nlevels, 3) layers).
Embedding dropout 0.2 (`embed_dropout`) and text-input dropout 0.2 (`text_dropout`): MulT's Table 5,
CMU-MOSI, "textual embedding dropout" (main.py's default 0.25 is one value for both; MulT's code
applies it to the text input and to every transformer's embedding).

Synthetic suite (issue 14; not the paper, and not a default: the presets above keep Table 1). On
`synth-mosi` (aligned, data.scale 0.25: 321 training samples, the 10-epoch cap) Table 1's batch 64
gives 60 optimiser steps, too few for the backbone itself, and beta L_e (~50 at the first step
against L_p ~1.2) shrinks the queries and keys onto each other before the attention has formed. The
recipe that closes half the Acc-2 gap to the invariant probe there is a visible override:
`--model mica:train.batch_size=16,model.beta=0.01` (the backbone at batch 16:
`mica@backbone:train.batch_size=16`): Acc-2 has0 69.57 +- 3.20 over seeds 1-3 (every seed above the
half-gap 64.64; the backbone 73.64 +- 5.59). Seed-1 sweep of beta at batch 16: 0.5 58.7, 0.1 60.5,
0.05 68.0 (3 seeds 65.12 +- 4.54), 0.01 73.3, 0 (`mica@mmd`) 71.5 (3 seeds 68.99 +- 2.20); a 3-epoch
ramp of the weights (`align_warmup_epochs=3`) at beta 0.5: 61.0; beta 0.05 or 0.01 at batch 64: 58.1. At beta 0.5 the
cross-modal attention ends exactly uniform (entropy 1.000 of its maximum; the backbone 0.957). The
paper's Fig. 3 (beta's sensitivity) is not in our copy of the text, so whether 0.01 lies in its
range is unknown; with L_e averaged over the 24 block-layer terms too, beta 0.5 would equal 0.021 here.

Deviations (a re-implementation: every choice the paper leaves open is listed):
- No public code exists; numbers not in Table 1 come from MulT's code (above).
- The gate bias b_t has one row per position of the padded target length at the model's
  InputSpec (the paper: T_t x d); positions past a batch's length are simply not used.
  `gate_bias=channel` (not the paper) shares one row across positions, for asynchronous
  sequences whose positions carry no fixed meaning.
- Whether later layers take the merged Z_s^[i] as the source (our reading of "Z_t^[i+1] will be
  input into the crossmodal attention blocks of the next layer" and of the superscripts of z_s^[i]
  in the MMD) or MulT's fixed low-level source is not stated; we use Z^[i] (`sources=merged`);
  `sources=input` gives MulT's reading.
- Multi-head: MMD compares the heads' concatenated queries/keys (a Gaussian on the concatenation is
  the product of per-head Gaussians); L_e is computed per head from that head's probabilities and
  query/key slices, then averaged over heads. The paper writes a single head.
- Normalisation: L_e as printed is a plain sum, over samples j, layers i, block pairs (s, t) and
  the matched pairs (n, m) of eq. 2; no mean appears anywhere. That sum grows with the batch size
  and T_s * T_t (tau * T_s * T_t = 625 matched pairs per sample and head at T = 50, tau 0.25), which
  would swamp L_p at beta 0.5; we take the weighted mean over each sample's matched pairs
  (sum V d / sum V), the mean over heads and the mean over samples (`element_norm=pairs`, the
  default). `element_norm=sum` keeps the printed sum over matched pairs (and heads), still averaged
  over the batch as L_p is. Both losses are summed over blocks and layers as printed (the paper's
  i = 0..D counts D + 1 layers; the network has D cross-modal layers, we sum over those D). Scale
  with `pairs` at initialisation on the synthetic suite (Table 1's MOSI column): L_e ~ 98 (about 4
  per block and layer: the squared distance of two d_k = 5 wide, unit-scale vectors), L_m ~ 12,
  L_p ~ 1.2, so beta L_e is ~40x L_p in the first epoch.
- `align_warmup_epochs` (default 0, the paper): a linear ramp of alpha and beta, not in the paper;
  a switch for training where the attention has not yet formed when the alignment starts.
- MMD on at most `mmd_max_elements` elements per side, drawn at random each step when a batch has
  more (the kernel matrix of all B x T steps, 24k audio steps on MOSI, does not fit); the estimate
  stays unbiased in expectation over draws up to the V-statistic's diagonal.
- Matches are chosen per sample among real query/key positions; ties at gamma are all kept. Keys a
  query may not see (padding, MulT's future mask) have probability 0 and are never matched unless
  more than the allowed entries are asked for, in which case they are excluded.
- The alignment losses are training-only (forward returns the prediction; eval computes no traces).
- Modality subsets: with two modalities each target has one block and no gate; with one modality
  there is no cross-modal layer, no alignment loss, and the memory runs on the projected sequence.
- IEMOCAP: the harness's 4-logit multi-label head with BCE (MulT's code: 8 logits, per-emotion
  2-way cross-entropy). Classification: a 3-way head.
- Early stopping: the paper trains a fixed number of epochs (Table 1); train.patience equals
  train.epochs, so only the best-validation epoch is selected, as MulT's code does.
- Text: `TextInput` features pass through the temporal conv (the paper: 300-d GloVe); token ids go
  through a trainable embedding of width `token_embed_dim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.transformer import (
    AttentionTrace,
    CrossModalEncoder,
    CrossModalLayer,
    TemporalConv,
    attention_allowed,
    last_real_step,
    real_positions,
    sinusoidal_embedding,
)

MODALITY_ORDER = ("t", "a", "v")


# The string switches and the values each takes, the default first (see MICAConfig for which is the paper's).
SWITCH_VALUES = {"gate_bias": ("position", "channel"), "sources": ("merged", "input"), "element_norm": ("pairs", "sum")}


@dataclass(frozen=True)
class MICAConfig:
    # Table 1, CMU-MOSI column
    embed_dim: int = 40  # feature size d
    num_heads: int = 8  # attention head h
    layers: int = 4  # transformer layer D
    conv_kernel_t: int = 3  # kernel size L
    conv_kernel_a: int = 3  # kernel size A
    conv_kernel_v: int = 3  # kernel size V
    tau: float = 0.25  # selection rate
    alpha: float = 0.8  # weight of L_m (MMD)
    beta: float = 0.5  # weight of L_e (propagated element-level alignment)
    propagate: bool = True  # V^[i] = union of W^[0..i]; false: V^[i] = W^[i] (Table 5)
    # L_e per sample: "pairs" = mean over the matched pairs and heads (ours, see Deviations); "sum" = eq. 2
    # as printed, summed over the matched pairs (and over heads: a single head's d_k-wide distance)
    element_norm: str = "pairs"
    # not in the paper: alpha and beta ramp linearly from 0 over this many epochs (0 = the paper: full from step 1)
    align_warmup_epochs: float = 0.0
    # the gate's b_t: "position" = T_t x d as printed (Sec. 3.4); "channel" = one d-vector shared by positions
    gate_bias: str = "position"
    # sources of layer i > 0: "merged" = Z_s^[i] (our reading of Sec. 3.4); "input" = Z_s^[0] (MulT's fixed
    # low-level sources)
    sources: str = "merged"
    # MMD kernels (DAN, Long et al. 2015): Gaussian bandwidths s * mul^(k - n//2), k < n
    mmd_kernels: int = 5
    mmd_kernel_mul: float = 2.0
    mmd_max_elements: int = 512  # per side and step (memory bound; see Deviations)
    # MulT's main.py defaults (not in the paper)
    attn_dropout: float = 0.1  # text as source, and the self-attention transformers
    attn_dropout_a: float = 0.0
    attn_dropout_v: float = 0.0
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    output_dropout: float = 0.0
    # MulT's Table 5, CMU-MOSI: textual embedding dropout 0.2; MulT's code uses that one value for every
    # transformer's embedding and for the text input before its conv (main.py's default: 0.25)
    embed_dropout: float = 0.2
    text_dropout: float = 0.2
    future_mask: bool = True  # MulT's attn_mask
    memory_min_layers: int = 3  # MulT's memory networks: max(nlevels, 3) layers
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def mica_preset(batch_size: int, epochs: int, lr: float, d: int, heads: int, tau: float, alpha: float,
                beta: float, kernels_lva: tuple[int, int, int], layers: int) -> dict[str, Any]:
    """One column of Table 1 (kernel sizes in the paper's L/V/A order)."""
    return {
        "train.batch_size": batch_size, "train.epochs": epochs, "train.patience": epochs, "train.lr": lr,
        "model.embed_dim": d, "model.num_heads": heads, "model.tau": tau, "model.alpha": alpha, "model.beta": beta,
        "model.conv_kernel_t": kernels_lva[0], "model.conv_kernel_v": kernels_lva[1],
        "model.conv_kernel_a": kernels_lva[2], "model.layers": layers,
    }


class MergeGate(nn.Module):
    """Sec. 3.4: G = sigmoid(Z1 W1 + Z2 W2 + b), Z = G * Z1 + (1 - G) * Z2; b has one row per position
    (`max_len` rows, as printed: T_t x d) or, with `per_position=False`, one row shared by all positions."""

    def __init__(self, dim: int, max_len: int, per_position: bool = True):
        super().__init__()
        self.per_position = per_position
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(max_len if per_position else 1, dim))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        # z1, z2: (B, T, d) with T <= max_len
        t = z1.shape[1]
        if self.per_position and t > self.bias.shape[0]:
            raise ValueError(f"sequence of {t} steps is longer than the {self.bias.shape[0]} the model was built for")
        bias = self.bias[:t] if self.per_position else self.bias  # (T, d) | (1, d)
        gate = torch.sigmoid(self.w1(z1) + self.w2(z2) + bias)
        return gate * z1 + (1 - gate) * z2


# -- alignment losses -------------------------------------------------------------------------------

def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, kernels: int = 5, kernel_mul: float = 2.0) -> torch.Tensor:
    """Biased MMD^2 between (n, E) and (m, E) with DAN's multi-kernel Gaussian (bandwidth family
    around the mean pairwise squared distance of the pooled samples, detached)."""
    n = x.shape[0]
    pooled = torch.cat([x, y], dim=0).float()  # (n + m, E)
    sq = torch.cdist(pooled, pooled).pow(2)  # (n + m, n + m)
    count = pooled.shape[0]
    base = sq.detach().sum() / max(count * count - count, 1)
    base = base.clamp_min(1e-8)
    kernel = sum(torch.exp(-sq / (base * kernel_mul ** (k - kernels // 2))) for k in range(kernels))
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def matched_pairs(probs: torch.Tensor, query_mask: torch.Tensor, key_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """W^[i]: (B, H, Tq, Tk) bool, the probabilities at or above the one ranked tau * T_s * T_t.

    Ranked per sample and head among the real query/key pairs (T_t, T_s: real lengths).
    """
    b, h, tq, tk = probs.shape
    real = query_mask[:, None, :, None] & key_mask[:, None, None, :]  # (B, 1, Tq, Tk)
    n_real = (query_mask.long().sum(1) * key_mask.long().sum(1))  # (B,)
    k = (tau * n_real.float()).floor().long().clamp_min(1)  # (B,) pairs to keep
    ranked = probs.detach().float().masked_fill(~real, -1.0).reshape(b, h, tq * tk)
    ordered = ranked.sort(dim=-1, descending=True).values  # (B, H, Tq*Tk)
    index = (k - 1).clamp_max(tq * tk - 1)[:, None, None].expand(b, h, 1)
    gamma = ordered.gather(-1, index)  # (B, H, 1)
    return (ranked >= gamma).reshape(b, h, tq, tk) & real & (probs.detach() > 0)


def element_distance(queries: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, num_heads: int,
                     norm: str = "pairs") -> torch.Tensor:
    """Eq. 2 per sample over each head's query/key slices: `norm="pairs"`, the mean over heads of
    sum V ||q_n - k_m||^2 / sum V; `norm="sum"`, sum V ||q_n - k_m||^2 summed over heads (as printed).

    queries (B, Tq, E), keys (B, Tk, E), weights (B, H, Tq, Tk) bool -> (B,)."""
    b, tq, e = queries.shape
    qh = queries.float().view(b, tq, num_heads, e // num_heads).transpose(1, 2)  # (B, H, Tq, Dh)
    kh = keys.float().view(b, keys.shape[1], num_heads, e // num_heads).transpose(1, 2)  # (B, H, Tk, Dh)
    dist = torch.cdist(qh, kh).pow(2)  # (B, H, Tq, Tk)
    w = weights.to(dist.dtype)
    summed = (w * dist).sum(dim=(-1, -2))  # (B, H)
    if norm == "sum":
        return summed.sum(dim=1)
    return (summed / w.sum(dim=(-1, -2)).clamp_min(1.0)).mean(dim=1)


def propagated(matches: list[torch.Tensor], propagate: bool) -> list[torch.Tensor]:
    """V^[i] per layer: the union of W^[0..i] (propagation), or W^[i] itself."""
    if not propagate:
        return list(matches)
    out, union = [], None
    for w in matches:
        union = w if union is None else (union | w)
        out.append(union)
    return out


def _real_rows(x: torch.Tensor, mask: torch.Tensor, limit: int) -> torch.Tensor:
    """(B, T, E) at the real steps -> (n, E), at most `limit` rows drawn at random."""
    rows = x[mask]
    if limit > 0 and rows.shape[0] > limit:
        rows = rows[torch.randperm(rows.shape[0], device=rows.device)[:limit]]
    return rows


@dataclass
class MICAEncoding:
    fused: torch.Tensor  # (B, 3d) for three modalities
    last: dict[str, torch.Tensor]  # modality -> (B, d)
    traces: dict[str, list[AttentionTrace]]  # "t_with_a" (target t, source a) -> one trace per layer


@MODELS.register()
class MICA(MSAModel):
    name: ClassVar[str] = "mica"
    config_cls: ClassVar[type] = MICAConfig
    impl_version: ClassVar[int] = 2  # 2: the text-input dropout of MulT's code
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # Table 1, CMU-MOSI
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 64,
        "train.epochs": 120,
        "train.patience": 120,  # no early stopping: best-validation epoch of a fixed schedule
        # MulT main.py: clip 0.8 (clip_grad_norm_), ReduceLROnPlateau(patience=when=20, factor=0.1)
        "train.clip": 0.8,
        "train.scheduler": "plateau",
        "train.scheduler_patience": 20,
        "train.scheduler_factor": 0.1,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mica_preset(64, 120, 1e-3, 40, 8, 0.25, 0.8, 0.5, (3, 3, 3), 4),
        "mosei": mica_preset(64, 120, 5e-4, 40, 10, 0.3, 0.8, 0.5, (3, 3, 3), 6),
        "iemocap": mica_preset(32, 80, 1e-3, 40, 10, 0.25, 0.7, 0.5, (3, 3, 5), 4),
    }
    # Table 5's rows
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "backbone": {"model.alpha": 0.0, "model.beta": 0.0},
        "mmd": {"model.beta": 0.0},
        "no-propagation": {"model.propagate": False},
    }

    def __init__(self, cfg: MICAConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("mica needs at least one modality")
        for key, allowed in SWITCH_VALUES.items():
            if getattr(cfg, key) not in allowed:
                raise ValueError(f"model.{key} must be {' or '.join(map(repr, allowed))}, got {getattr(cfg, key)!r}")
        if cfg.align_warmup_epochs < 0:
            raise ValueError(f"model.align_warmup_epochs must be >= 0, got {cfg.align_warmup_epochs}")
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
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)

        self.sources = {t: tuple(s for s in self.modalities if s != t) for t in self.modalities}
        self.blocks = nn.ModuleList()  # layer i -> "{t}_with_{s}" -> CA^[i]_{s->t}
        self.gates = nn.ModuleList()  # layer i -> t -> gate (targets with two sources)
        for _ in range(cfg.layers if len(self.modalities) > 1 else 0):
            self.blocks.append(nn.ModuleDict({
                f"{t}_with_{s}": CrossModalLayer(d, cfg.num_heads, source_attn_dropout[s], cfg.relu_dropout,
                                                 cfg.res_dropout)
                for t, sources in self.sources.items() for s in sources}))
            self.gates.append(nn.ModuleDict({
                t: MergeGate(d, self._projected_len(t), per_position=cfg.gate_bias == "position")
                for t, sources in self.sources.items() if len(sources) == 2}))
        self.cross_norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in self.modalities} if self.blocks else {})
        memory_layers = max(cfg.layers, cfg.memory_min_layers)
        self.memory = nn.ModuleDict({
            m: CrossModalEncoder(d, cfg.num_heads, memory_layers, attn_dropout=cfg.attn_dropout,
                                 relu_dropout=cfg.relu_dropout, res_dropout=cfg.res_dropout,
                                 embed_dropout=cfg.embed_dropout, future_mask=cfg.future_mask)
            for m in self.modalities})
        combined = d * len(self.modalities)
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.output_dropout = nn.Dropout(cfg.output_dropout)
        self.out_layer = nn.Linear(combined, 1 if spec.task == "regression" else int(spec.n_outputs))

    def _projected_len(self, m: str) -> int:
        proj = self.proj[m]
        t = int(self.spec.max_lens[m])
        return max(t, proj.kernel) - proj.kernel + 1 if isinstance(proj, TemporalConv) else t

    @classmethod
    def tiny(cls) -> MICAConfig:
        return MICAConfig(embed_dim=8, num_heads=2, layers=1, memory_min_layers=1, attn_dropout=0.1,
                          attn_dropout_a=0.1, attn_dropout_v=0.1, relu_dropout=0.1, res_dropout=0.1,
                          embed_dropout=0.1, text_dropout=0.1, output_dropout=0.1, token_embed_dim=8)

    # -- forward ------------------------------------------------------------------------------------

    def embed(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Z^[0] per modality: (text: input dropout) temporal conv, sqrt(d) scaling, positions, embedding dropout."""
        z, masks = {}, {}
        scale = math.sqrt(self.cfg.embed_dim)
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)
                x = self.text_dropout(x)  # MulT's code: F.dropout(x_l, embed_dropout) before the conv
            else:
                x, mask = batch.modality(m)
                x = x.float()
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            mask = mask.bool()
            proj = self.proj[m]
            if isinstance(proj, TemporalConv):
                x, mask = proj(x, mask)  # (B, T'_m, d)
            else:
                x = x * mask.unsqueeze(-1).to(x.dtype)
            x = scale * x + sinusoidal_embedding(real_positions(mask), self.cfg.embed_dim).to(x.dtype)
            z[m], masks[m] = self.embed_dropout(x), mask
        return z, masks

    def encode(self, batch: Batch, return_traces: bool = False) -> MICAEncoding:
        z, masks = self.embed(batch)
        low_level = z  # Z^[0], the sources of every layer with sources="input"
        allowed = {(t, s): attention_allowed(masks[t], masks[s], self.cfg.future_mask)
                   for t, sources in self.sources.items() for s in sources}  # (B, T_t, T_s)
        traces: dict[str, list[AttentionTrace]] = {}
        for blocks, gates in zip(self.blocks, self.gates):
            nxt = {}
            for t, sources in self.sources.items():
                reinforced = []
                for s in sources:
                    key = f"{t}_with_{s}"
                    source = z[s] if self.cfg.sources == "merged" else low_level[s]  # (B, T_s, d)
                    out, q, k, probs = blocks[key](z[t], allowed[(t, s)], source)  # (B, T_t, d)
                    reinforced.append(out)
                    if return_traces:
                        traces.setdefault(key, []).append(AttentionTrace(
                            queries=q, keys=k, probs=probs, output=out, query_mask=masks[t], key_mask=masks[s]))
                nxt[t] = gates[t](*reinforced) if len(reinforced) == 2 else reinforced[0]
            z = nxt
        last = {}
        for m in self.modalities:
            h = self.cross_norm[m](z[m]) if self.blocks else z[m]
            mem = self.memory[m](h, masks[m]).hidden  # (B, T_m, d)
            last[m] = last_real_step(mem, masks[m])  # (B, d)
        fused = torch.cat([last[m] for m in self.modalities], dim=-1)  # (B, n_modalities * d)
        return MICAEncoding(fused=fused, last=last, traces=traces)

    def head(self, fused: torch.Tensor) -> torch.Tensor:
        residual = self.proj2(self.output_dropout(F.relu(self.proj1(fused))))
        out = self.out_layer(fused + residual)  # (B, 1) | (B, C)
        return out.squeeze(-1) if self.spec.task == "regression" else out

    def forward(self, batch: Batch) -> ModelOutput:
        enc = self.encode(batch)
        features = dict(enc.last)
        features["fusion"] = enc.fused
        return ModelOutput(pred=self.head(enc.fused), features=features)

    # -- alignment losses -----------------------------------------------------------------------------

    def alignment_losses(self, traces: dict[str, list[AttentionTrace]]) -> dict[str, torch.Tensor]:
        """{"mmd": L_m, "element": L_e}, each present only when its weight is non-zero."""
        cfg = self.cfg
        losses: dict[str, torch.Tensor] = {}
        if not traces:
            return losses
        if cfg.alpha > 0:
            terms = [gaussian_mmd(_real_rows(tr.keys, tr.key_mask, cfg.mmd_max_elements),
                                  _real_rows(tr.queries, tr.query_mask, cfg.mmd_max_elements),
                                  cfg.mmd_kernels, cfg.mmd_kernel_mul)
                     for per_layer in traces.values() for tr in per_layer]
            losses["mmd"] = torch.stack(terms).sum()
        if cfg.beta > 0:
            terms = []
            for per_layer in traces.values():
                matches = [matched_pairs(tr.probs, tr.query_mask, tr.key_mask, cfg.tau) for tr in per_layer]
                for tr, weights in zip(per_layer, propagated(matches, cfg.propagate)):
                    terms.append(element_distance(tr.queries, tr.keys, weights, cfg.num_heads,
                                                  cfg.element_norm).mean())
            losses["element"] = torch.stack(terms).sum()
        return losses

    def alignment_ramp(self, ctx: Any) -> float:
        """The share of alpha and beta in force at this step: 1 (the paper) unless `align_warmup_epochs`
        > 0, then (steps taken) / (warm-up steps), linear, capped at 1."""
        warmup = self.cfg.align_warmup_epochs
        if warmup <= 0:
            return 1.0
        return min(1.0, ctx.step_index / (warmup * max(ctx.steps_per_epoch, 1)))

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        ramp = self.alignment_ramp(ctx)
        with ctx.autocast():
            enc = self.encode(batch, return_traces=True)
            pred = self.head(enc.fused)
            task = ctx.loss_fn(pred, batch.y)
            aligned = self.alignment_losses(enc.traces)
            loss = task
            if "mmd" in aligned:
                loss = loss + ramp * self.cfg.alpha * aligned["mmd"]
            if "element" in aligned:
                loss = loss + ramp * self.cfg.beta * aligned["element"]
        ctx.backward(loss)
        ctx.step()
        logged = {"task": float(task.detach())}
        logged.update({k: float(v.detach()) for k, v in aligned.items()})
        logged["total"] = float(loss.detach())
        if self.cfg.align_warmup_epochs > 0:
            logged["align_ramp"] = ramp
        return logged
