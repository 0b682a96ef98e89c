"""`lmf`: Low-rank Multimodal Fusion.

Paper: Z. Liu, Y. Shen, V. B. Lakshminarasimhan, P. P. Liang, A. Zadeh, L.-P. Morency, "Efficient
Low-rank Multimodal Fusion with Modality-Specific Factors", ACL 2018 (authors' code:
Justin1904/Low-rank-Multimodal-Fusion). Reference code followed: MMSA (thuiar/MMSA,
src/MMSA/models/singleTask/LMF.py with subNets/FeatureNets.py, trainer trains/singleTask/LMF.py),
which ports the authors' code and is what the MSA literature's LMF rows are run with.

Architecture (as in MMSA):
- the subnetworks of TFN (models/layers/subnets.py): audio and vision mean-pooled, BatchNorm,
  dropout, three Linear+ReLU of width `audio_hidden` / `video_hidden`; text through a one-layer
  LSTM of width `text_hidden`, its final state and one Linear to `text_out`;
- low-rank fusion (paper section 3.2, eq. 6): each modality vector gets a 1 prepended, z_m =
  [1, h_m]; modality-specific factors W_m of shape (rank, d_m + 1, out) give z_m W_m^(i) for each
  rank i; these are multiplied elementwise across modalities, and the rank terms are combined by a
  learned (1, rank) weight plus a bias (MMSA/authors' code: "linear transformation instead of
  simple summation") to the output (no activation, no squashing);
- initialisation: Xavier-normal factors and fusion weights, zero bias.

Training (as in MMSA and the authors' code): Adam with weight decay over two groups, the three
factors at `train.factor_lr` and the subnetworks at `train.lr`. The fusion weights and bias are in
neither group there (the optimiser takes `parameters()[:3]` and `[5:]`), so they keep their
initial values; `model.train_fusion_weights=false` (the default) reproduces that by freezing them,
`true` trains them at `train.lr`.

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "lmf", datasetParams
(mosi = the defaults; mosei; sims): hidden_dims [text, audio, video], dropouts [audio, video,
text, post-fusion], rank, batch_size, learning_rate, factor_lr, weight_decay; early_stop 8 ->
patience. text_out = text_hidden // 2, as MMSA's LMF.py sets it.

Deviations:
- Padding is masked: audio and vision are averaged over their real frames (MMSA's loader averages
  over the padded length, zeros included); the text LSTM runs over the real tokens only (packed
  sequence; MMSA reads its state after the padding). Masks are prefixes (real positions first).
- MMSA's fourth dropout (post-fusion) is built but never applied in LMF.forward; we leave it out
  of the config.
- `text_dropout` is forced to 0 for a one-layer LSTM, as in MMSA's TextSubNet.
- `text_out` is a config key (MMSA hard-codes text_hidden // 2; the presets keep that value).
- Text enters through `TextInput`: features pass through (MMSA: the 768-d BERT features; the paper
  used GloVe vectors); token ids go through a trainable embedding of width `token_embed_dim`.
- Any non-empty subset of modalities: the product runs over the present modalities' factors only
  (with one modality this is a rank-r linear model of [1, h_m]).
- Fusion weights frozen by default (see Training): `msabench models --params` and the run's
  trainable count leave out their rank + out values, which MMSA's `parameters()` count includes.
- Multilabel head (IEMOCAP): 4 outputs; MMSA has none. Classification uses the regression presets.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.subnets import build_subnets, output_width, run_subnets, subnet_widths


@dataclass(frozen=True)
class LMFConfig:
    # MMSA config_regression.json "lmf" / "mosi": hidden_dims [text, audio, video], dropouts, rank
    text_hidden: int = 128
    audio_hidden: int = 16
    video_hidden: int = 128
    audio_dropout: float = 0.3
    video_dropout: float = 0.3
    text_dropout: float = 0.3
    rank: int = 3
    # MMSA LMF.py: text_out = text_hidden // 2
    text_out: int = 64
    # MMSA FeatureNets.TextSubNet
    text_layers: int = 1
    # MMSA trains/singleTask/LMF.py leaves the fusion weights and bias out of the optimiser
    train_fusion_weights: bool = False
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _preset(text: int, audio: int, video: int, dropout: float, rank: int, **train: Any) -> dict[str, Any]:
    """An "lmf" entry of MMSA's config_regression.json (its four dropouts are equal in every entry)."""
    preset = {
        "model.text_hidden": text, "model.audio_hidden": audio, "model.video_hidden": video,
        "model.text_out": text // 2, "model.audio_dropout": dropout, "model.video_dropout": dropout,
        "model.text_dropout": dropout, "model.rank": rank,
    }
    preset.update({f"train.{k}": v for k, v in train.items()})
    return preset


@MODELS.register()
class LMF(MSAModel):
    name: ClassVar[str] = "lmf"
    config_cls: ClassVar[type] = LMFConfig
    impl_version: ClassVar[int] = 1
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # MMSA config_regression.json "lmf" / "mosi"; early_stop 8
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.factor_lr": 1e-3,
        "train.batch_size": 64,
        "train.weight_decay": 0.005,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": _preset(128, 16, 128, 0.3, 3, batch_size=64, lr=1e-3, factor_lr=1e-3, weight_decay=0.005),
        "mosei": _preset(128, 16, 128, 0.2, 4, batch_size=32, lr=1e-3, factor_lr=1e-3, weight_decay=1e-3),
        "sims": _preset(64, 16, 64, 0.2, 4, batch_size=64, lr=2e-3, factor_lr=5e-4, weight_decay=5e-3),
    }

    def __init__(self, cfg: LMFConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if not spec.modalities:
            raise ValueError("lmf needs at least one modality")
        if cfg.rank < 1:
            raise ValueError(f"lmf: model.rank={cfg.rank} must be at least 1")
        self.subnets = build_subnets(cfg, spec)
        self.widths = subnet_widths(cfg, spec.modalities)
        out = output_width(spec)
        self.factors = nn.ParameterDict({
            m: nn.Parameter(nn.init.xavier_normal_(torch.empty(cfg.rank, d + 1, out)))
            for m, d in self.widths.items()
        })
        trainable = bool(cfg.train_fusion_weights)
        self.fusion_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, cfg.rank)), requires_grad=trainable)
        self.fusion_bias = nn.Parameter(torch.zeros(1, out), requires_grad=trainable)

    @classmethod
    def tiny(cls) -> LMFConfig:
        return LMFConfig(text_hidden=8, audio_hidden=4, video_hidden=4, text_out=4, rank=2,
                         audio_dropout=0.1, video_dropout=0.1, text_dropout=0.1, token_embed_dim=8)

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        factor_lr = float(train_cfg.get("train.factor_lr", train_cfg["train.lr"]))
        factors = list(self.factors.values())
        factor_ids = {id(p) for p in factors}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in factor_ids]
        return {"main": [{"params": factors, "lr": factor_lr}, {"params": rest}]}

    def forward(self, batch: Batch) -> ModelOutput:
        hs = run_subnets(self.subnets, batch)  # modality -> (B, d_m)
        product = None
        for m, h in hs.items():
            z = torch.cat([h.new_ones(h.shape[0], 1), h], dim=1)  # (B, d_m + 1)
            term = torch.matmul(z, self.factors[m])  # (rank, B, out)
            product = term if product is None else product * term
        # rank terms combined by the fusion weights: (1, rank) @ (B, rank, out) -> (B, 1, out)
        out = torch.matmul(self.fusion_weights, product.permute(1, 0, 2)).squeeze(1) + self.fusion_bias
        if self.spec.task == "regression":
            out = out.squeeze(-1)  # (B,)
        features = dict(hs)
        features["fusion"] = product.permute(1, 0, 2).reshape(out.shape[0], -1)  # (B, rank * out)
        return ModelOutput(pred=out, features=features)
