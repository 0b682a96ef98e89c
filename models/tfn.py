"""`tfn`: Tensor Fusion Network.

Paper: A. Zadeh, M. Chen, S. Poria, E. Cambria, L.-P. Morency, "Tensor Fusion Network for
Multimodal Sentiment Analysis", EMNLP 2017. Reference code followed: MMSA (thuiar/MMSA,
src/MMSA/models/singleTask/TFN.py with subNets/FeatureNets.py, trainer trains/singleTask/TFN.py),
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
from torch.nn.utils.rnn import pack_padded_sequence

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput, masked_mean

# MMSA's fusion order: audio x vision x text.
FUSION_ORDER = ("a", "v", "t")


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
        x, mask = self.text_input(batch)
        lengths = mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)
        packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.linear_1(self.drop(h_n[-1]))


def build_subnets(cfg: Any, spec: InputSpec) -> nn.ModuleDict:
    """The present modalities' subnetworks (MMSA's FeatureNets), in FUSION_ORDER."""
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
    widths = {"a": cfg.audio_hidden, "v": cfg.video_hidden, "t": cfg.text_out}
    return {m: int(widths[m]) for m in FUSION_ORDER if m in modalities}


def run_subnets(nets: nn.ModuleDict, batch: Batch) -> dict[str, torch.Tensor]:
    out = {}
    for m, net in nets.items():
        if m == "t":
            out[m] = net(batch)
        else:
            x, mask = batch.modality(m)
            out[m] = net(x, mask)
    return out


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


def output_width(spec: InputSpec) -> int:
    return 1 if spec.task == "regression" else int(spec.n_outputs)


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


def mmsa_preset(text: int, audio: int, video: int, text_out: int, post: int,
                 dropouts: tuple[float, float, float, float], **train: Any) -> dict[str, Any]:
    """A preset in the shape of MMSA's config_regression.json entries (shared with lf_dnn)."""
    a, v, t, p = dropouts
    preset = {
        "model.text_hidden": text, "model.audio_hidden": audio, "model.video_hidden": video,
        "model.text_out": text_out, "model.post_fusion_dim": post,
        "model.audio_dropout": a, "model.video_dropout": v, "model.text_dropout": t,
        "model.post_fusion_dropout": p,
    }
    preset.update({f"train.{k}": val for k, val in train.items()})
    return preset


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
