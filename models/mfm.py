"""`mfm`: Multimodal Factorization Model.

Paper: Y.-H. H. Tsai, P. P. Liang, A. Zadeh, L.-P. Morency, R. Salakhutdinov, "Learning
Factorized Multimodal Representations", ICLR 2019. Reference code followed: MMSA 2.2.1
(src/MMSA/models/singleTask/MFM.py, which builds on models/singleTask/MFN.py; trainer
trains/singleTask/MFM.py), the form in which the MSA literature reports MFM.

Architecture (as in MMSA):
- generative (modality-specific) factors: per modality m in {text, audio, vision} an LSTM encoder
  of width z_m over the sequence, its final hidden state through one Linear(z_m, z_m) -> Z_m;
- discriminative (multimodal) factor: a Memory Fusion Network over the three sequences
  (`msabench.models.layers.memory_fusion`: LSTM per modality, delta-memory attention,
  multi-view gated memory), its final state [h_t, h_a, h_v, u] through Linear -> Z_y;
- factor networks: F_y = ReLU(Linear(Dropout(ReLU(Linear(Z_y))))) of width fy; likewise F_m of
  width f_m from Z_m;
- decoders: per modality an LSTM cell of width fy + f_m that takes [F_y, F_m] at the first step and
  its own previous hidden state after that, one Linear per step to the modality's width: X̂_m;
- label head: Linear(fy, fy), ReLU, dropout, Linear to the output (no squashing), from F_y only.

Losses (training only; each an entry of `ModelOutput.aux_losses`, added to the task loss by the
default `training_step`):
- discriminative: the task loss (L1 for regression, as MMSA; cross-entropy / BCE otherwise);
- `recon_t`, `recon_a`, `recon_v`: `recon_weight_<m>` x MSE(X̂_m, X_m) over real positions
  (MMSA lda_xl / lda_xa / lda_xv: 0.5 / 0.01 / 0.5 on MOSI);
- `mmd`: `mmd_weight` x sum over Z_t, Z_a, Z_v, Z_y of the Gaussian-kernel MMD between the
  batch of factors and as many N(0, I) samples (MMSA lda_mmd: 100 on MOSI), the Wasserstein
  auto-encoder prior matching of the paper's Section 2.2.
A weight of 0 removes that loss; a reconstruction weight of 0 also removes that modality's decoder
and factor network F_m (nothing would train them). With both that weight and `mmd_weight` at 0 the
modality's encoder trains on nothing either: its Z_m then only serves as an (untrained) feature.

Inference: the prediction needs only the discriminative path (MFN -> Z_y -> F_y -> head); in eval
mode the encoders' Z_m are still computed as features but no decoder runs and no loss is returned.

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "mfm", datasetParams
(mosi = the defaults; mosei; sims): hidden_dims [text, audio, video] -> MFN LSTM widths; memsize;
NN1Config / NN2Config / gamma1Config / gamma2Config {shapes, drop} -> the MFN attention, memory
and gate networks; zy/zl/za/zv_size, fy/fl/fa/fv_size; zy_to_fy / zl_to_fl / za_to_fa / zv_to_fv /
fy_to_y dropouts; lda_mmd, lda_xl, lda_xa, lda_xv; batch_size, learning_rate, weight_decay;
commonParams early_stop 8 -> patience, need_data_aligned true -> NEEDS_ALIGNED. Trainer: Adam
with weight decay.

Deviations:
- Padding is masked everywhere: the encoders run over the real steps only (packed sequences),
  MFN keeps each modality's state past its last real step, reconstruction errors are averaged over
  real positions only. MMSA runs every LSTM over the padding and averages the MSE over it too.
  Masks are taken as prefixes (real positions first).
- MMSA's MFM builds a whole MFN including MFN's own output head (outConfig: Linear(352, 128),
  Linear(128, 1) on MOSI) but never uses it; we leave it out (45,313 fewer parameters at MOSI
  shapes, the only difference in count).
- The paper's surrogate inference for missing modalities is not implemented (MMSA returns a
  missing loss of 0 too).
- The paper trains on word-aligned input; so does MMSA (need_data_aligned) and so do we
  (NEEDS_ALIGNED: the planner refuses unaligned data, naming data.aligned=true). Built directly on
  unaligned input, every part still runs, each modality at its own length.
- Any non-empty subset of modalities: MFN, the encoders and the decoders run over the present
  ones (MMSA always takes all three).
- Reconstruction targets are detached: with token-id text the target is the trainable embedding,
  which the loss would otherwise shrink towards the decoder's output (with features it changes
  nothing).
- Text enters through `TextInput`: features pass through (MMSA: the pickle's 768-d BERT
  features); token ids go through a trainable embedding of width `token_embed_dim`.
- Multilabel head (IEMOCAP): 4 logits; MMSA has none. Classification uses the regression presets.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.memory_fusion import MemoryFusionCore
from msabench.models.layers.sequence_losses import masked_mse

# MMSA's MFN concatenation order: text, audio, vision.
MODALITY_ORDER = ("t", "a", "v")
_NAMES = {"t": "text", "a": "audio", "v": "video"}


@dataclass(frozen=True)
class MFMConfig:
    # MMSA config_regression.json "mfm" / "mosi": hidden_dims [text, audio, video] (MFN LSTMs)
    text_hidden: int = 128
    audio_hidden: int = 32
    video_hidden: int = 128
    mem_size: int = 64  # memsize
    attention_hidden: int = 32  # NN1Config.shapes
    attention_dropout: float = 0.7  # NN1Config.drop
    memory_hidden: int = 64  # NN2Config.shapes
    memory_dropout: float = 0.0  # NN2Config.drop
    gamma1_hidden: int = 32  # gamma1Config
    gamma1_dropout: float = 0.0
    gamma2_hidden: int = 64  # gamma2Config
    gamma2_dropout: float = 0.5
    # factor sizes: zy_size, zl_size, za_size, zv_size, fy_size, fl_size, fa_size, fv_size
    zy_size: int = 80
    z_text_size: int = 64
    z_audio_size: int = 80
    z_video_size: int = 80
    fy_size: int = 64
    f_text_size: int = 32
    f_audio_size: int = 16
    f_video_size: int = 64
    # zy_to_fy_dropout, zl_to_fl_dropout, za_to_fa_dropout, zv_to_fv_dropout, fy_to_y_dropout
    zy_to_fy_dropout: float = 0.5
    z_text_to_f_dropout: float = 0.5
    z_audio_to_f_dropout: float = 0.7
    z_video_to_f_dropout: float = 0.5
    fy_to_y_dropout: float = 0.0
    # loss weights: lda_mmd, lda_xl, lda_xa, lda_xv
    mmd_weight: float = 100.0
    recon_weight_text: float = 0.5
    recon_weight_audio: float = 0.01
    recon_weight_video: float = 0.5
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _mmsa_preset(hidden: tuple[int, int, int], mem: int, nets: tuple[tuple[int, float], ...],
                 z: tuple[int, int, int, int], f: tuple[int, int, int, int],
                 drops: tuple[float, float, float, float, float], lda: tuple[float, float, float, float],
                 **train: Any) -> dict[str, Any]:
    """A preset in the shape of MMSA's "mfm" entries: hidden_dims, memsize, NN1/NN2/gamma1/gamma2,
    z sizes (y, l, a, v), f sizes (y, l, a, v), dropouts (zy, zl, za, zv, fy_to_y), lda (mmd, xl, xa, xv)."""
    (a1, a1d), (a2, a2d), (g1, g1d), (g2, g2d) = nets
    preset = {
        "model.text_hidden": hidden[0], "model.audio_hidden": hidden[1], "model.video_hidden": hidden[2],
        "model.mem_size": mem,
        "model.attention_hidden": a1, "model.attention_dropout": a1d,
        "model.memory_hidden": a2, "model.memory_dropout": a2d,
        "model.gamma1_hidden": g1, "model.gamma1_dropout": g1d,
        "model.gamma2_hidden": g2, "model.gamma2_dropout": g2d,
        "model.zy_size": z[0], "model.z_text_size": z[1], "model.z_audio_size": z[2], "model.z_video_size": z[3],
        "model.fy_size": f[0], "model.f_text_size": f[1], "model.f_audio_size": f[2], "model.f_video_size": f[3],
        "model.zy_to_fy_dropout": drops[0], "model.z_text_to_f_dropout": drops[1],
        "model.z_audio_to_f_dropout": drops[2], "model.z_video_to_f_dropout": drops[3],
        "model.fy_to_y_dropout": drops[4],
        "model.mmd_weight": lda[0], "model.recon_weight_text": lda[1], "model.recon_weight_audio": lda[2],
        "model.recon_weight_video": lda[3],
    }
    preset.update({f"train.{k}": v for k, v in train.items()})
    return preset


def gaussian_mmd(z: torch.Tensor) -> torch.Tensor:
    """MMD between the rows of z (B, D) and as many N(0, I) samples, kernel exp(-mean sq. dist)
    (Tsai et al. 2019, Section 2.2; the kernel of MMSA's compute_kernel)."""
    prior = torch.randn_like(z)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(x.unsqueeze(1) - y.unsqueeze(0)).pow(2).mean(dim=2) / z.shape[1])

    return kernel(prior, prior).mean() + kernel(z, z).mean() - 2.0 * kernel(prior, z).mean()



class SequenceEncoder(nn.Module):
    """MMSA's encoderLSTM: an LSTM over the real steps, its final hidden state, one Linear."""

    def __init__(self, in_dim: int, size: int):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, size, batch_first=True)
        self.fc1 = nn.Linear(size, size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)
        packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.fc1(h_n[-1])  # (B, size)


class SequenceDecoder(nn.Module):
    """MMSA's decoderLSTM: an LSTM cell fed the code first, then its own hidden state; Linear out."""

    def __init__(self, code_dim: int, out_dim: int):
        super().__init__()
        self.cell = nn.LSTMCell(code_dim, code_dim)
        self.fc1 = nn.Linear(code_dim, out_dim)

    def forward(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        h = torch.zeros_like(code)
        c = torch.zeros_like(code)
        step_input, hs = code, []
        for _ in range(steps):
            h, c = self.cell(step_input, (h, c))
            hs.append(h)
            step_input = h
        return self.fc1(torch.stack(hs, dim=1))  # (B, steps, out_dim)


class FactorNet(nn.Module):
    """Z -> F: Linear, ReLU, dropout, Linear, ReLU (MMSA's z*_to_f* layers)."""

    def __init__(self, z_size: int, f_size: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(z_size, f_size)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(f_size, f_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(self.drop(F.relu(self.fc1(z)))))


@MODELS.register()
class MFM(MSAModel):
    name: ClassVar[str] = "mfm"
    config_cls: ClassVar[type] = MFMConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 2e-3,
        "train.batch_size": 64,
        "train.weight_decay": 1e-3,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": _mmsa_preset((128, 32, 128), 64, ((32, 0.7), (64, 0.0), (32, 0.0), (64, 0.5)),
                             (80, 64, 80, 80), (64, 32, 16, 64), (0.5, 0.5, 0.7, 0.5, 0.0),
                             (100.0, 0.5, 0.01, 0.5), batch_size=64, lr=2e-3, weight_decay=1e-3),
        "mosei": _mmsa_preset((256, 32, 256), 64, ((1278, 0.5), (32, 0.7), (64, 0.5), (128, 0.2)),
                              (32, 256, 80, 80), (16, 32, 80, 32), (0.2, 0.7, 0.7, 0.7, 0.2),
                              (10.0, 5.0, 2.0, 5.0), batch_size=64, lr=1e-3, weight_decay=5e-4),
        "sims": _mmsa_preset((64, 16, 64), 128, ((32, 0.5), (64, 0.5), (64, 0.7), (256, 0.0)),
                             (48, 256, 32, 80), (48, 256, 80, 48), (0.5, 0.0, 0.7, 0.0, 0.7),
                             (200.0, 0.5, 0.01, 0.01), batch_size=128, lr=2e-3, weight_decay=5e-3),
    }

    def __init__(self, cfg: MFMConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.order = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.order:
            raise ValueError("mfm needs at least one modality")
        self.text_input = (TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
                           if "t" in self.order else None)
        in_dims = {m: (self.text_input.out_dim if m == "t" else int(spec.dims[m])) for m in self.order}
        self.fusion = MemoryFusionCore(
            in_dims, {m: getattr(cfg, f"{_NAMES[m]}_hidden") for m in self.order}, cfg.mem_size,
            attention=(cfg.attention_hidden, cfg.attention_dropout), memory=(cfg.memory_hidden, cfg.memory_dropout),
            gamma1=(cfg.gamma1_hidden, cfg.gamma1_dropout), gamma2=(cfg.gamma2_hidden, cfg.gamma2_dropout))
        self.fusion_to_zy = nn.Linear(self.fusion.out_dim, cfg.zy_size)
        self.zy_to_fy = FactorNet(cfg.zy_size, cfg.fy_size, cfg.zy_to_fy_dropout)
        self.encoders = nn.ModuleDict({m: SequenceEncoder(in_dims[m], self._z_size(m)) for m in self.order})
        # Only modalities with a reconstruction loss get a factor network and a decoder.
        self.recon_weights = {m: float(getattr(cfg, f"recon_weight_{_NAMES[m]}")) for m in self.order}
        decoded = [m for m in self.order if self.recon_weights[m] > 0]
        self.factor_nets = nn.ModuleDict({
            m: FactorNet(self._z_size(m), getattr(cfg, f"f_{_NAMES[m]}_size"),
                         getattr(cfg, f"z_{_NAMES[m]}_to_f_dropout")) for m in decoded})
        self.decoders = nn.ModuleDict({
            m: SequenceDecoder(cfg.fy_size + getattr(cfg, f"f_{_NAMES[m]}_size"), in_dims[m]) for m in decoded})
        self.head_fc1 = nn.Linear(cfg.fy_size, cfg.fy_size)
        self.head_drop = nn.Dropout(cfg.fy_to_y_dropout)
        self.head_fc2 = nn.Linear(cfg.fy_size, 1 if spec.task == "regression" else int(spec.n_outputs))

    def _z_size(self, m: str) -> int:
        return int(getattr(self.cfg, f"z_{_NAMES[m]}_size"))

    @classmethod
    def tiny(cls) -> MFMConfig:
        return MFMConfig(text_hidden=6, audio_hidden=4, video_hidden=4, mem_size=6, attention_hidden=6,
                         attention_dropout=0.1, memory_hidden=6, gamma1_hidden=6, gamma2_hidden=6,
                         gamma2_dropout=0.1, zy_size=16, z_text_size=8, z_audio_size=8, z_video_size=8,
                         fy_size=16, f_text_size=8, f_audio_size=8, f_video_size=8, zy_to_fy_dropout=0.1,
                         z_text_to_f_dropout=0.1, z_audio_to_f_dropout=0.1, z_video_to_f_dropout=0.1,
                         mmd_weight=1.0, recon_weight_text=0.1, recon_weight_audio=0.1, recon_weight_video=0.1,
                         token_embed_dim=8)

    def _inputs(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        inputs = {}
        for m in self.order:
            if m == "t":
                inputs[m] = self.text_input(batch)
            else:
                x, mask = batch.modality(m)
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                inputs[m] = (x.float(), mask.bool())
        return inputs

    def forward(self, batch: Batch) -> ModelOutput:
        inputs = self._inputs(batch)  # m -> ((B, T_m, D_m), (B, T_m))
        zy = self.fusion_to_zy(self.fusion(inputs))  # (B, zy)
        fy = self.zy_to_fy(zy)  # (B, fy)
        out = self.head_fc2(self.head_drop(F.relu(self.head_fc1(fy))))
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        z = {m: self.encoders[m](*inputs[m]) for m in self.order}  # m -> (B, z_m)
        features = dict(z)
        features["fusion"] = zy
        return ModelOutput(pred=out, aux_losses=self._aux_losses(inputs, z, zy, fy) if self.training else {},
                           features=features)

    def _aux_losses(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]], z: dict[str, torch.Tensor],
                    zy: torch.Tensor, fy: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {}
        for m, decoder in self.decoders.items():
            x, mask = inputs[m]
            code = torch.cat([fy, self.factor_nets[m](z[m])], dim=1)  # (B, fy + f_m)
            x_hat = decoder(code, x.shape[1])  # (B, T_m, D_m)
            losses[f"recon_{m}"] = self.recon_weights[m] * masked_mse(x_hat, x.detach(), mask)
        if self.cfg.mmd_weight > 0:
            mmd = sum(gaussian_mmd(z[m]) for m in self.order) + gaussian_mmd(zy)
            losses["mmd"] = self.cfg.mmd_weight * mmd
        return losses
