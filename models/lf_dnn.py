"""`lf_dnn`: late-fusion deep neural network.

Paper: J. Williams, S. Kleinegesse, R. Comanescu, O. Radu, "Recognizing Emotions in Video Using
Multimodal DNN Feature Fusion", Grand Challenge and Workshop on Human Multimodal Language
(Challenge-HML), ACL 2018 (original code rhoposit/MultimodalDNN). Reference code followed: MMSA's
re-implementation (thuiar/MMSA, src/MMSA/models/singleTask/LF_DNN.py with subNets/FeatureNets.py,
trainer trains/singleTask/LF_DNN.py), the form in which the MSA literature reports LF-DNN.

Architecture (as in MMSA):
- audio and vision subnetworks: the sequence mean-pooled over time, BatchNorm1d, dropout, three
  Linear+ReLU layers of width `audio_hidden` / `video_hidden`;
- text subnetwork: a one-layer LSTM of width `text_hidden`, its final hidden state, one Linear to
  `text_out`;
- late fusion: the three vectors concatenated (audio, vision, text), dropout, Linear+ReLU,
  Linear+ReLU (width `post_fusion_dim`), Linear to the output (no output squashing).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "lf_dnn", datasetParams
(mosi = the defaults; mosei; sims): hidden_dims [text, audio, video], text_out, post_fusion_dim,
dropouts [audio, video, text, post-fusion], batch_size, learning_rate, weight_decay; early_stop 8
-> patience. Trainer: Adam with weight decay, L1 loss (regression) / cross-entropy.

Deviations:
- We follow MMSA's re-implementation, not the original Keras code of Williams et al.; we have not
  checked the two against each other, so the paper's own layer sizes and training settings are
  not reproduced here.
- Padding is masked: audio and vision are averaged over their real frames (MMSA's loader averages
  over the padded length, zeros included); the text LSTM runs over the real tokens only (packed
  sequence; MMSA runs it over the padding too and takes the state after it). Masks are taken as
  prefixes (real positions first).
- Text enters through `TextInput`: features pass through (MMSA: the pickle's 768-d BERT
  features); token ids go through a trainable embedding of width `token_embed_dim`, or through a
  Hugging Face encoder (`text.encoder`, frozen or fine-tuned) whose outputs feed the LSTM.
- Any non-empty subset of modalities: the concatenation runs over the present ones (MMSA always
  takes all three).
- `text_dropout` is forced to 0 for a one-layer LSTM, as in MMSA's TextSubNet (its configured
  value has no effect there); it applies when `text_layers` > 1.
- BatchNorm on a training batch of one sample uses its running statistics instead of raising.
- Multilabel head (IEMOCAP): 4 logits; MMSA has none. Classification uses the regression
  presets (MMSA's current config has one file for both modes).
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.subnets import build_subnets, mmsa_preset, output_width, run_subnets, subnet_widths


@dataclass(frozen=True)
class LFDNNConfig:
    # MMSA config_regression.json "lf_dnn" / "mosi"
    text_hidden: int = 128
    audio_hidden: int = 16
    video_hidden: int = 128
    text_out: int = 256
    post_fusion_dim: int = 128
    audio_dropout: float = 0.2
    video_dropout: float = 0.2
    text_dropout: float = 0.2
    post_fusion_dropout: float = 0.2
    # MMSA FeatureNets.TextSubNet
    text_layers: int = 1
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


@MODELS.register()
class LFDNN(MSAModel):
    name: ClassVar[str] = "lf_dnn"
    config_cls: ClassVar[type] = LFDNNConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 128,
        "train.weight_decay": 0.01,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mmsa_preset(128, 16, 128, 256, 128, (0.2, 0.2, 0.2, 0.2),
                             batch_size=128, lr=1e-3, weight_decay=0.01),
        "mosei": mmsa_preset(128, 32, 128, 128, 128, (0.2, 0.2, 0.2, 0.2),
                              batch_size=64, lr=2e-3, weight_decay=1e-3),
        "sims": mmsa_preset(128, 32, 128, 256, 32, (0.3, 0.3, 0.3, 0.5),
                             batch_size=128, lr=5e-3, weight_decay=5e-3),
    }

    def __init__(self, cfg: LFDNNConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("lf_dnn needs at least one modality")
        self.subnets = build_subnets(cfg, spec)
        self.widths = subnet_widths(cfg, spec.modalities)
        fused = sum(self.widths.values())
        self.post_fusion_dropout = nn.Dropout(cfg.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(fused, cfg.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(cfg.post_fusion_dim, cfg.post_fusion_dim)
        self.post_fusion_layer_3 = nn.Linear(cfg.post_fusion_dim, output_width(spec))

    @classmethod
    def tiny(cls) -> LFDNNConfig:
        return LFDNNConfig(text_hidden=8, audio_hidden=4, video_hidden=4, text_out=8, post_fusion_dim=8,
                           audio_dropout=0.1, video_dropout=0.1, text_dropout=0.1, post_fusion_dropout=0.1,
                           token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        hs = run_subnets(self.subnets, batch)
        fused = torch.cat([hs[m] for m in self.widths], dim=-1)
        x = self.post_fusion_dropout(fused)
        x = F.relu(self.post_fusion_layer_1(x))
        x = F.relu(self.post_fusion_layer_2(x))
        out = self.post_fusion_layer_3(x)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = dict(hs)
        features["fusion"] = fused
        return ModelOutput(pred=out, features=features)
