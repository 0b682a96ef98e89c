"""`tfn`: Tensor Fusion Network.

Paper: A. Zadeh, M. Chen, S. Poria, E. Cambria, L.-P. Morency, "Tensor Fusion Network for
Multimodal Sentiment Analysis", EMNLP 2017. Reference code followed: MMSA (thuiar/MMSA,
src/MMSA/models/singleTask/TFN.py with subNets/FeatureNets.py (ours: models/layers/subnets.py),
trainer trains/singleTask/TFN.py),
which is what the MSA literature's TFN rows are run with.

Architecture (as in MMSA):
- audio and vision subnetworks: the sequence mean-pooled over time, BatchNorm1d, dropout, then
  three Linear+ReLU layers of width `audio_hidden` / `video_hidden`;
- text subnetwork: a one-layer LSTM of width `text_hidden`; its final hidden state, dropout and
  one Linear to `text_out` (no activation);
- fusion: a 1 is prepended to each modality vector and the three are combined by an outer product
  (audio x vision x text, MMSA's order), flattened to prod(d_m + 1) values, so the unimodal and
  bimodal terms survive next to the trimodal ones;
- post-fusion: dropout, Linear+ReLU, Linear+ReLU (width `post_fusion_dim`), Linear to the output;
- regression output squashed as sigmoid(o) * output_range + output_shift (6 and -3: (-3, 3)).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "tfn", datasetParams
(mosi = the defaults; mosei; sims): hidden_dims [text, audio, video], text_out, post_fusion_dim,
dropouts [audio, video, text, post-fusion], batch_size, learning_rate; early_stop 8 -> patience.
Trainer: Adam, no weight decay, L1 loss (regression) / cross-entropy (classification).

Deviations:
- Padding is masked: audio and vision are averaged over their real frames, where MMSA's data
  loader averages over the whole padded length (zeros included), which scales each mean by
  length/max_len.
- The text LSTM runs over the real tokens only (packed sequence) and its final state is taken at
  the last real token; MMSA runs it over the padded sequence and takes the state after the padding.
  Masks are taken as prefixes (real positions first), as every reader writes them.
- Text enters through `TextInput`: precomputed features (MMSA: the 768-d BERT features of the
  pickle) pass through unchanged; token ids go through a trainable embedding of width
  `token_embed_dim` (no pre-trained vectors), or through a Hugging Face encoder (`text.encoder`,
  frozen or fine-tuned) whose outputs feed the LSTM.
- Any non-empty subset of modalities: the outer product runs over the present modalities only
  (prod over present m of (d_m + 1)); with fewer than three this is not the paper's trimodal TFN
  but its uni/bimodal restriction (the paper's Table 3 ablations "TFN_bimodal" etc. keep only
  some terms of the full tensor, which is a different thing).
- `text_dropout` is, as in MMSA's TextSubNet, forced to 0 for a one-layer LSTM (MMSA's value 0.3
  has no effect there); it applies between layers and to the final state when `text_layers` > 1.
  The final state of a multi-layer LSTM is its last layer's (MMSA would fail there).
- BatchNorm on a training batch of one sample (a last partial batch) uses its running statistics
  instead of raising, as PyTorch's BatchNorm1d would.
- `output_range`/`output_shift` are plain config values (MMSA: non-trainable Parameters, left out
  of the optimiser). MMSA uses 6/-3 for every dataset, SIMS ([-1, 1] labels) included; so do we.
- Multilabel head (IEMOCAP): 4 logits, no squashing; MMSA has no multilabel head.
- Classification uses the same presets as regression (MMSA's current config has one file,
  config_regression.json, for both modes).
- The paper's text input is GloVe word vectors; MMSA (and we, with text features) use the
  dataset's 768-d BERT features. Layer widths and dropouts are MMSA's tuned per-dataset values,
  not the paper's.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.subnets import build_subnets, mmsa_preset, output_width, run_subnets, subnet_widths


def tensor_fusion(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Outer product of [1, h_m] over the given (B, d_m) vectors, flattened: (B, prod(d_m + 1)).

    Index 0 of each factor is the appended 1, so the flattened tensor holds the constant 1, every
    unimodal vector, every pairwise product, ..., the full product. Element order matches MMSA's
    (earlier factors vary slowest).
    """
    if not vectors:
        raise ValueError("tensor fusion needs at least one modality vector")
    b = vectors[0].shape[0]
    one = vectors[0].new_ones(b, 1)
    fused = one
    for h in vectors:
        z = torch.cat([one, h], dim=1)
        fused = torch.bmm(fused.unsqueeze(2), z.unsqueeze(1)).reshape(b, -1)
    return fused


@dataclass(frozen=True)
class TFNConfig:
    # MMSA config_regression.json "tfn" / "mosi"
    text_hidden: int = 128
    audio_hidden: int = 32
    video_hidden: int = 128
    text_out: int = 32
    post_fusion_dim: int = 64
    audio_dropout: float = 0.3
    video_dropout: float = 0.3
    text_dropout: float = 0.3
    post_fusion_dropout: float = 0.5
    # MMSA TFN.py
    text_layers: int = 1
    output_range: float = 6.0
    output_shift: float = -3.0
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


@MODELS.register()
class TFN(MSAModel):
    name: ClassVar[str] = "tfn"
    config_cls: ClassVar[type] = TFNConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.batch_size": 32,
        "train.weight_decay": 0.0,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mmsa_preset(128, 32, 128, 32, 64, (0.3, 0.3, 0.3, 0.5), batch_size=32, lr=1e-3),
        "mosei": mmsa_preset(128, 16, 128, 128, 16, (0.4, 0.4, 0.4, 0.4), batch_size=128, lr=5e-3),
        "sims": mmsa_preset(128, 32, 128, 256, 32, (0.4, 0.4, 0.4, 0.4), batch_size=32, lr=5e-4),
    }

    def __init__(self, cfg: TFNConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("tfn needs at least one modality")
        self.subnets = build_subnets(cfg, spec)
        self.widths = subnet_widths(cfg, spec.modalities)
        self.fusion_dim = math.prod(d + 1 for d in self.widths.values())
        self.post_fusion_dropout = nn.Dropout(cfg.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(self.fusion_dim, cfg.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(cfg.post_fusion_dim, cfg.post_fusion_dim)
        self.post_fusion_layer_3 = nn.Linear(cfg.post_fusion_dim, output_width(spec))

    @classmethod
    def tiny(cls) -> TFNConfig:
        return TFNConfig(text_hidden=8, audio_hidden=4, video_hidden=4, text_out=4, post_fusion_dim=8,
                         audio_dropout=0.1, video_dropout=0.1, text_dropout=0.1, post_fusion_dropout=0.1,
                         token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        hs = run_subnets(self.subnets, batch)
        fused = tensor_fusion([hs[m] for m in self.widths])
        x = self.post_fusion_dropout(fused)
        x = F.relu(self.post_fusion_layer_1(x))
        x = F.relu(self.post_fusion_layer_2(x))
        out = self.post_fusion_layer_3(x)
        if self.spec.task == "regression":
            out = torch.sigmoid(out.squeeze(-1)) * self.cfg.output_range + self.cfg.output_shift
        features = dict(hs)
        features["fusion"] = fused
        return ModelOutput(pred=out, features=features)
