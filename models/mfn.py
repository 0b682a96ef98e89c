"""`mfn`: Memory Fusion Network.

Paper: A. Zadeh, P. P. Liang, N. Mazumder, S. Poria, E. Cambria, L.-P. Morency, "Memory Fusion
Network for Multi-view Sequential Learning", AAAI 2018 (original code pliang279/MFN). Reference
code followed: MMSA (thuiar/MMSA, src/MMSA/models/singleTask/MFN.py, trainer
trains/singleTask/MFN.py), which is what the MSA literature's MFN rows are run with.

Architecture (as in MMSA), over word-aligned sequences (`NEEDS_ALIGNED`):
- System of LSTMs: one LSTM per modality (widths `text_hidden`, `audio_hidden`, `video_hidden`),
  none of them sees the memory (`msabench.models.layers.mfn_memory.ModalityLSTMs`);
- Delta-memory Attention Network: at step t the cell states ("memories") of all LSTMs at t-1 and
  t are concatenated, c^[t-1,t] (width 2 * sum of the LSTM widths); attention
  a = softmax(fc2(dropout(relu(fc1(c^[t-1,t]))))) over its entries (hidden `attention_hidden`);
  the attended memories are a * c^[t-1,t];
- Multi-view Gated Memory of width `mem_dim` over the attended memories
  (`msabench.models.layers.mfn_memory.GatedMemory`: proposal net D_u of hidden `proposal_hidden`,
  gates gamma1/gamma2 of hidden `gamma1_hidden`/`gamma2_hidden`);
- output: [final h of each LSTM; final memory] -> Linear+ReLU (`out_hidden`) -> dropout -> Linear;
  no output squashing.

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "mfn", datasetParams
(mosi = the defaults; mosei; sims): hidden_dims [text, audio, video], memsize -> mem_dim,
NN1Config -> attention_*, NN2Config -> proposal_*, gamma1Config, gamma2Config, outConfig
(shapes -> *_hidden, drop -> *_dropout), batch_size, learning_rate, weight_decay; commonParams
early_stop 8 -> patience. Trainer (trains/singleTask/MFN.py): Adam with weight decay, L1 loss
(regression) / cross-entropy (classification).

Deviations:
- Padding is masked: each LSTM holds its last real state over its padding and the memory holds
  its value on steps where no modality is real, so the output reads the states at the last real
  word. MMSA runs all steps, padding included, and reads the states after the padding. On
  full-length inputs the two agree (tested against a step-by-step LSTMCell loop).
- Vectorised where the recurrences allow: the LSTM input projections, the attention and the
  memory's proposal net run over all steps at once; the LSTM recurrences and the memory update
  loop over time. Same function as MMSA's LSTMCell loop, different floating-point rounding.
- Unaligned input: the model is declared `NEEDS_ALIGNED` (the planner refuses unaligned data). Given
  sequences of different lengths anyway (the conformance batches), steps are matched by position
  and a modality whose sequence has ended holds its last state; this is not a paper setting.
- Any non-empty subset of modalities: LSTMs and attention run over the present ones only (the
  paper and MMSA always take all three).
- `windowsize` (MMSA config, always 2) is not a config key: the attention reads exactly two steps,
  t-1 and t, as the paper's delta-memory does and as MMSA's code does whatever windowsize says.
- MMSA's "mfn" entry sets need_normalized: its loader averages audio and vision over time (over
  the padded length, zeros included) to one step, and AMIO's AlignSubNet (avg_pool) repeats that
  step at every text step, so MMSA's MFN sees constant audio and vision. By default we keep them as
  aligned sequences, as the paper does; `average_audio_vision=True` follows MMSA (mean over the
  real frames, repeated at each real position).
- Text enters through `TextInput`: features pass through (MMSA's aligned MOSI text: 768-d BERT
  features, per the issue's MOSI shapes; the paper used 300-d GloVe); token ids go through a
  trainable embedding of width `token_embed_dim` until the Hugging Face TextEncoder lands.
- Multilabel head (IEMOCAP): 4 logits; MMSA has none. Classification uses the regression presets
  (MMSA's current config has one file for both modes).
- Layer widths and dropouts are MMSA's tuned per-dataset values, not the paper's grid search.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.mfn_memory import (
    GatedMemory,
    ModalityLSTMs,
    OutputHead,
    SequenceInputs,
    mmsa_memory_preset,
    step_mask,
)
from msabench.models.layers.subnets import output_width


@dataclass(frozen=True)
class MFNConfig:
    # MMSA config_regression.json "mfn" / "mosi": hidden_dims, memsize
    text_hidden: int = 256
    audio_hidden: int = 32
    video_hidden: int = 256
    mem_dim: int = 400
    # NN1Config (delta-memory attention)
    attention_hidden: int = 32
    attention_dropout: float = 0.2
    # NN2Config (memory proposal D_u)
    proposal_hidden: int = 64
    proposal_dropout: float = 0.0
    # gamma1Config, gamma2Config
    gamma1_hidden: int = 256
    gamma1_dropout: float = 0.7
    gamma2_hidden: int = 32
    gamma2_dropout: float = 0.5
    # outConfig
    out_hidden: int = 128
    out_dropout: float = 0.0
    # True = MMSA's need_normalized: audio and vision averaged over time, the mean at every step
    average_audio_vision: bool = False
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


class DeltaMemoryAttention(nn.Module):
    """softmax(fc2(dropout(relu(fc1(c^[t-1,t]))))) * c^[t-1,t] (MMSA: att1_*)."""

    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.att1_fc1 = nn.Linear(width, hidden)
        self.att1_fc2 = nn.Linear(hidden, width)
        self.att1_dropout = nn.Dropout(dropout)

    def forward(self, memories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memories: (B, T, W) c^[t-1,t] per step -> (attended (B, T, W), attention (B, T, W))."""
        scores = self.att1_fc2(self.att1_dropout(F.relu(self.att1_fc1(memories))))
        attention = torch.softmax(scores, dim=-1)
        return attention * memories, attention


@MODELS.register()
class MFN(MSAModel):
    name: ClassVar[str] = "mfn"
    config_cls: ClassVar[type] = MFNConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 2e-3,
        "train.batch_size": 128,
        "train.weight_decay": 0.0,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mmsa_memory_preset((256, 32, 256), 400, (64, 0.0), (256, 0.7), (32, 0.5), (128, 0.0),
                                   128, 2e-3, 0.0, attention_hidden=32, attention_dropout=0.2),
        "mosei": mmsa_memory_preset((128, 32, 128), 128, (128, 0.5), (256, 0.7), (256, 0.0), (128, 0.5),
                                    64, 5e-4, 1e-4, attention_hidden=128, attention_dropout=0.2),
        "sims": mmsa_memory_preset((64, 16, 64), 64, (128, 0.0), (64, 0.2), (64, 0.7), (64, 0.7),
                                   32, 1e-3, 0.0, attention_hidden=128, attention_dropout=0.2),
    }

    def __init__(self, cfg: MFNConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.inputs = SequenceInputs(spec, cfg.token_embed_dim, ("a", "v") if cfg.average_audio_vision else ())
        widths = {"t": cfg.text_hidden, "a": cfg.audio_hidden, "v": cfg.video_hidden}
        self.lstms = ModalityLSTMs(self.inputs.dims, widths)
        memories = 2 * sum(self.lstms.hidden.values())
        self.attention = DeltaMemoryAttention(memories, cfg.attention_hidden, cfg.attention_dropout)
        self.memory = GatedMemory(memories, cfg.mem_dim, (cfg.proposal_hidden, cfg.proposal_dropout),
                                  (cfg.gamma1_hidden, cfg.gamma1_dropout), (cfg.gamma2_hidden, cfg.gamma2_dropout))
        self.head = OutputHead(sum(self.lstms.hidden.values()) + cfg.mem_dim, cfg.out_hidden, cfg.out_dropout,
                               output_width(spec))

    @classmethod
    def tiny(cls) -> MFNConfig:
        return MFNConfig(text_hidden=6, audio_hidden=4, video_hidden=4, mem_dim=6, attention_hidden=8,
                         attention_dropout=0.1, proposal_hidden=8, proposal_dropout=0.1, gamma1_hidden=8,
                         gamma1_dropout=0.1, gamma2_hidden=8, gamma2_dropout=0.1, out_hidden=8,
                         out_dropout=0.1, token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        seqs, steps = self.inputs(batch)
        traces = self.lstms(seqs, steps)
        order = self.lstms.order
        # c^[t-1,t]: all previous memories, then all current ones (MMSA's cStar)
        memories = torch.cat([traces[m].previous(traces[m].c) for m in order]
                             + [traces[m].c for m in order], dim=-1)  # (B, T, 2 * sum H)
        attended, _ = self.attention(memories)  # (B, T, 2 * sum H)
        real = step_mask([mask for _, mask in seqs.values()], steps)  # (B, T)
        mem = self.memory(attended, real)  # (B, M)
        final = {m: traces[m].h[:, -1] for m in order}  # (B, H_m): the last real state (held)
        fused = torch.cat([final[m] for m in order] + [mem], dim=-1)  # (B, sum H + M)
        out = self.head(fused)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = dict(final)
        features["memory"] = mem
        features["fusion"] = fused
        return ModelOutput(pred=out, features=features)
