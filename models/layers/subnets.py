"""MMSA's modality subnetworks (thuiar/MMSA, src/MMSA/models/subNets/FeatureNets.py), shared by
`tfn`, `lf_dnn` and `lmf`, plus the masked LSTM read-out that every LSTM-based plugin uses.

- `PooledSubNet` (MMSA's SubNet): the sequence averaged over its real frames, BatchNorm1d,
  dropout, three Linear+ReLU layers. MMSA's loader averages over the padded length instead
  (zeros included); the plugins list that in their Deviations.
- `TextSubNet` (MMSA's TextSubNet): text through `TextInput`, an LSTM over the real tokens, its
  final hidden state, dropout, one Linear (no activation). As in MMSA, the dropout is forced to 0
  for a one-layer LSTM.
- `lstm_last_state`: an LSTM run over the real positions only (a packed sequence), read out at
  the last real position of each sample. Masks are prefixes (real positions first), as every
  reader writes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from msabench.api import Batch, InputSpec, TextInput, masked_mean

# MMSA's modality order for subnetworks and fusion: audio, vision, text.
FUSION_ORDER = ("a", "v", "t")


def output_width(spec: InputSpec) -> int:
    """Width of a model's last layer: 1 for regression, else one logit per class / label."""
    return 1 if spec.task == "regression" else int(spec.n_outputs)


def lstm_last_state(rnn: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) with a (B, T) prefix mask -> the last layer's final hidden state over each sample's
    real positions, (B, directions * hidden): forward, then backward when bidirectional. A sample
    with no real position reads out after one step."""
    lengths = mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)
    packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
    _, (h_n, _) = rnn(packed)  # h_n: (layers * directions, B, hidden), in the batch's own order
    directions = 2 if rnn.bidirectional else 1
    last = h_n.view(rnn.num_layers, directions, x.shape[0], rnn.hidden_size)[-1]  # (directions, B, hidden)
    return torch.cat(list(last), dim=-1)


def _batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d that falls back to its running statistics on a training batch of one."""
    if norm.training and x.shape[0] == 1:
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            training=False, momentum=0.0, eps=norm.eps)
    return norm(x)


class PooledSubNet(nn.Module):
    """MMSA's SubNet: time mean over real frames, BatchNorm, dropout, 3 x (Linear + ReLU)."""

    def __init__(self, in_size: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_size)
        self.drop = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(in_size, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)
        self.linear_3 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, D), mask: (B, T) -> (B, hidden)
        pooled = masked_mean(x.float(), mask)
        h = self.drop(_batch_norm(self.norm, pooled))
        h = F.relu(self.linear_1(h))
        h = F.relu(self.linear_2(h))
        return F.relu(self.linear_3(h))


class TextSubNet(nn.Module):
    """MMSA's TextSubNet over `TextInput`: LSTM over the real tokens, final state, Linear."""

    def __init__(self, spec: InputSpec, hidden: int, out: int, dropout: float, num_layers: int = 1,
                 token_embed_dim: int = 128):
        super().__init__()
        self.text_input = TextInput(spec, token_embed_dim if spec.text_kind == "tokens" else None)
        if num_layers == 1:
            dropout = 0.0  # as MMSA: no dropout around a one-layer LSTM
        self.rnn = nn.LSTM(self.text_input.out_dim, hidden, num_layers=num_layers, dropout=dropout,
                           batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(hidden, out)

    def forward(self, batch: Batch) -> torch.Tensor:
        x, mask = self.text_input(batch)  # (B, T, D), (B, T)
        return self.linear_1(self.drop(lstm_last_state(self.rnn, x, mask)))  # (B, out)


def build_subnets(cfg: Any, spec: InputSpec) -> nn.ModuleDict:
    """The present modalities' subnetworks (MMSA's FeatureNets), in FUSION_ORDER.

    `cfg` carries MMSA's names: audio_hidden, video_hidden, text_hidden, text_out, the three
    modality dropouts, text_layers and token_embed_dim."""
    nets = nn.ModuleDict()
    for m in FUSION_ORDER:
        if m not in spec.modalities:
            continue
        if m == "a":
            nets[m] = PooledSubNet(int(spec.dims["a"]), cfg.audio_hidden, cfg.audio_dropout)
        elif m == "v":
            nets[m] = PooledSubNet(int(spec.dims["v"]), cfg.video_hidden, cfg.video_dropout)
        else:
            nets[m] = TextSubNet(spec, cfg.text_hidden, cfg.text_out, cfg.text_dropout,
                                 cfg.text_layers, cfg.token_embed_dim)
    return nets


def subnet_widths(cfg: Any, modalities: tuple[str, ...]) -> dict[str, int]:
    """Output width of each present modality's subnetwork, in FUSION_ORDER."""
    widths = {"a": cfg.audio_hidden, "v": cfg.video_hidden, "t": cfg.text_out}
    return {m: int(widths[m]) for m in FUSION_ORDER if m in modalities}


def run_subnets(nets: nn.ModuleDict, batch: Batch) -> dict[str, torch.Tensor]:
    """Each subnetwork on its modality: modality -> (B, width)."""
    out = {}
    for m, net in nets.items():
        if m == "t":
            out[m] = net(batch)
        else:
            x, mask = batch.modality(m)
            out[m] = net(x, mask)
    return out


def mmsa_preset(text: int, audio: int, video: int, text_out: int, post: int,
                 dropouts: tuple[float, float, float, float], **train: Any) -> dict[str, Any]:
    """A preset in the shape of MMSA's config_regression.json entries (tfn, lf_dnn, lf_lstm)."""
    a, v, t, p = dropouts
    preset = {
        "model.text_hidden": text, "model.audio_hidden": audio, "model.video_hidden": video,
        "model.text_out": text_out, "model.post_fusion_dim": post,
        "model.audio_dropout": a, "model.video_dropout": v, "model.text_dropout": t,
        "model.post_fusion_dropout": p,
    }
    preset.update({f"train.{k}": val for k, val in train.items()})
    return preset
