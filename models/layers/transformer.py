"""Transformer blocks of the Multimodal Transformer family (MulT and the models built on it).

Reference: Y.-H. H. Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language
Sequences", ACL 2019, Sec. 3; their code (yaohungt/Multimodal-Transformer, modules/transformer.py,
modules/multihead_attention.py, modules/position_embedding.py, all adapted from fairseq) and its
copy in MMSA 2.2.1 (src/MMSA/models/subNets/transformers_encoder/). Written from those facts:

- `sinusoidal_embedding`: the tensor2tensor form fairseq uses: the first half of the channels
  sin(p * w_i), the second half cos(p * w_i), w_i = 10000^(-i / (half - 1)); an odd width gets a
  trailing zero channel. Real positions are numbered from 1; padding gets the zero vector (fairseq
  reserves position 0 for its padding index).
- `TemporalConv`: MulT's 1-D temporal projection (Conv1d over time, no padding, no bias) on zeroed
  padding, with the mask of the steps a valid convolution keeps (MulT and MICA).
- `CrossModalLayer`: one pre-LN layer (the tensor2tensor ordering the reference code hard-codes:
  `normalize_before = True`): LayerNorm -> multi-head attention -> residual dropout -> add, then
  LayerNorm -> Linear(E, 4E) -> ReLU -> ReLU dropout -> Linear(4E, E) -> residual dropout -> add.
  In a cross-modal layer the *same* first LayerNorm normalises the target (queries) and the
  source (keys and values), as in the reference code. Attention-weight dropout is applied to the
  probabilities. Without a source the layer is a self-attention layer.
- `CrossModalEncoder`: sqrt(E) * input + sinusoidal positions, embedding dropout (the same for the
  source sequence), a stack of `CrossModalLayer`s, a final LayerNorm. The optional "future" mask
  of MulT (`attn_mask`, on by default in MulT and MMSA) lets query i see key j only when
  j <= i + |T_k - T_q|: causal in self-attention, the two sequences' ends aligned in
  cross-modal attention.

Deviations from the reference code (each one keeps the layer a function of the real positions):
- Key padding masks: padded keys get no attention weight (the reference code has no padding
  mask: padded positions are attended to like real ones). A query row with no visible key gets
  all-zero weights (output: the residual alone) instead of NaN.
- The future mask's offset |T_k - T_q| is computed per sample from the real lengths (the
  reference code uses the padded lengths, the same for every sample of a dataset).
- Positions are numbered over the real positions of each sample from the mask (the reference
  code calls a position "padding" when its first feature channel is exactly 0).
- Attention scores and softmax run in float32 (the reference code does the softmax in float32 and
  casts back, the same thing under autocast).
- q, k, v are three `nn.Linear`s (the reference code: one (3E, E) `in_proj_weight`); same
  parameter count, and the Xavier bound of the stacked matrix is kept (gain sqrt(1/2)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) integer positions -> (..., dim) float32 sinusoids; position 0 -> the zero vector."""
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * -step)
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs  # (..., half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb * (positions > 0).unsqueeze(-1).to(emb.dtype)


def real_positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool mask of real positions -> (B, T) long: 1, 2, ... on real positions, 0 on padding."""
    return torch.cumsum(mask.long(), dim=1) * mask.long()


def lengths_of(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B,) long number of real positions."""
    return mask.long().sum(dim=1)


def attention_allowed(query_mask: torch.Tensor, key_mask: torch.Tensor, future_mask: bool) -> torch.Tensor:
    """(B, Tq, Tk) bool: which key each query may attend to.

    Padded keys never; with `future_mask`, MulT's rule j <= i + |L_k - L_q| on real lengths.
    """
    allowed = key_mask[:, None, :].expand(-1, query_mask.shape[1], -1)
    if future_mask:
        offset = (lengths_of(key_mask) - lengths_of(query_mask)).abs()  # (B,)
        i = torch.arange(query_mask.shape[1], device=key_mask.device)
        j = torch.arange(key_mask.shape[1], device=key_mask.device)
        reach = i[None, :, None] + offset[:, None, None]  # (B, Tq, 1)
        allowed = allowed & (j[None, None, :] <= reach)
    return allowed


def last_real_step(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) and (B, T) bool (real positions first) -> (B, D) at each sample's last real step
    (position 0 when a sample has none)."""
    last = (lengths_of(mask) - 1).clamp_min(0)
    return x[torch.arange(x.shape[0], device=x.device), last]


@dataclass
class AttentionTrace:
    """What one attention layer saw, for alignment losses (MICA) and inspection.

    queries/keys: the projected queries and keys (before the 1/sqrt(d_head) scaling), heads
    concatenated; probs: the attention probabilities per head, before attention dropout (zero on
    keys a query may not see); output: the layer's output sequence; query_mask/key_mask: real
    positions.
    """

    queries: torch.Tensor  # (B, Tq, E)
    keys: torch.Tensor  # (B, Tk, E)
    probs: torch.Tensor  # (B, H, Tq, Tk)
    output: torch.Tensor  # (B, Tq, E)
    query_mask: torch.Tensor  # (B, Tq) bool
    key_mask: torch.Tensor  # (B, Tk) bool


class MultiheadAttention(nn.Module):
    """Scaled dot-product attention over `num_heads` heads with a (B, Tq, Tk) visibility mask."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.attn_dropout = nn.Dropout(attn_dropout)
        # fairseq initialises one stacked (3E, E) matrix with Xavier: keep its bound per block.
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight, gain=math.sqrt(0.5))
            nn.init.zeros_(proj.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor,
                need_probs: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(output, queries, keys, probs); probs is None unless `need_probs`: then the fused kernel
        (`scaled_dot_product_attention`) computes the same attention without materialising them."""
        # query: (B, Tq, E); key, value: (B, Tk, E); allowed: (B, Tq, Tk) bool
        b, tq, e = query.shape
        tk = key.shape[1]
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        qh = q.view(b, tq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Tq, Dh)
        kh = k.view(b, tk, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Tk, Dh)
        vh = v.view(b, tk, self.num_heads, self.head_dim).transpose(1, 2)
        if not need_probs:
            attended = self._fused(qh, kh, vh, allowed)  # (B, H, Tq, Dh)
            return self.out_proj(attended.transpose(1, 2).reshape(b, tq, e)), q, k, None
        scores = torch.matmul(qh.float(), kh.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
        visible = allowed[:, None, :, :]  # (B, 1, Tq, Tk)
        scores = scores.masked_fill(~visible, float("-inf"))
        # A row with no visible key would be all -inf (NaN after softmax): give it zero weights.
        any_visible = visible.any(dim=-1, keepdim=True)
        probs = torch.softmax(scores.masked_fill(~any_visible, 0.0), dim=-1) * any_visible
        attended = torch.matmul(self.attn_dropout(probs).to(vh.dtype), vh)  # (B, H, Tq, Dh)
        out = self.out_proj(attended.transpose(1, 2).reshape(b, tq, e))
        return out, q, k, probs

    def _fused(self, qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """The attention of `forward` in one kernel; a query with no visible key gets zero weights there,
        so here its row sees every key (no NaN) and its output is zeroed afterwards."""
        # qh: (B, H, Tq, Dh); kh, vh: (B, H, Tk, Dh); allowed: (B, Tq, Tk) bool
        any_visible = allowed.any(dim=-1, keepdim=True)  # (B, Tq, 1)
        visible = (allowed | ~any_visible)[:, None]  # (B, 1, Tq, Tk)
        dropout = self.attn_dropout.p if self.training else 0.0
        attended = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=visible, dropout_p=dropout)
        return attended * any_visible[:, None].to(attended.dtype)  # (B, H, Tq, Dh)


class CrossModalLayer(nn.Module):
    """One pre-LN transformer layer; cross-modal when given a source, self-attention otherwise."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0, relu_dropout: float = 0.0,
                 res_dropout: float = 0.0):
        super().__init__()
        self.attn_norm = nn.LayerNorm(embed_dim)  # shared by queries and keys/values (reference code)
        self.attention = MultiheadAttention(embed_dim, num_heads, attn_dropout)
        self.ffn_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc2 = nn.Linear(4 * embed_dim, embed_dim)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.relu_dropout = nn.Dropout(relu_dropout)
        self.res_dropout = nn.Dropout(res_dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, source: torch.Tensor | None = None,
                need_probs: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: (B, Tq, E); source: (B, Tk, E) or None (self-attention); allowed: (B, Tq, Tk).

        Returns (output (B, Tq, E), queries (B, Tq, E), keys (B, Tk, E), probs (B, H, Tq, Tk) or None
        unless `need_probs`).
        """
        h = self.attn_norm(x)
        kv = h if source is None else self.attn_norm(source)
        attended, q, k, probs = self.attention(h, kv, kv, allowed, need_probs)
        x = x + self.res_dropout(attended)
        h = self.relu_dropout(F.relu(self.fc1(self.ffn_norm(x))))
        x = x + self.res_dropout(self.fc2(h))
        return x, q, k, probs


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # (B, Tq, E) after the final LayerNorm
    mask: torch.Tensor  # (B, Tq) bool, real positions
    traces: list[AttentionTrace] | None = None  # one per layer when asked for


class CrossModalEncoder(nn.Module):
    """MulT's TransformerEncoder: embedding scale + positions + dropout, layers, final LayerNorm.

    `forward(x, x_mask)` is a self-attention encoder; `forward(x, x_mask, source, source_mask)` the
    cross-modal transformer "source -> target" of the paper (Fig. 3(b)), target x as queries.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_layers: int, *, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0,
                 future_mask: bool = False, positional: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.embed_scale = math.sqrt(embed_dim)
        self.future_mask = future_mask
        self.positional = positional
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.layers = nn.ModuleList(
            CrossModalLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(embed_dim)

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, E) -> sqrt(E) * x + sinusoidal positions of the real steps, embedding dropout."""
        x = self.embed_scale * x
        if self.positional:
            x = x + sinusoidal_embedding(real_positions(mask), self.embed_dim).to(x.dtype)
        return self.embed_dropout(x)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None, return_traces: bool = False) -> EncoderOutput:
        # x: (B, Tq, E), x_mask: (B, Tq); source: (B, Tk, E), source_mask: (B, Tk)
        if (source is None) != (source_mask is None):
            raise ValueError("give both source and source_mask, or neither")
        h = self.embed(x, x_mask)
        src = None if source is None else self.embed(source, source_mask)
        key_mask = x_mask if source_mask is None else source_mask
        allowed = attention_allowed(x_mask, key_mask, self.future_mask)  # (B, Tq, Tk)
        traces: list[AttentionTrace] | None = [] if return_traces else None
        for layer in self.layers:
            h, q, k, probs = layer(h, allowed, src, need_probs=return_traces)
            if traces is not None:
                traces.append(AttentionTrace(queries=q, keys=k, probs=probs, output=h,
                                             query_mask=x_mask, key_mask=key_mask))
        return EncoderOutput(hidden=self.final_norm(h), mask=x_mask, traces=traces)


class TemporalConv(nn.Module):
    """Conv1d over time (no padding, no bias) on zeroed padding; the real steps that stay real."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, padding=0, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, D_in), mask: (B, T) -> (B, T', E), (B, T') with T' = max(T, k) - k + 1
        x = x * mask.unsqueeze(-1).to(x.dtype)
        if x.shape[1] < self.kernel:
            x = F.pad(x, (0, 0, 0, self.kernel - x.shape[1]))
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)
        valid = (mask.long().sum(dim=1) - self.kernel + 1).clamp_min(1)  # a valid convolution's length
        out_mask = torch.arange(out.shape[1], device=x.device)[None, :] < valid[:, None]
        return out, out_mask
