"""`lf_lstm`: late-fusion LSTM.

Paper: the standard late-fusion baseline of the MSA literature (Tsai et al., "Multimodal
Transformer for Unaligned Multimodal Language Sequences", ACL 2019, Table 1 "LF-LSTM", whose
numbers MICA Tables 2-4 quote; M3SA section 4, baseline 2: "an LSTM network for each modality to
extract unimodal features and infer decision, and then combine the unimodal decisions"). There is
no reference code to follow: MMSA 2.2.1 has no LF_LSTM (its model map has ef_lstm and lf_dnn; its
LF_DNN pools audio and vision and reads them with MLPs, not LSTMs), and the MulT repository does
not ship its baselines. We take the literature's form: one LSTM per modality over its own
(unaligned) sequence, the unimodal representations fused late.

Architecture:
- per present modality an LSTM (`text_hidden` / `audio_hidden` / `video_hidden` wide,
  `num_layers` layers) over the real steps of that modality's own sequence, read at its last
  real step, then dropout (`text_dropout` / `audio_dropout` / `video_dropout`);
- late fusion: the unimodal vectors concatenated (audio, vision, text: MMSA's order), dropout,
  Linear+ReLU, Linear+ReLU (width `post_fusion_dim`), Linear to the output; that is MMSA's
  LF_DNN fusion head, with LSTMs in place of LF_DNN's pooled MLP subnetworks.

Defaults: there is no LF-LSTM entry in MMSA 2.2.1's config_regression.json, and the papers that
report LF-LSTM give no hyper-parameters. Layer widths, dropouts, post_fusion_dim, batch size,
learning rate and weight decay are borrowed from MMSA's closest late-fusion baseline, entry
"lf_dnn" of config_regression.json (hidden_dims [text, audio, video], post_fusion_dim, dropouts,
batch_size, learning_rate, weight_decay; datasetParams mosi = the defaults, mosei, sims);
early_stop 8 -> patience; Adam, L1 loss (regression) / cross-entropy (classification).
num_layers = 1 follows MMSA's TextSubNet.

Deviations:
- Not a reproduction of any published LF-LSTM code (there is none to reproduce); the rows the
  papers report used other features, sizes and training settings, which are unpublished.
- Fusion is of unimodal representations, not of unimodal decisions: M3SA's description
  ("combine the unimodal decisions by voting mechanism, etc.") leaves the combination open; a
  learned head over the concatenated final states includes a weighted vote of per-modality
  decisions as a special case.
- No input normalisation: the LSTMs read the raw features (MMSA's SubNets batch-normalise pooled
  audio and vision; EF_LSTM batch-normalises each time step).
- Padding is masked: each LSTM runs over its modality's real steps only (packed sequence).
- Text enters through `TextInput`: features pass through; token ids go through a trainable
  embedding of width `token_embed_dim` until the Hugging Face TextEncoder lands.
- Any non-empty subset of modalities; a 4-logit multilabel head for IEMOCAP; classification uses
  the regression presets.
- Epochs: capped at 100 (`train.epochs`), with early stopping (patience 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.subnets import FUSION_ORDER, lstm_last_state, mmsa_preset, output_width


@dataclass(frozen=True)
class LFLSTMConfig:
    # borrowed from MMSA config_regression.json "lf_dnn" / "mosi" (no lf_lstm entry exists):
    # hidden_dims [text, audio, video], post_fusion_dim, dropouts [audio, video, text, post-fusion]
    text_hidden: int = 128
    audio_hidden: int = 16
    video_hidden: int = 128
    post_fusion_dim: int = 128
    audio_dropout: float = 0.2
    video_dropout: float = 0.2
    text_dropout: float = 0.2
    post_fusion_dropout: float = 0.2
    # MMSA FeatureNets.TextSubNet: one-layer LSTM
    num_layers: int = 1
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _preset(text: int, audio: int, video: int, post: int, dropouts: tuple[float, float, float, float],
            **train: Any) -> dict[str, Any]:
    """An "lf_dnn" entry of MMSA's config_regression.json without its text_out (no text Linear here)."""
    preset = mmsa_preset(text, audio, video, 0, post, dropouts, **train)
    del preset["model.text_out"]
    return preset


@MODELS.register()
class LFLSTM(MSAModel):
    name: ClassVar[str] = "lf_lstm"
    config_cls: ClassVar[type] = LFLSTMConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # borrowed from MMSA config_regression.json "lf_dnn" / "mosi"; early_stop 8
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 128,
        "train.weight_decay": 0.01,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # borrowed from MMSA config_regression.json "lf_dnn" datasetParams
        "mosi": _preset(128, 16, 128, 128, (0.2, 0.2, 0.2, 0.2), batch_size=128, lr=1e-3, weight_decay=0.01),
        "mosei": _preset(128, 32, 128, 128, (0.2, 0.2, 0.2, 0.2), batch_size=64, lr=2e-3, weight_decay=1e-3),
        "sims": _preset(128, 32, 128, 32, (0.3, 0.3, 0.3, 0.5), batch_size=128, lr=5e-3, weight_decay=5e-3),
    }

    def __init__(self, cfg: LFLSTMConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("lf_lstm needs at least one modality")
        hidden = {"t": cfg.text_hidden, "a": cfg.audio_hidden, "v": cfg.video_hidden}
        dropout = {"t": cfg.text_dropout, "a": cfg.audio_dropout, "v": cfg.video_dropout}
        self.order = tuple(m for m in FUSION_ORDER if m in spec.modalities)
        self.rnns = nn.ModuleDict()
        self.drops = nn.ModuleDict()
        for m in self.order:
            if m == "t":
                self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
                in_dim = self.text_input.out_dim
            else:
                in_dim = int(spec.dims[m])
            self.rnns[m] = nn.LSTM(in_dim, hidden[m], num_layers=cfg.num_layers, batch_first=True,
                                   dropout=dropout[m] if cfg.num_layers > 1 else 0.0)
            self.drops[m] = nn.Dropout(dropout[m])
        fused = sum(hidden[m] for m in self.order)
        self.post_fusion_dropout = nn.Dropout(cfg.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(fused, cfg.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(cfg.post_fusion_dim, cfg.post_fusion_dim)
        self.post_fusion_layer_3 = nn.Linear(cfg.post_fusion_dim, output_width(spec))

    @classmethod
    def tiny(cls) -> LFLSTMConfig:
        return LFLSTMConfig(text_hidden=8, audio_hidden=4, video_hidden=4, post_fusion_dim=8,
                            audio_dropout=0.1, video_dropout=0.1, text_dropout=0.1, post_fusion_dropout=0.1,
                            token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        hs = {}
        for m in self.order:
            if m == "t":
                x, mask = self.text_input(batch)
            else:
                x, mask = batch.modality(m)
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            hs[m] = self.drops[m](lstm_last_state(self.rnns[m], x, mask))  # (B, hidden_m)
        fused = torch.cat([hs[m] for m in self.order], dim=-1)  # (B, sum hidden_m)
        x = self.post_fusion_dropout(fused)
        x = F.relu(self.post_fusion_layer_1(x))
        x = F.relu(self.post_fusion_layer_2(x))
        out = self.post_fusion_layer_3(x)  # (B, 1) | (B, C)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = dict(hs)
        features["fusion"] = fused
        return ModelOutput(pred=out, features=features)
