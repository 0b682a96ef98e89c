"""`misa`: Modality-Invariant and -Specific representations (shared and private subspaces).

Paper: D. Hazarika, R. Zimmermann, S. Poria, "MISA: Modality-Invariant and -Specific Representations
for Multimodal Sentiment Analysis", ACM Multimedia 2020. Reference code followed: MMSA 2.2.1
(src/MMSA/models/singleTask/MISA.py, trainer trains/singleTask/MISA.py), adapted there from the
authors' declare-lab/MISA; it is the form in which the MSA literature's MISA rows are run.

Architecture (as in MMSA, modalities in its order text, vision, audio):
- utterance vectors: text through a fine-tuned BERT (`TextInput` owns the `TextEncoder`), its last
  layer averaged over the real tokens; audio and vision through the paper's sLSTM: a bidirectional
  LSTM (width = the input width, as MMSA), LayerNorm over its outputs, a second bidirectional LSTM;
  the final hidden states of both LSTMs in both directions, concatenated (4 x the input width);
- projection per modality to `hidden_size`: Linear, ReLU, LayerNorm;
- a private (specific) encoder per modality and one shared (invariant) encoder for all:
  Linear(hidden, hidden) + Sigmoid each;
- fusion: the six vectors (private t, v, a, shared t, v, a) as a sequence of six through one
  transformer encoder layer (torch's: `fusion_heads` heads, feed-forward `fusion_ff`, dropout
  `fusion_dropout`, post-LN, ReLU), concatenated, then Linear(6h, 3h), dropout, ReLU,
  Linear(3h, output).

Losses (training only, each an `aux_losses` entry already multiplied by its weight):
- `cmd` = sim_weight x the central moment discrepancy (`cmd_moments` = 5 moments) between the shared
  vectors, averaged over the modality pairs (t, v), (t, a), (a, v): the paper's L_sim (eq. 9);
- `diff` = diff_weight x the soft orthogonality loss ||S^T P||_F^2 (averaged over the entries, as
  MMSA), each side centred over the batch and its rows L2-normalised with the norm detached, summed
  over private/shared of each modality and over the three pairs of private vectors: L_diff (eq. 10);
- `recon` = recon_weight x the MSE between Linear(private + shared) and the projected vector,
  averaged over the modalities: L_recon (eq. 11).
Task loss: MSE for regression (MMSA's trainer and the authors' code; `regression_loss=l1` gives the
harness's L1), cross-entropy / BCE otherwise. After each backward the gradients are clipped by value
(`grad_clip_value`, MMSA's clip_grad_value_).

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "misa": datasetParams
mosi (= the defaults), mosei, sims: hidden_size, dropout, diff_weight, sim_weight, recon_weight,
grad_clip -> `grad_clip_value`, batch_size, learning_rate (one Adam over every parameter, BERT
included: train.text_lr = train.lr), pretrained -> text.encoder (bert-base-uncased; bert-base-chinese
for sims); commonParams use_finetune true -> text.frozen false, update_epochs 2 -> train.grad_accum 2,
early_stop 8 -> train.patience, use_cmd_sim true (CMD, not the adversarial discriminator), rnncell
lstm. CMD's 5 moments: trains/singleTask/MISA.py get_cmd_loss. The fusion layer's heads (2),
feed-forward width (2048) and dropout (0.1): MISA.py's nn.TransformerEncoderLayer(d_model=hidden_size,
nhead=2) with torch's defaults. meld and iemocap (no MMSA entry) get the mosi settings and
bert-base-uncased.

Deviations:
- CMD's norms are sqrt(sum + 1e-12) (MMSA: sqrt(sum)). When two modalities' shared moments coincide
  (a collapsed shared space, seen at lr 1e-3 on the synthetic suite) sqrt's gradient at 0 made every
  loss NaN in the first epoch; the value changes by at most 1e-6 per moment.
- Each modality's LSTMs run over its own real frames. MMSA packs audio and vision with the *text's*
  lengths (MISA.py alignment(): `lengths = mask_len`), which on unaligned data reads only the first
  few frames; the authors' code ran on word-aligned data, where the lengths agree.
- weight_decay: config_regression.json lists 5e-5 for mosei and sims, but MMSA's trainer builds
  Adam without it; we follow the trainer (train.weight_decay 0 everywhere).
- Left out, as unused by MMSA's computation: the shared-private discriminator `sp_discriminator`
  (its output enters no loss; sp_weight is never read), the text LayerNorm `tlayer_norm` (used only
  without BERT), and the adversarial modality discriminator (built only when use_cmd_sim is false).
  At MOSI shapes with bert-base-uncased that is 516 + 3,072 parameters fewer than MMSA.
- BERT's pooler: MMSA loads BertModel with its pooler (590,592 parameters that MISA never uses);
  with `msabench models --params` (bert-base-uncased's config, no weights) the encoder is built
  without it. With the real bert-base-uncased weights it is there, unused, as in MMSA.
- Gradient accumulation: MMSA sums the gradients of 2 batches, we average them (the loss is divided
  by train.grad_accum); the value clip bound is divided alike, so each clipped update is MMSA's / 2,
  which Adam's update does not see (up to its epsilon). MMSA also steps once more at an epoch's end
  when its counter happens to be 0 (a re-step of the last update's gradients); we do not.
- Any non-empty subset of modalities: with M modalities the fusion sees 2M vectors (Linear(2M h,
  M h)), CMD runs over the pairs present, the orthogonality loss over the present private/shared and
  private pairs (MMSA takes all three).
- Text through `TextInput`: precomputed features (`text.encoder=features`, MMSA's frozen-BERT
  vectors) or a frozen encoder are averaged the same way; token ids go through a trainable embedding
  of width `token_embed_dim` and are averaged too (MMSA's use_bert=false path, an sLSTM over GloVe,
  is not built).
- Multilabel head (IEMOCAP): 4 logits; MMSA has none. Classification uses the regression presets.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput, UserError, masked_mean

# MMSA's order of the six subspace vectors: text, vision, audio.
MODALITY_ORDER = ("t", "v", "a")
REGRESSION_LOSSES = ("mse", "l1")
_BERT = {"text.encoder": "bert-base-uncased", "text.frozen": False}  # use_bert, use_finetune


@dataclass(frozen=True)
class MISAConfig:
    # MMSA config_regression.json "misa" / "mosi"
    hidden_size: int = 128
    dropout: float = 0.2  # the fusion head's dropout
    diff_weight: float = 0.1
    sim_weight: float = 0.3
    recon_weight: float = 1.0
    grad_clip_value: float = 0.8  # grad_clip (clip_grad_value_); 0 = off
    cmd_moments: int = 5  # trains/singleTask/MISA.py: CMD(..., 5)
    # MISA.py: nn.TransformerEncoderLayer(d_model=hidden_size, nhead=2), torch defaults otherwise
    fusion_heads: int = 2
    fusion_ff: int = 2048
    fusion_dropout: float = 0.1
    regression_loss: str = "mse"  # MMSA's trainer: nn.MSELoss()
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _preset(dropout: float, diff: float, sim: float, recon: float, grad_clip: float, batch_size: int, lr: float,
            encoder: str = "bert-base-uncased") -> dict[str, Any]:
    return {"model.dropout": dropout, "model.diff_weight": diff, "model.sim_weight": sim,
            "model.recon_weight": recon, "model.grad_clip_value": grad_clip, "train.batch_size": batch_size,
            "train.lr": lr, "train.text_lr": lr, **_BERT, "text.encoder": encoder}


CMD_EPS = 1e-12  # shifts the loss by at most moments * 1e-6; see Deviations


def cmd(x1: torch.Tensor, x2: torch.Tensor, moments: int) -> torch.Tensor:
    """Central moment discrepancy of two batches (B, D): ||E x1 - E x2|| plus, for k = 2..moments,
    ||c_k(x1) - c_k(x2)|| with c_k the k-th central moment per feature (Zellinger et al. 2017, MISA
    eq. 9, unscaled as in MMSA)."""
    mean1, mean2 = x1.mean(dim=0), x2.mean(dim=0)
    centred1, centred2 = x1 - mean1, x2 - mean2
    total = _distance(mean1, mean2)
    for k in range(2, moments + 1):
        total = total + _distance(centred1.pow(k).mean(dim=0), centred2.pow(k).mean(dim=0))
    return total


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a - b||, with CMD_EPS under the root: sqrt's gradient at 0 is infinite (NaN after the chain rule)."""
    return ((a - b).pow(2).sum() + CMD_EPS).sqrt()


def orthogonality(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Soft orthogonality of two batches (B, D1), (B, D2): the mean squared entry of X1^T X2 after
    centring each over the batch and scaling its rows to unit norm (norm detached, as MMSA's DiffLoss)."""
    x1 = x1 - x1.mean(dim=0, keepdim=True)
    x2 = x2 - x2.mean(dim=0, keepdim=True)
    x1 = x1 / (x1.norm(dim=1, keepdim=True).detach() + 1e-6)
    x2 = x2 / (x2.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (x1.t() @ x2).pow(2).mean()


class StackedLSTM(nn.Module):
    """The paper's sLSTM (MMSA extract_features): biLSTM, LayerNorm over its outputs, biLSTM, each over
    the real frames; the final states of both, both directions -> (B, 4 x width)."""

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.rnn1 = nn.LSTM(in_dim, width, bidirectional=True, batch_first=True)
        self.norm = nn.LayerNorm(2 * width)
        self.rnn2 = nn.LSTM(2 * width, width, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), mask: (B, T) prefix of real frames
        lengths = mask.sum(dim=1).clamp_min(1).to("cpu", torch.int64)
        packed = pack_padded_sequence(x.float(), lengths, batch_first=True, enforce_sorted=False)
        out1, (h1, _) = self.rnn1(packed)  # h1: (2, B, width)
        normed = PackedSequence(self.norm(out1.data), out1.batch_sizes, out1.sorted_indices, out1.unsorted_indices)
        _, (h2, _) = self.rnn2(normed)  # (2, B, width)
        # MMSA's layout: per direction [h1, h2], forward direction first
        return torch.cat((h1, h2), dim=2).permute(1, 0, 2).reshape(x.shape[0], -1)  # (B, 4 x width)


def _projection(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden))


@MODELS.register()
class MISA(MSAModel):
    name: ClassVar[str] = "misa"
    config_cls: ClassVar[type] = MISAConfig
    impl_version: ClassVar[int] = 2  # 2: CMD_EPS under the roots
    USES_TEXT_ENCODER: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-4,
        "train.text_lr": 1e-4,  # one Adam over every parameter, BERT included
        "train.batch_size": 16,
        "train.grad_accum": 2,  # update_epochs
        "train.weight_decay": 0.0,  # MMSA's trainer passes none (see Deviations)
        "train.clip": 0.0,  # clipping is by value (model.grad_clip_value)
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": _preset(0.2, 0.1, 0.3, 1.0, 0.8, batch_size=16, lr=1e-4),
        "mosei": _preset(0.5, 0.3, 0.8, 1.0, 0.8, batch_size=64, lr=1e-4),
        "sims": _preset(0.0, 0.3, 1.0, 0.8, 1.0, batch_size=64, lr=1e-4, encoder="bert-base-chinese"),
        "meld": dict(_BERT),
        "iemocap": dict(_BERT),
    }

    def __init__(self, cfg: MISAConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if cfg.regression_loss not in REGRESSION_LOSSES:
            raise UserError(f"model.regression_loss={cfg.regression_loss!r}: use one of {', '.join(REGRESSION_LOSSES)}")
        self.order = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.order:
            raise ValueError("misa needs at least one modality")
        h = cfg.hidden_size
        in_dims = {}
        self.text_input = None
        if "t" in self.order:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            in_dims["t"] = self.text_input.out_dim
        self.slstm = nn.ModuleDict({m: StackedLSTM(int(spec.dims[m]), int(spec.dims[m])) for m in self.order
                                    if m != "t"})
        in_dims.update({m: 4 * int(spec.dims[m]) for m in self.slstm})
        self.project = nn.ModuleDict({m: _projection(in_dims[m], h) for m in self.order})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(h, h), nn.Sigmoid()) for m in self.order})
        self.shared = nn.Sequential(nn.Linear(h, h), nn.Sigmoid())
        # only trained by the reconstruction loss: absent without it
        self.recon = nn.ModuleDict({m: nn.Linear(h, h) for m in self.order} if cfg.recon_weight > 0 else {})
        self.fusion = nn.TransformerEncoderLayer(d_model=h, nhead=cfg.fusion_heads, dim_feedforward=cfg.fusion_ff,
                                                 dropout=cfg.fusion_dropout, batch_first=True)
        n = len(self.order)
        out = 1 if spec.task == "regression" else int(spec.n_outputs)
        self.head = nn.Sequential(nn.Linear(2 * n * h, n * h), nn.Dropout(cfg.dropout), nn.ReLU(),
                                  nn.Linear(n * h, out))

    @classmethod
    def tiny(cls) -> MISAConfig:
        return MISAConfig(hidden_size=32, dropout=0.1, fusion_ff=32, token_embed_dim=8)

    def utterances(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One vector per modality: text averaged over its real tokens, audio/vision through the sLSTM."""
        out = {}
        for m in self.order:
            if m == "t":
                x, mask = self.text_input(batch)  # (B, T, D), (B, T)
                out[m] = masked_mean(x.float(), mask)  # (B, D)
            else:
                x, mask = batch.modality(m)  # (B, T_m, D_m), (B, T_m)
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                out[m] = self.slstm[m](x, mask.bool())  # (B, 4 D_m)
        return out

    def forward(self, batch: Batch) -> ModelOutput:
        projected = {m: self.project[m](u) for m, u in self.utterances(batch).items()}  # m -> (B, h)
        private = {m: self.private[m](projected[m]) for m in self.order}  # m -> (B, h)
        shared = {m: self.shared(projected[m]) for m in self.order}  # m -> (B, h)
        subspaces = torch.stack([private[m] for m in self.order] + [shared[m] for m in self.order], dim=1)
        fused = self.fusion(subspaces).flatten(1)  # (B, 2M, h) -> (B, 2M h)
        pred = self.head(fused)  # (B, out)
        if self.spec.task == "regression":
            pred = pred.squeeze(-1)
        features = {f"private_{m}": private[m] for m in self.order}
        features.update({f"shared_{m}": shared[m] for m in self.order})
        features["fusion"] = fused
        aux = self.aux_losses(projected, private, shared) if self.training else {}
        return ModelOutput(pred=pred, aux_losses=aux, features=features)

    def aux_losses(self, projected: dict[str, torch.Tensor], private: dict[str, torch.Tensor],
                   shared: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weighted L_sim (CMD), L_diff and L_recon of the paper (eqs. 9-11), MMSA's forms."""
        cfg, losses = self.cfg, {}
        # MMSA's pairs: (t, v), (t, a), (a, v)
        pairs = [(a, b) for a, b in (("t", "v"), ("t", "a"), ("a", "v")) if a in shared and b in shared]
        if cfg.sim_weight > 0 and pairs:
            sim = sum(cmd(shared[a], shared[b], cfg.cmd_moments) for a, b in pairs) / len(pairs)
            losses["cmd"] = cfg.sim_weight * sim
        if cfg.diff_weight > 0:
            diff = sum(orthogonality(private[m], shared[m]) for m in self.order)
            for a, b in (("a", "t"), ("a", "v"), ("t", "v")):
                if a in private and b in private:
                    diff = diff + orthogonality(private[a], private[b])
            losses["diff"] = cfg.diff_weight * diff
        if self.recon:
            recon = sum(F.mse_loss(self.recon[m](private[m] + shared[m]), projected[m]) for m in self.order)
            losses["recon"] = cfg.recon_weight * recon / len(self.order)
        return losses

    def task_loss(self, pred: torch.Tensor, y: torch.Tensor, ctx: Any) -> torch.Tensor:
        if self.spec.task == "regression" and self.cfg.regression_loss == "mse":
            return F.mse_loss(pred.reshape(-1).float(), y.float())
        return ctx.loss_fn(pred, y)

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            out = self(batch)
            task = self.task_loss(out.pred, batch.y, ctx)
            loss = task + sum(out.aux_losses.values())
        ctx.backward(loss)
        if self.cfg.grad_clip_value > 0:
            ctx.clip_accumulated_values(self.parameters(), self.cfg.grad_clip_value)
        ctx.step()
        logged = {"task": float(task.detach())}
        logged.update({k: float(v.detach()) for k, v in out.aux_losses.items()})
        logged["total"] = float(loss.detach())
        return logged

    def inference_parameter_count(self) -> int:
        """The reconstruction layers serve the training loss only."""
        return sum(p.numel() for p in self.parameters()) - sum(p.numel() for p in self.recon.parameters())
