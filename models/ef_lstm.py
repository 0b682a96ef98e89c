"""`ef_lstm`: early-fusion LSTM.

Paper: the standard early-fusion baseline of the MSA literature (e.g. Zadeh et al., "Memory Fusion
Network for Multi-view Sequential Learning", AAAI 2018, baseline "EF-LSTM"; Tsai et al.,
"Multimodal Transformer for Unaligned Multimodal Language Sequences", ACL 2019, Table 1): the
word-aligned features of all modalities are concatenated at every time step and read by one
LSTM. Reference code followed: MMSA (thuiar/MMSA, src/MMSA/models/singleTask/EF_LSTM.py, trainer
trains/singleTask/EF_LSTM.py), the form whose numbers the M3SA and MICA tables quote.

Architecture (as in MMSA):
- input: text, audio and vision features concatenated per time step (word-aligned input,
  `data.aligned=true`; MMSA's config sets need_data_aligned);
- a BatchNorm1d whose channels are the time steps (MMSA: `BatchNorm1d(seq_len)` on (B, T, D)):
  each position is normalised with statistics over the batch and the feature axis;
- an LSTM of `num_layers` layers and width `hidden`, dropout `dropout` between layers;
- its last layer's final hidden state, dropout, Linear+ReLU (width `hidden`), dropout, Linear to
  the output (no output squashing).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "ef_lstm",
datasetParams (mosi = the defaults; mosei; sims): hidden_dims -> hidden, num_layers, dropout,
batch_size, learning_rate, weight_decay; commonParams early_stop 8 -> patience. Trainer: Adam with
weight decay, L1 loss (regression) / cross-entropy (classification).

Deviations:
- Padding is masked. The LSTM runs over the real steps only (packed sequence) and is read at the
  last real step; MMSA runs it over the padding and reads the state after it. The time-step
  BatchNorm takes its statistics over real entries only (MMSA's include the padding zeros) and
  leaves a step's running statistics alone in a batch where no sample reaches it.
- The time axis is the longest of the present modalities' `max_lens` (all equal on aligned data;
  MMSA's `seq_lens` after its avg-pool AlignSubNet, 50 on MOSI). A step is real when any modality
  is real there, and each modality is zero where its own mask is False. On word-aligned data
  (every modality has the text's mask) this is plain per-step concatenation; on unaligned data
  it is well defined but meaningless, so the class declares `NEEDS_ALIGNED` and planning refuses
  unaligned datasets (MMSA would instead average-pool audio and vision to the text length).
- Text enters through `TextInput`: features pass through (MMSA: the 768-d BERT features);
  token ids go through a trainable embedding of width `token_embed_dim` until the Hugging Face
  TextEncoder lands.
- Any non-empty subset of modalities: the concatenation runs over the present ones (MMSA always
  takes all three).
- Multilabel head (IEMOCAP): 4 logits; MMSA has none. Classification uses the regression presets
  (MMSA's current config has one file for both modes).
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODALITIES, MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.subnets import lstm_last_state, output_width


@dataclass(frozen=True)
class EFLSTMConfig:
    # MMSA config_regression.json "ef_lstm" / "mosi": hidden_dims, num_layers, dropout
    hidden: int = 128
    num_layers: int = 4
    dropout: float = 0.5
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


class TimeStepBatchNorm(nn.Module):
    """BatchNorm with one channel per time step (MMSA's `BatchNorm1d(seq_len)` on (B, T, D)),
    statistics over the real entries of each step only."""

    def __init__(self, num_steps: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_steps))
        self.bias = nn.Parameter(torch.zeros(num_steps))
        self.register_buffer("running_mean", torch.zeros(num_steps))
        self.register_buffer("running_var", torch.ones(num_steps))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), mask: (B, T) -> (B, T, D), zero on padding
        t = x.shape[1]
        real = mask[..., None]
        x = torch.where(real, x, torch.zeros((), dtype=x.dtype, device=x.device))
        if self.training:
            w = real.to(x.dtype)
            count = w.sum(dim=(0, 2)) * x.shape[2]  # (T,) real entries per step
            mean = (x * w).sum(dim=(0, 2)) / count.clamp_min(1)
            var = ((x - mean[None, :, None]) ** 2 * w).sum(dim=(0, 2)) / count.clamp_min(1)
            with torch.no_grad():
                seen = count > 1
                unbiased = var * count / (count - 1).clamp_min(1)
                rm, rv = self.running_mean[:t], self.running_var[:t]
                rm.copy_(torch.where(seen, (1 - self.momentum) * rm + self.momentum * mean, rm))
                rv.copy_(torch.where(seen, (1 - self.momentum) * rv + self.momentum * unbiased, rv))
        else:
            mean, var = self.running_mean[:t], self.running_var[:t]
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        y = y * self.weight[None, :t, None] + self.bias[None, :t, None]
        return torch.where(real, y, torch.zeros((), dtype=y.dtype, device=y.device))


@MODELS.register()
class EFLSTM(MSAModel):
    name: ClassVar[str] = "ef_lstm"
    config_cls: ClassVar[type] = EFLSTMConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # MMSA config_regression.json "ef_lstm" / "mosi"; early_stop 8
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 32,
        "train.weight_decay": 0.005,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # MMSA config_regression.json "ef_lstm" datasetParams
        "mosi": {"model.hidden": 128, "model.num_layers": 4, "model.dropout": 0.5,
                 "train.batch_size": 32, "train.lr": 1e-3, "train.weight_decay": 0.005},
        "mosei": {"model.hidden": 256, "model.num_layers": 2, "model.dropout": 0.4,
                  "train.batch_size": 128, "train.lr": 5e-3, "train.weight_decay": 1e-4},
        "sims": {"model.hidden": 32, "model.num_layers": 3, "model.dropout": 0.5,
                 "train.batch_size": 128, "train.lr": 5e-4, "train.weight_decay": 1e-3},
    }

    def __init__(self, cfg: EFLSTMConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("ef_lstm needs at least one modality")
        self.order = tuple(m for m in MODALITIES if m in spec.modalities)  # MMSA: text, audio, vision
        widths = {m: int(spec.dims[m]) for m in self.order if m != "t"}
        if "t" in self.order:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            widths["t"] = self.text_input.out_dim
        self.num_steps = max(int(spec.max_lens[m]) for m in self.order)
        self.norm = TimeStepBatchNorm(self.num_steps)
        self.lstm = nn.LSTM(sum(widths.values()), cfg.hidden, num_layers=cfg.num_layers,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, output_width(spec))

    @classmethod
    def tiny(cls) -> EFLSTMConfig:
        return EFLSTMConfig(hidden=8, num_layers=2, dropout=0.1, token_embed_dim=8)

    def _fused_input(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step concatenation on a common time axis: (B, T, sum D_m) and its (B, T) mask."""
        parts, masks = [], []
        for m in self.order:
            if m == "t":
                x, mask = self.text_input(batch)
            else:
                x, mask = batch.modality(m)
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            pad = self.num_steps - x.shape[1]
            if pad < 0:
                raise ValueError(f"ef_lstm: modality {m} has {x.shape[1]} steps, more than the input spec's "
                                 f"{self.num_steps}")
            mask = mask.bool()
            x = torch.where(mask[..., None], x.float(), torch.zeros((), device=x.device))
            parts.append(F.pad(x, (0, 0, 0, pad)))
            masks.append(F.pad(mask, (0, pad), value=False))
        joint = torch.stack(masks).any(dim=0)
        return torch.cat(parts, dim=-1), joint

    def forward(self, batch: Batch) -> ModelOutput:
        x, mask = self._fused_input(batch)  # (B, T, D_t + D_a + D_v), (B, T)
        x = self.norm(x, mask)
        h = self.dropout(lstm_last_state(self.lstm, x, mask))  # (B, hidden)
        z = self.dropout(F.relu(self.linear(h)))
        out = self.out(z)  # (B, 1) | (B, C)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        return ModelOutput(pred=out, features={"fusion": h})
