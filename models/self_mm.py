"""`self_mm`: Self-MM, BERT + LSTM encoders with self-supervised unimodal labels (ULGM), four heads.

Paper: W. Yu, H. Xu, Z. Yuan, J. Wu, "Learning Modality-Specific Representations with
Self-Supervised Multi-Task Learning for Multimodal Sentiment Analysis", AAAI 2021.
Reference code: MMSA 2.2.1 (thuiar/MMSA) models/multiTask/SELF_MM.py and
trains/multiTask/SELF_MM.py, the same code as the authors' thuiar/Self-MM; read for facts.

Architecture (MMSA's SELF_MM):
- text: the [CLS] vector of the last layer of a fine-tuned bert-base-uncased (through `TextInput`;
  the family presets set text.encoder=bert-base-uncased, text.frozen=false; width 768 = MMSA's
  text_out);
- audio, vision: one LSTM each over the real frames, its final state, dropout, Linear
  (`RecurrentSubNet`, MMSA's AuViSubNet) to audio_out / video_out;
- fusion head on concat(text, audio, vision): dropout, Linear to post_fusion_dim + ReLU (the fused
  representation F_m), Linear + ReLU, Linear to 1;
- one head per modality on its own vector, the same shape (post_text_dim / post_audio_dim /
  post_video_dim): F_s after the first Linear + ReLU, a prediction y_s.

Training (MMSA's trainer), four L1 losses summed: |y_m_hat - y_m| for the fusion head, and per
modality s the mean of tanh(|y_s - y_m|) * |y_s_hat - y_s| against the generated label y_s.
ULGM, per training sample (kept by `batch.index` in `ctx.state`, sized by `ctx.n_train`):
- labels: y_s starts at the multimodal label y_m;
- global features: F_m, F_t, F_a, F_v of each sample, overwritten each time the sample is trained;
- class centres: per modality the mean stored feature of the samples whose label (y_m for the
  fusion, the generated y_s for s) is > 0 (positive) and < 0 (negative; labels equal to 0 belong to
  neither, MMSA's excludeZero), recomputed after every step;
- update, from the second epoch on, in the step that trains the sample, after the backward pass and
  before the optimiser step, from the centres as the previous step left them:
  delta_f = (d_fn - d_fp) / d_fp, delta_s = (d_sn - d_sp) / d_sp (Euclidean distances of F to the
  centres), alpha = delta_s / delta_f, y_new = clamp(alpha y_m / 2 + (y_m + delta_s - delta_f) / 2,
  -H, H), and y_s <- (n-1)/(n+1) y_s + 2/(n+1) y_new with n the epoch (1-based).
Timing: each sample's labels change once per epoch (in the step that sees it) and the centres after
every step. The paper writes the momentum update (Eq. 9) per epoch i; MMSA applies it per step in
this way, and this plugin follows MMSA.
The per-epoch mean |y_m - y_s| over the training samples is written into the epoch's train record
as `loss.train_label_gap_t` / `_a` / `_v` (`on_validation_end`).

Defaults and presets: MMSA config_regression.json "self_mm" (defaults = its "mosi" entry; presets
mosi, mosei, sims): LSTM widths, layers and dropouts, head widths and dropouts, H (`label_bound`),
excludeZero; learning rates bert 5e-5 (train.text_lr), audio/video (`audio_lr`, `video_lr`),
other (train.lr); weight decays bert (`text_weight_decay`; its biases and LayerNorm weights get
none, as MMSA groups them), audio, video, other (train.weight_decay); batch_size; update_epochs 4
(MMSA's gradient accumulation: train.grad_accum); early_stop 8 (train.patience); Adam; no
scheduler. sims: bert-base-chinese, as MMSA.

Deviations:
- Gradient accumulation: MMSA sums the 4 micro-batch gradients and drops an epoch's last partial
  group; the harness averages them (ctx.backward divides by train.grad_accum) and steps the partial
  group at the epoch end. Under Adam the scale matters only through eps and the coupled weight decay.
- MMSA initialises every label in a pass over the training set before training and computes the
  centres over all rows (rows not yet trained count as zero features during epoch 1); here a label
  is initialised when its sample is first trained and the centres use the samples trained so far.
  The labels are the same: updates start in epoch 2, when every training sample has been seen.
- A class with no member keeps its previous centre (MMSA's mean over no rows is NaN, and every label
  updated from it too).
- train.epochs caps the run at 100 epochs; MMSA trains until early stopping.
- Regression only (MMSA asserts train_mode regression; the labels are sentiment scores).
- Text as plain token ids (text.encoder=tokens) has no encoder to give [CLS] context: the text
  vector is then the masked mean of the token embeddings. Precomputed features (MMSA's pickled BERT
  features: a frozen BERT) use the first position, as MMSA's [CLS].
- bert-base-uncased with its pooler (MMSA's from_pretrained) has 590,592 parameters more than the
  harness's count, which builds BERT from its config without the pooler; neither model uses it.
- MMSA's config key t_bert_dropout is read by no code; BERT's own dropout (0.1) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, OptimizerSpec, TextInput, masked_mean
from msabench.models.layers.recurrent import RecurrentSubNet

MODALITY_ORDER = ("t", "a", "v")  # MMSA's concatenation order for the fusion
FUSION = "m"
# MMSA groups BERT's parameters whose names contain these without weight decay
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")
DISTANCE_EPS = 1e-8  # MMSA's MIN


@dataclass(frozen=True)
class SelfMMConfig:
    # MMSA config_regression.json "self_mm", datasetParams "mosi"
    a_lstm_hidden_size: int = 16
    v_lstm_hidden_size: int = 32
    a_lstm_layers: int = 1
    v_lstm_layers: int = 1
    audio_out: int = 16
    video_out: int = 32
    a_lstm_dropout: float = 0.0
    v_lstm_dropout: float = 0.0
    post_fusion_dim: int = 128
    post_text_dim: int = 32
    post_audio_dim: int = 16
    post_video_dim: int = 32
    post_fusion_dropout: float = 0.0
    post_text_dropout: float = 0.1
    post_audio_dropout: float = 0.1
    post_video_dropout: float = 0.0
    label_bound: float = 3.0  # H: generated labels are clamped to [-H, H]
    exclude_zero: bool = True  # excludeZero: labels equal to 0 belong to no centre
    audio_lr: float = 5e-3  # learning_rate_audio
    video_lr: float = 5e-3  # learning_rate_video
    text_weight_decay: float = 1e-3  # weight_decay_bert
    audio_weight_decay: float = 1e-3  # weight_decay_audio
    video_weight_decay: float = 1e-3  # weight_decay_video
    # msabench: embedding width when text comes as plain token ids
    token_embed_dim: int = 128


def self_mm_preset(batch_size: int, lrs: tuple[float, float, float, float], decays: tuple[float, float, float, float],
                   v_lstm_hidden: int, post_text_dim: int, dropouts: tuple[float, float, float, float],
                   label_bound: float, encoder: str) -> dict[str, Any]:
    """One MMSA "self_mm" datasetParams entry: lrs and decays in MMSA's bert, audio, video, other
    order; dropouts in post fusion, text, audio, video order. Keys equal across datasets stay at the defaults."""
    return {
        "text.encoder": encoder, "text.frozen": False,
        "train.batch_size": batch_size, "train.text_lr": lrs[0], "model.audio_lr": lrs[1],
        "model.video_lr": lrs[2], "train.lr": lrs[3],
        "model.text_weight_decay": decays[0], "model.audio_weight_decay": decays[1],
        "model.video_weight_decay": decays[2], "train.weight_decay": decays[3],
        "model.v_lstm_hidden_size": v_lstm_hidden, "model.post_text_dim": post_text_dim,
        "model.post_fusion_dropout": dropouts[0], "model.post_text_dropout": dropouts[1],
        "model.post_audio_dropout": dropouts[2], "model.post_video_dropout": dropouts[3],
        "model.label_bound": label_bound,
    }


class Head(nn.Module):
    """MMSA's post layers: dropout, Linear + ReLU (the representation F), Linear + ReLU, Linear to 1."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layer_1 = nn.Linear(in_dim, dim)
        self.layer_2 = nn.Linear(dim, dim)
        self.layer_3 = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, in_dim) -> F (B, dim), prediction (B,)
        feature = F.relu(self.layer_1(self.dropout(x)))
        return feature, self.layer_3(F.relu(self.layer_2(feature))).squeeze(-1)


class UnimodalLabels:
    """ULGM's per-sample state: labels (fusion = y_m, and one generated label per modality), the
    global features, the positive/negative centres per modality, and which samples were trained."""

    def __init__(self, n_train: int, dims: dict[str, int], device: torch.device):
        self.labels = {m: torch.zeros(n_train, device=device) for m in dims}
        self.features = {m: torch.zeros(n_train, d, device=device) for m, d in dims.items()}
        self.centres = {m: torch.zeros(2, d, device=device) for m, d in dims.items()}  # rows: positive, negative
        self.seen = torch.zeros(n_train, dtype=torch.bool, device=device)

    @property
    def unimodal(self) -> tuple[str, ...]:
        return tuple(m for m in self.labels if m != FUSION)

    def observe(self, index: torch.Tensor, y: torch.Tensor) -> None:
        """y_m of the batch; a sample's generated labels start at y_m when it is first trained."""
        self.labels[FUSION][index] = y
        new = ~self.seen[index]
        for s in self.unimodal:
            self.labels[s][index[new]] = y[new]
        self.seen[index] = True

    def relative_distance(self, m: str, feature: torch.Tensor) -> torch.Tensor:
        """(d_n - d_p) / d_p of (B, d) features to modality m's centres -> (B,)."""
        d_pos = torch.linalg.vector_norm(feature - self.centres[m][0], dim=-1)
        d_neg = torch.linalg.vector_norm(feature - self.centres[m][1], dim=-1)
        return (d_neg - d_pos) / (d_pos + DISTANCE_EPS)

    def update_labels(self, index: torch.Tensor, features: dict[str, torch.Tensor], epoch: int, bound: float) -> None:
        """MMSA's update_labels for the batch's samples (epoch is 1-based; called from epoch 2 on)."""
        y_m = self.labels[FUSION][index]
        delta_f = self.relative_distance(FUSION, features[FUSION])
        for s in self.unimodal:
            delta_s = self.relative_distance(s, features[s])
            alpha = delta_s / (delta_f + DISTANCE_EPS)
            fresh = (0.5 * alpha * y_m + 0.5 * (y_m + delta_s - delta_f)).clamp(-bound, bound)
            old = self.labels[s][index]
            self.labels[s][index] = (epoch - 1) / (epoch + 1) * old + 2 / (epoch + 1) * fresh

    def store_features(self, index: torch.Tensor, features: dict[str, torch.Tensor]) -> None:
        for m, f in features.items():
            self.features[m][index] = f

    def update_centres(self, exclude_zero: bool) -> None:
        for m, labels in self.labels.items():
            positive = self.seen & ((labels > 0) if exclude_zero else (labels >= 0))
            negative = self.seen & (labels < 0)
            for row, members in ((0, positive), (1, negative)):
                if bool(members.any()):  # an empty class keeps its centre (see Deviations)
                    self.centres[m][row] = self.features[m][members].mean(dim=0)

    def mean_gaps(self) -> dict[str, float]:
        """Mean |y_m - y_s| over the samples trained so far, per modality."""
        if not bool(self.seen.any()):
            return {}
        y_m = self.labels[FUSION][self.seen]
        return {s: float((y_m - self.labels[s][self.seen]).abs().mean()) for s in self.unimodal}


@MODELS.register()
class SelfMM(MSAModel):
    name: ClassVar[str] = "self_mm"
    config_cls: ClassVar[type] = SelfMMConfig
    impl_version: ClassVar[int] = 1
    TASKS: ClassVar[tuple[str, ...]] = ("regression",)
    USES_TEXT_ENCODER: ClassVar[bool] = True
    # the unimodal heads get gradient once labels differ from y_m, from the second epoch on
    CONFORMANCE_EPOCHS: ClassVar[int] = 2
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-3,  # learning_rate_other
        "train.text_lr": 5e-5,  # learning_rate_bert
        "train.weight_decay": 1e-3,  # weight_decay_other
        "train.batch_size": 16,
        "train.grad_accum": 4,  # update_epochs: MMSA steps once every 4 batches
        "train.epochs": 100,  # a cap: MMSA trains until early stopping
        "train.patience": 8,  # early_stop
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": self_mm_preset(16, (5e-5, 5e-3, 5e-3, 1e-3), (1e-3, 1e-3, 1e-3, 1e-3), 32, 32,
                               (0.0, 0.1, 0.1, 0.0), 3.0, "bert-base-uncased"),
        "mosei": self_mm_preset(32, (5e-5, 5e-3, 1e-4, 1e-3), (1e-3, 0.0, 0.0, 1e-2), 32, 32,
                                (0.1, 0.0, 0.0, 0.0), 3.0, "bert-base-uncased"),
        "sims": self_mm_preset(32, (5e-5, 5e-3, 5e-3, 1e-3), (1e-3, 1e-2, 1e-2, 1e-3), 64, 64,
                               (0.0, 0.1, 0.1, 0.0), 1.0, "bert-base-chinese"),
    }

    def __init__(self, cfg: SelfMMConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("self_mm needs at least one modality")
        widths = {}
        if "t" in self.modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            widths["t"] = self.text_input.out_dim  # MMSA's text_out: BERT's width
        if "a" in self.modalities:
            self.audio_model = RecurrentSubNet(int(spec.dims["a"]), cfg.a_lstm_hidden_size, cfg.audio_out,
                                               cfg.a_lstm_layers, cfg.a_lstm_dropout)
            widths["a"] = cfg.audio_out
        if "v" in self.modalities:
            self.video_model = RecurrentSubNet(int(spec.dims["v"]), cfg.v_lstm_hidden_size, cfg.video_out,
                                               cfg.v_lstm_layers, cfg.v_lstm_dropout)
            widths["v"] = cfg.video_out
        self.head_dims = {FUSION: cfg.post_fusion_dim, "t": cfg.post_text_dim, "a": cfg.post_audio_dim,
                          "v": cfg.post_video_dim}
        dropouts = {FUSION: cfg.post_fusion_dropout, "t": cfg.post_text_dropout, "a": cfg.post_audio_dropout,
                    "v": cfg.post_video_dropout}
        self.heads = nn.ModuleDict({FUSION: Head(sum(widths.values()), cfg.post_fusion_dim, cfg.post_fusion_dropout)})
        for m in self.modalities:
            self.heads[m] = Head(widths[m], self.head_dims[m], dropouts[m])

    @classmethod
    def tiny(cls) -> SelfMMConfig:
        return SelfMMConfig(a_lstm_hidden_size=4, v_lstm_hidden_size=4, audio_out=4, video_out=4, post_fusion_dim=8,
                            post_text_dim=8, post_audio_dim=8, post_video_dim=8, token_embed_dim=8)

    def text_vector(self, batch: Batch) -> torch.Tensor:
        x, mask = self.text_input(batch)  # (B, T, D), (B, T)
        if self.spec.text_kind == "tokens":  # no encoder: no [CLS] context (see Deviations)
            return masked_mean(x, mask)
        return x[:, 0]  # [CLS]

    def encode(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Representations F and predictions of the fusion ("m") and of each modality's head."""
        vectors = {}
        if "t" in self.modalities:
            vectors["t"] = self.text_vector(batch)  # (B, D_t)
        if "a" in self.modalities:
            vectors["a"] = self.audio_model(*batch.modality("a"))  # (B, audio_out)
        if "v" in self.modalities:
            vectors["v"] = self.video_model(*batch.modality("v"))  # (B, video_out)
        features, preds = {}, {}
        features[FUSION], preds[FUSION] = self.heads[FUSION](torch.cat([vectors[m] for m in self.modalities], dim=-1))
        for m in self.modalities:
            features[m], preds[m] = self.heads[m](vectors[m])  # (B, post_dim), (B,)
        return features, preds

    def forward(self, batch: Batch) -> ModelOutput:
        features, preds = self.encode(batch)
        named = {("fusion" if m == FUSION else m): f for m, f in features.items()}
        return ModelOutput(pred=preds[FUSION], features=named)

    # -- training ----------------------------------------------------------------------------------

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, OptimizerSpec]:
        """MMSA's five Adam groups: BERT with / without weight decay, audio, video, the rest."""
        cfg = self.cfg
        encoder = getattr(self, "text_input", None)
        encoder = encoder.encoder if encoder is not None else None
        bert = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad] if encoder is not None else []
        text_lr = float(train_cfg.get("train.text_lr", 5e-5))
        groups = [
            {"params": [p for n, p in bert if not any(k in n for k in NO_DECAY)], "lr": text_lr,
             "weight_decay": cfg.text_weight_decay},
            {"params": [p for n, p in bert if any(k in n for k in NO_DECAY)], "lr": text_lr, "weight_decay": 0.0},
        ]
        for attr, lr, decay in (("audio_model", cfg.audio_lr, cfg.audio_weight_decay),
                                ("video_model", cfg.video_lr, cfg.video_weight_decay)):
            if hasattr(self, attr):
                groups.append({"params": list(getattr(self, attr).parameters()), "lr": lr, "weight_decay": decay})
        taken = {id(p) for g in groups for p in g["params"]}
        groups.append({"params": [p for p in self.parameters() if p.requires_grad and id(p) not in taken]})
        return {"main": OptimizerSpec(groups)}

    def labels_state(self, ctx: Any, device: torch.device) -> UnimodalLabels:
        state = ctx.state.get("ulgm")
        if state is None:
            dims = {m: self.head_dims[m] for m in (FUSION, *self.modalities)}
            state = ctx.state["ulgm"] = UnimodalLabels(int(ctx.n_train), dims, device)
        return state

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        index = batch.index.long()
        y_m = batch.y.float()
        ulgm = self.labels_state(ctx, y_m.device)
        ulgm.observe(index, y_m)
        with ctx.autocast():
            features, preds = self.encode(batch)
            losses = {FUSION: (preds[FUSION].float() - y_m).abs().mean()}
            for s in self.modalities:
                y_s = ulgm.labels[s][index]
                weight = torch.tanh((y_s - y_m).abs())
                losses[s] = (weight * (preds[s].float() - y_s).abs()).mean()
            loss = sum(losses.values())
        ctx.backward(loss)
        with torch.no_grad():  # MMSA's order: labels from the previous step's centres, then features, then centres
            detached = {m: f.detach().float() for m, f in features.items()}
            epoch = int(ctx.epoch) + 1
            if epoch > 1:
                ulgm.update_labels(index, detached, epoch, self.cfg.label_bound)
            ulgm.store_features(index, detached)
            ulgm.update_centres(self.cfg.exclude_zero)
        ctx.step()
        logged = {"task": float(losses[FUSION].detach())}
        logged.update({f"loss_{s}": float(losses[s].detach()) for s in self.modalities})
        logged["total"] = float(loss.detach())
        return logged

    def on_epoch_end(self, ctx: Any) -> None:
        ulgm = ctx.state.get("ulgm")
        if ulgm is not None:
            ctx.state["label_gaps"] = ulgm.mean_gaps()

    def on_validation_end(self, ctx: Any, records: list[dict[str, Any]]) -> None:
        """The epoch's mean |y_m - y_s| goes into its (first) train record, beside the training losses."""
        gaps = ctx.state.get("label_gaps") or {}
        for record in records:
            if record.get("split") == "train":
                record.setdefault("loss", {}).update({f"train_label_gap_{s}": v for s, v in gaps.items()})
                break
