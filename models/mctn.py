"""`mctn`: Multimodal Cyclic Translation Network.

Paper: H. Pham, P. P. Liang, T. Manzini, L.-P. Morency, B. Póczos, "Found in Translation:
Learning Robust Joint Representations by Cyclic Translations Between Modalities", AAAI 2019.
Reference code followed: MMSA 2.2.1 (src/MMSA/models/singleTask/MCTN.py, trainer
trains/singleTask/MCTN.py), the form in which the MSA literature reports MCTN.

Architecture (the paper's hierarchical MCTN, module for module as in MMSA):
- all modalities are zero-padded along the feature axis to one width D = the widest present
  modality (MMSA: 768, the BERT text width), so that one seq2seq can translate text -> vision and
  back (the two directions share the encoder and decoder, as in the paper and MMSA);
- seq2seq: a bidirectional LSTM encoder of width `hidden` whose per-step outputs (forward +
  backward summed) are the joint representation, and whose final states give the decoder's
  initial state s = tanh(W (h_fwd + h_bwd)); a decoder with additive attention over the encoder
  outputs (score v^T tanh(W [s; e_i])) that at each step takes [previous target frame; context],
  updates its state and predicts the frame from [output; context];
- level 1, with cycle: text -> vision (X̂_v) and X̂_v -> text (X̂_t) through the same seq2seq;
- level 2: a second seq2seq translates level 1's joint representation (of the text) into audio;
- regression head on level 2's joint representation: an LSTM, attention weights
  softmax(tanh(w^T h_i)) over the steps, the weighted sum, Linear to the output.
With one target modality only level 1 is built (text -> it, with cycle); with text alone there is
nothing to translate into and the model is the text encoder plus the head.

Losses (training only; `ModelOutput.aux_losses`, added to the task loss by the default
`training_step`): task loss (L1 for regression, as MMSA's loss_y, weight 1.0) +
`translate_v` = `translation_weight` x MSE(X̂_v, X_v) + `cycle_t` = `cycle_weight` x MSE(X̂_t, X_t)
+ `translate_a` = `translation2_weight` x MSE(X̂_a, X_a); all three weights 0.1 (MMSA MCTN.py
loss_all). MSEs are taken over the real time steps and the padded width D (as MMSA). A weight of 0
removes that loss; with `translation_weight` and `cycle_weight` both 0 the level-1 decoder is not
built, with `translation2_weight` 0 the level-2 decoder is not built (nothing would train them).

Inference: from the source modality (text) only. The prediction is the head applied to the
encoders' joint representation of the text; no decoder runs in eval mode, and audio and vision,
though batched, are never read.

Defaults: MMSA src/MMSA/config/config_regression.json, entry "mctn" (only a "mosi" entry exists,
used for every family): hid_dim 32 -> `hidden`, init_lr 1e-4, batch_size 32, grad_clip 1.0 ->
train.clip, commonParams early_stop 8 -> patience, need_data_aligned true -> NEEDS_ALIGNED.
Depth 1 and dropout 0 are hard-coded in MMSA MCTN.py. Trainer: Adam, no weight decay.

Deviations:
- MMSA's Seq2Seq feeds batch-first tensors to time-major LSTMs and loops over dimension 0, so it
  recurs over the batch, not over time; we recur over time, as the paper describes.
- MMSA's decoder calls its (bidirectional) LSTM on each one-step input without passing a state
  (the recurrent state is reset every step; only the attention query s is carried). We keep
  the module (so the parameter count matches) but carry its (h, c) from step to step, initialising
  h from s: two LSTM cells stepped side by side, outputs summed.
- MMSA leaves the first decoded frame at 0 (and scores it against the real first frame) and
  starts decoding from the real first frame; we decode every frame, from a zero start frame.
- Teacher forcing: MMSA's code draws a 0.5 coin but both branches feed the true frame, i.e. full
  teacher forcing; so do we (during training; no decoder runs at inference).
- Padding is masked: packed encoder and head LSTMs, attention and head weights masked to real
  steps, MSEs over real steps. MMSA runs over the padding. Masks are taken as prefixes.
- MMSA truncates sequences to max_seq_len 50 (its aligned MOSI data has 50 steps already); we do
  not truncate.
- The text target of the cycle loss is detached (with token-id text it is the trainable
  embedding, which the loss would otherwise pull towards the decoder's output).
- Text enters through `TextInput`: features pass through (MMSA: the pickle's 768-d BERT features;
  MMSA's own BERT option, use_bert, is off in its config); token ids go through a trainable
  embedding of width `token_embed_dim`.
- Modality subsets: text is required (it is the source); with one of audio/vision only level 1
  exists, with text alone no translation at all (see Architecture). MMSA always takes all three.
- Classification / multilabel: the head's last Linear has 3 / 4 outputs (MMSA: regression only).
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
  MMSA's trainer skips half of each MOSEI epoch; we do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput, masked_mean
from msabench.models.layers.sequence_losses import masked_mse

# MMSA's hierarchy: text -> vision (with cycle) at level 1, then -> audio at level 2.
TARGET_ORDER = ("v", "a")



def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of (B, T) scores with padded steps excluded."""
    return F.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)


class Encoder(nn.Module):
    """Bidirectional LSTM; per-step outputs summed over directions, s = tanh(W(h_fwd + h_bwd))."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(hidden, hidden, bias=False)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(x.float(), _lengths(mask), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, 2H)
        joint = out[..., :self.hidden] + out[..., self.hidden:]  # (B, T, H)
        s = torch.tanh(self.fc(h_n[-2] + h_n[-1]))  # (B, H)
        return joint, s


class Attention(nn.Module):
    """Additive attention: softmax_i v^T tanh(W [s; e_i]) over the real encoder steps."""

    def __init__(self, hidden: int):
        super().__init__()
        self.attn = nn.Linear(2 * hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, s: torch.Tensor, joint: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = s.unsqueeze(1).expand(-1, joint.shape[1], -1)  # (B, T, H)
        energy = torch.tanh(self.attn(torch.cat([query, joint], dim=2)))
        return masked_softmax(self.v(energy).squeeze(2), mask)  # (B, T)


class Decoder(nn.Module):
    """Attention decoder; the LSTM is MMSA's bidirectional one, stepped one frame at a time with its
    state carried (two cells side by side, outputs summed)."""

    def __init__(self, out_dim: int, hidden: int):
        super().__init__()
        self.attention = Attention(hidden)
        self.rnn = nn.LSTM(out_dim + hidden, hidden, batch_first=True, bidirectional=True)
        self.fc_out = nn.Linear(2 * hidden, out_dim)
        self.hidden = hidden

    def forward(self, joint: torch.Tensor, src_mask: torch.Tensor, s: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoding of `target` (B, T_trg, D): returns the predicted (B, T_trg, D)."""
        b, steps, width = target.shape
        h = s.unsqueeze(0).repeat(2, 1, 1).contiguous()  # (2, B, H)
        c = torch.zeros_like(h)
        prev = target.new_zeros(b, width)  # start frame
        frames = []
        for t in range(steps):
            weights = self.attention(s, joint, src_mask)  # (B, T_src)
            context = torch.bmm(weights.unsqueeze(1), joint).squeeze(1)  # (B, H)
            out, (h, c) = self.rnn(torch.cat([prev, context], dim=1).unsqueeze(1), (h, c))
            out = out[:, 0, :self.hidden] + out[:, 0, self.hidden:]  # (B, H)
            frames.append(self.fc_out(torch.cat([out, context], dim=1)))
            s = h[0] + h[1]
            prev = target[:, t]
        return torch.stack(frames, dim=1)


class Seq2Seq(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, with_decoder: bool):
        super().__init__()
        self.encoder = Encoder(in_dim, hidden)
        self.decoder = Decoder(out_dim, hidden) if with_decoder else None


class AttentiveHead(nn.Module):
    """MMSA's Regression module: LSTM, weights softmax(tanh(w^T h_i)), weighted sum, Linear."""

    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
        self.linear = nn.Linear(hidden, 1)
        self.linear2 = nn.Linear(hidden, n_out)

    def forward(self, joint: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(joint, _lengths(mask), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=joint.shape[1])  # (B, T, H)
        weights = masked_softmax(torch.tanh(self.linear(out)).squeeze(2), mask)  # (B, T)
        pooled = (out * weights.unsqueeze(2)).sum(dim=1)  # (B, H)
        return self.linear2(pooled)


@dataclass(frozen=True)
class MCTNConfig:
    # MMSA config_regression.json "mctn" / "mosi": hid_dim
    hidden: int = 32
    # MMSA MCTN.py loss_all: 0.1 * loss_v + 0.1 * loss_t + 0.1 * loss_a + 1.0 * loss_y
    translation_weight: float = 0.1  # text -> vision (level 1)
    cycle_weight: float = 0.1  # vision-hat -> text (level 1, back-translation)
    translation2_weight: float = 0.1  # joint -> audio (level 2)
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


@MODELS.register()
class MCTN(MSAModel):
    name: ClassVar[str] = "mctn"
    config_cls: ClassVar[type] = MCTNConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    REQUIRED_MODALITIES: ClassVar[tuple[str, ...]] = ("t",)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-4,  # init_lr
        "train.batch_size": 32,
        "train.weight_decay": 0.0,
        "train.clip": 1.0,  # grad_clip
        "train.epochs": 100,
        "train.patience": 8,
    }
    # MMSA has a "mosi" entry only; it equals the defaults, so no presets.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg: MCTNConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if "t" not in spec.modalities:
            raise ValueError("mctn translates from text: it needs modality t")
        self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        self.targets = tuple(m for m in TARGET_ORDER if m in spec.modalities)
        widths = [self.text_input.out_dim] + [int(spec.dims[m]) for m in self.targets]
        self.width = max(widths)  # MMSA pads every modality to the widest (768 on MOSI)
        h = cfg.hidden
        level1_decodes = bool(self.targets) and (cfg.translation_weight > 0 or cfg.cycle_weight > 0)
        self.level1 = Seq2Seq(self.width, self.width, h, with_decoder=level1_decodes)
        self.level2 = (Seq2Seq(h, self.width, h, with_decoder=cfg.translation2_weight > 0)
                       if len(self.targets) == 2 else None)
        self.head = AttentiveHead(h, 1 if spec.task == "regression" else int(spec.n_outputs))

    @classmethod
    def tiny(cls) -> MCTNConfig:
        return MCTNConfig(hidden=8, token_embed_dim=8)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x.float(), (0, self.width - x.shape[-1]))

    def forward(self, batch: Batch) -> ModelOutput:
        text, text_mask = self.text_input(batch)  # (B, T, D_t), (B, T)
        text = self._pad(text)  # (B, T, D)
        joint1, s1 = self.level1.encoder(text, text_mask)  # (B, T, H), (B, H)
        joint = joint1
        if self.level2 is not None:
            joint, s2 = self.level2.encoder(joint1, text_mask)  # (B, T, H)
        out = self.head(joint, text_mask)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = {"t": masked_mean(joint1, text_mask), "fusion": masked_mean(joint, text_mask)}  # (B, H) each
        aux = {}
        if self.training:
            aux = self._translation_losses(batch, text.detach(), text_mask, joint1, s1,
                                           (joint, s2) if self.level2 is not None else None)
        return ModelOutput(pred=out, aux_losses=aux, features=features)

    def _target(self, batch: Batch, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = batch.modality(m)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self._pad(x), mask.bool()

    def _translation_losses(self, batch: Batch, text: torch.Tensor, text_mask: torch.Tensor,
                            joint1: torch.Tensor, s1: torch.Tensor,
                            level2: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        cfg, losses = self.cfg, {}
        decoder1 = self.level1.decoder
        if decoder1 is not None:
            first = self.targets[0]
            x1, mask1 = self._target(batch, first)
            x1_hat = decoder1(joint1, text_mask, s1, x1)  # (B, T_1, D)
            if cfg.translation_weight > 0:
                losses[f"translate_{first}"] = cfg.translation_weight * masked_mse(x1_hat, x1, mask1)
            if cfg.cycle_weight > 0:
                back_joint, back_s = self.level1.encoder(x1_hat, mask1)
                text_hat = decoder1(back_joint, mask1, back_s, text)  # (B, T, D)
                losses["cycle_t"] = cfg.cycle_weight * masked_mse(text_hat, text, text_mask)
        if level2 is not None and self.level2.decoder is not None:
            second = self.targets[1]
            x2, mask2 = self._target(batch, second)
            x2_hat = self.level2.decoder(level2[0], text_mask, level2[1], x2)
            losses[f"translate_{second}"] = cfg.translation2_weight * masked_mse(x2_hat, x2, mask2)
        return losses
