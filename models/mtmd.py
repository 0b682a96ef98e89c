"""`mtmd`: Multi-Task Momentum Distillation (re-implementation from the paper; no public code).

Paper: R. Lin and H. Hu, "Multi-Task Momentum Distillation for Multimodal Sentiment Analysis",
IEEE Trans. Affective Computing 15(2), 2024 (doi 10.1109/TAFFC.2023.3282410).
Reference code: none is public. This is a re-implementation from the paper's text (Sec. III,
Algorithm 1, Sec. V-B); where the paper is silent the choice is listed under Deviations. The
audio/vision Transformer is the shared pre-LN block of `msabench.models.layers.transformer`.

Architecture (Sec. III-C to III-F):
- Unimodal subtasks (eqs. 1-5). Text: BERT (`TextInput`: a fine-tuned Hugging Face encoder by the
  presets, precomputed BERT features otherwise), the [CLS] (first) position. Audio and vision: a
  1-layer unidirectional LSTM (sLSTM; width `audio_hidden` 32 / `vision_hidden` 64) then a
  `transformer_layers`-layer, `transformer_heads`-head Transformer, the first time step (eq. 2).
  Each: F_u = ReLU(W_u F'_u + b_u) in R^d (eq. 3), a regression head and a 3-class head (eq. 4),
  L_gt^u = MAE + cross-entropy (eq. 5), classes by the run's label rule (`InputSpec.label_rule`,
  neg/neu/pos).
- Unimodal momentum models (eq. 6): for audio and vision, EMA copies of the online subtask
  (encoder, projection, both heads), theta_m <- eta theta_m + (1 - eta) theta after every
  optimisation step, eta = `momentum` 0.995. They give the pseudo-targets F_u^m, y_u^m, p_u^m.
- Dominant-modality distillation (DMD). Response-based (eq. 7): L_reg^u = |y_t - y_u|,
  L_cls^u = H(p_t, p_u). Feature-based (eqs. 8-9): supervised contrastive distillation between the
  L2-normalised F_t and F_u, positives = keys of the query's sentiment class, keys = the batch
  plus queues of the most recent `queue_size` online representations (1,024 on MOSI, 8,192 on
  MOSEI), with a learnable temperature tau. Momentum versions (eqs. 10-11): (1 - alpha) L^u +
  alpha x (MAE / cross-entropy to the momentum model's predictions, and KL(U || V) with U the
  similarity distribution of the momentum features over the momentum queues).
- Multimodal fusion distillation (MFD). Momentum fusion factors w_t, w_a, w_v (initialised to 1.0,
  Sec. V-E4) scale F_u; F_f = ReLU(W^f [w_t F_t; w_a F_a; w_v F_v] + b^f) (eq. 12); regression and
  class heads, L_gt^f (eq. 13). Hard-sample weights w_reg^i = tanh|y^i - y_f^i|,
  w_cls = mean_i |p^i - argmax p_f^i| (eq. 14); L_fusion^u = mean w_reg^i |y_f - y_u| +
  w_cls H(p_f, p_u) (eq. 15), summed over audio and vision (eq. 16).
- Total (eq. 18): L_gt (eq. 17, the four subtasks) + gamma1 L_reg^m + gamma2 L_cls^m +
  gamma3 L_feat^m + gamma4 L_fusion^m. The prediction is the multimodal regression output y_f.
- Per epoch, `on_validation_end` writes into every record of the epoch a `model_values` object:
  the fusion factors used at inference (`fusion_factor_t/a/v`, the paper's Fig. 7), the learnable
  factors behind them (`fusion_factor_online_*`), the temperature, and the queue's entries per
  sentiment class (`queue_negative/neutral/positive`).

Ablations (Tables II and III), each a `model.*` key and a variant: `reg_distill` (mtmd@no-reg),
`cls_distill` (@no-cls), `feat_distill` (@no-feat), `queue` (@no-queue), `dmd_momentum`
(@dmd-no-mom), `fusion_factors` (@no-fusion-factors), `hard_attention` (@no-hardatt),
`fusion_distill` (@no-fusion-distill), `fusion_momentum` (@mfd-no-mom), `subtasks`
(@no-t-subtask, @no-a-subtask, @no-v-subtask), `distill` (@no-distill), `negatives`
(@instance-negatives).

Defaults and presets (Sec. V-B): batch size 64 (MOSI) / 128 (MOSEI); queues 1,024 / 8,192;
dropout 0.1; Adam; learning rates 5e-5 for BERT (`train.text_lr`), 5e-3 for the unimodal online
models of audio and vision (`train.unimodal_lr`), 1e-3 for the rest (`train.lr`); sLSTM 1 layer,
32 (audio) / 64 (vision) wide; Transformers 3 layers, 4 heads; eta 0.995 (Sec. III-D); fusion
factors start at 1.0 (Sec. V-E4). Presets mosi and mosei fine-tune bert-base-uncased
(`text.encoder`, `text.frozen=false`; Sec. V-B); `--tiny` on the synthetic suite swaps it for
tiny-bert. The paper grid-searched gamma1..gamma4 in {0.6, 0.8, 1.0}, alpha in {0.2, ..., 0.6}
and tau in {0.1, ..., 0.9} and does not print the chosen values: gamma = 1.0 each, alpha = 0.4
(the grid's middle; ALBEF's value) and tau = 0.1 at the start (the grid's value nearest ALBEF's
0.07) are our choices. Not in the paper either: d = `feature_dim` 128, d_f = `fusion_dim` 128,
epochs 30 and patience 8 (the harness's defaults).

Deviations (a re-implementation: every choice the paper leaves open is listed):
- No public code exists; d, d_f, the epochs, the chosen gamma/alpha/tau and tau's clamp range
  [0.01, 1.0] (ALBEF clamps to [0.001, 0.5]) are ours (above).
- Eq. 4 prints ReLU on the heads' outputs; a ReLU would make negative sentiment scores impossible,
  so both heads are plain linear layers (the class head gives logits).
- Teachers are stop-gradient: the text subtask's and the multimodal subtask's predictions and the
  text features enter the distillation losses detached (the paper calls them teacher labels and
  soft ground truth; it does not say whether gradients reach them).
- Eq. 8 writes V as the softmax mass on all positives, eqs. 11 and 23 as a softmax over the keys
  (so that KL(U || V) compares two distributions over the same keys). We use the softmax over the
  keys for both, and H(Y, V) of eq. 9 with Y the indicator of same-class keys normalised to sum 1
  (SupCon's L_out form; eq. 22's 1/K outside the logarithm is the L_in form). The keys are the
  current batch (the query's own pair among them) plus the queue; the students' current-batch
  keys carry gradient, queue entries do not (MoCo / ALBEF).
- Momentum fusion factors: the paper says the learnable factors are "updated in a momentum-updated
  way as the parameters of the unimodal momentum model" and computed before the fusion in each
  step (Algorithm 1, line 18). Here learnable factors theta_w train by gradient and the fusion
  uses their EMA: in training w = eta w_m + (1 - eta) theta_w (so the gradient reaches theta_w),
  after each optimisation step w_m <- eta w_m + (1 - eta) theta_w, at inference w = w_m.
  `fusion_momentum=false` (mfd-no-mom, Table II's "w/o MoM" of MFD) uses theta_w directly; our
  reading, the paper does not define that row further. `fusion_factors=false` fixes w = 1.
- "w/o L^u_reg" / "w/o L^u_cls" / "w/o L^u_feat" drop the dominant-modality term (1 - alpha) L^u of
  eqs. 10-11 and keep its momentum term alpha x (...); "w/o MoM" of DMD (`dmd_momentum=false`) sets
  alpha = 0 (no momentum models are built). `distill=false` ("No Distill") drops all four
  distillation losses (gamma1..gamma4 terms); the fusion factors stay.
- "w/o t/a/v subtask" (`subtasks`) removes the modality from the model (no encoder, no fusion
  input, no losses): Table II's "w/o t subtask" row (Acc-2 55.0) is at chance level for MOSI,
  which only an absent text modality explains. Without text, DMD has no teacher: only the momentum
  terms of eq. 10 remain.
- Instance negatives (Table III, `negatives=instance`): the positives of a query are the keys of the
  same utterance (same training index: its pair in the batch and any older copy in the queue).
- Queues hold the online text/audio/vision features and the momentum audio/vision features of the
  same samples in the same slots, with each entry's class and training index (buffers: they are
  saved with the checkpoint). They fill in training only; an entry is used once written.
- Dropout 0.1 (Sec. V-B) sits in the Transformers (attention, ReLU, residual, embedding) and after
  each projection (F_u) and the fusion layer; where the paper applies it is not stated. The
  momentum models run in the online model's mode (dropout on in training), as in ALBEF.
- The Transformer is MulT's pre-LN encoder (sqrt(d) input scale, sinusoidal positions of the real
  steps, key padding masks): the paper's "designed 3-layer Transformer" is not specified further.
- Padding: audio/vision padding is zeroed before the sLSTM (it only follows the real steps, so the
  causal LSTM never mixes it into them) and masked out of attention.
- Text as plain token ids (no encoder): a trainable embedding has no context in its [CLS] vector,
  so the text representation is the mean over the real tokens; with features or an encoder it is
  the first position ([CLS]), as in eq. 1.
- With a pooled encoder output (`text.pooling` cls/mean) the pooled vector stands for [CLS].
- Regression only (the paper's task): MOSI/MOSEI-style scores. The class heads are trained on
  classes derived from the scores; the prediction is y_f.
- `inference_parameter_count` leaves out what inference never runs: the momentum models, the
  unimodal heads, the multimodal class head and tau (the paper: no extra inference parameters).
- Gradient accumulation: the momentum models and factors move after each optimisation step
  (`ctx.step()` returns True); the end-of-epoch flush of a partial accumulation moves no EMA.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import (
    CLASS_NAMES,
    MODELS,
    Batch,
    InputSpec,
    ModelOutput,
    MSAModel,
    TextInput,
    UserError,
    masked_mean,
    sentiment_classes,
)
from msabench.models.layers.transformer import CrossModalEncoder

MODALITY_ORDER = ("t", "a", "v")
STUDENTS = ("a", "v")  # the inferior modalities: students of DMD and MFD
N_CLASSES = 3  # neg, neu, pos
TEMPERATURE_RANGE = (0.01, 1.0)


@dataclass(frozen=True)
class MTMDConfig:
    # Sec. V-B
    audio_hidden: int = 32  # sLSTM output width, audio
    vision_hidden: int = 64  # sLSTM output width, vision
    transformer_layers: int = 3
    transformer_heads: int = 4
    dropout: float = 0.1
    queue_size: int = 1024  # MOSI (MOSEI: 8192)
    # Sec. III-D, eq. 6 (also the fusion factors' EMA)
    momentum: float = 0.995
    # grid-searched in the paper, chosen values not printed (see the module docstring)
    alpha: float = 0.4  # weight of the momentum model's pseudo-targets, eqs. 10-11
    temperature: float = 0.1  # tau's initial value (learnable), eq. 8
    gamma_reg: float = 1.0  # gamma1, eq. 18
    gamma_cls: float = 1.0  # gamma2
    gamma_feat: float = 1.0  # gamma3
    gamma_fusion: float = 1.0  # gamma4
    # not in the paper
    feature_dim: int = 128  # d, eq. 3
    fusion_dim: int = 128  # d_f, eq. 12
    token_embed_dim: int = 128  # text as plain token ids (no encoder)
    # switches: Tables II and III
    subtasks: str = "tav"  # the modalities the model has (w/o t/a/v subtask)
    distill: bool = True  # No Distill: false
    reg_distill: bool = True  # L^u_reg
    cls_distill: bool = True  # L^u_cls
    feat_distill: bool = True  # L^u_feat
    queue: bool = True  # representation queues
    dmd_momentum: bool = True  # momentum models in DMD (w/o MoM)
    fusion_factors: bool = True  # w_t/a/v
    fusion_momentum: bool = True  # momentum-updated fusion factors (MFD w/o MoM)
    hard_attention: bool = True  # eq. 14 (w/o HardAtt)
    fusion_distill: bool = True  # L^u_fusion
    negatives: str = "class"  # "class" (cls_i != cls_j) | "instance" (i != j), Table III


@dataclass
class SubtaskOutput:
    feature: torch.Tensor  # (B, d) F_u
    score: torch.Tensor  # (B,) regression output
    logits: torch.Tensor  # (B, 3) class logits


class TextCLS(nn.Module):
    """Eq. 1: the text's [CLS] vector (the mean over real tokens for a context-free embedding)."""

    def __init__(self, spec: InputSpec, token_dim: int):
        super().__init__()
        self.text = TextInput(spec, token_dim if spec.text_kind == "tokens" else None)
        self.mean_pool = spec.text_kind == "tokens"
        self.out_dim = self.text.out_dim

    def forward(self, batch: Batch) -> torch.Tensor:
        x, mask = self.text(batch)  # (B, T, D), (B, T)
        return masked_mean(x.float(), mask) if self.mean_pool else x[:, 0].float()  # (B, D)


class SequenceEncoder(nn.Module):
    """Eq. 2 for audio or vision: sLSTM, then a Transformer; the first time step."""

    def __init__(self, modality: str, in_dim: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.modality = modality
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=1, batch_first=True)
        self.transformer = CrossModalEncoder(hidden, heads, layers, attn_dropout=dropout, relu_dropout=dropout,
                                             res_dropout=dropout, embed_dropout=dropout)
        self.out_dim = hidden

    def forward(self, batch: Batch) -> torch.Tensor:
        x, mask = batch.modality(self.modality)  # (B, T, D_in), (B, T)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        mask = mask.bool()
        x = x.float() * mask.unsqueeze(-1)
        h, _ = self.lstm(x)  # (B, T, H): causal, real steps come first
        out = self.transformer(h, mask).hidden  # (B, T, H)
        return out[:, 0]  # (B, H)


class Subtask(nn.Module):
    """One modality's online model: encoder, F_u = ReLU(W F'_u + b) (eq. 3), two heads (eq. 4)."""

    def __init__(self, encoder: nn.Module, d: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.project = nn.Sequential(nn.Linear(encoder.out_dim, d), nn.ReLU(), nn.Dropout(dropout))
        self.regress = nn.Linear(d, 1)
        self.classify = nn.Linear(d, N_CLASSES)

    def forward(self, batch: Batch) -> SubtaskOutput:
        feature = self.project(self.encoder(batch))  # (B, d)
        return SubtaskOutput(feature=feature, score=self.regress(feature).squeeze(-1), logits=self.classify(feature))


@dataclass
class Encoding:
    unimodal: dict[str, SubtaskOutput]
    fusion: SubtaskOutput  # feature = F_f (B, d_f)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per sample H(softmax(teacher), softmax(student)): (B, C), (B, C) -> (B,)."""
    return -(F.softmax(teacher_logits.float(), dim=-1) * F.log_softmax(student_logits.float(), dim=-1)).sum(-1)


def target_cross_entropy(target: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over queries of H(target, V): (B, K) target rows summing to 1, (B, K) log V."""
    return -(target * log_probs).sum(-1).mean()


@MODELS.register()
class MTMD(MSAModel):
    name: ClassVar[str] = "mtmd"
    config_cls: ClassVar[type] = MTMDConfig
    impl_version: ClassVar[int] = 1
    TASKS: ClassVar[tuple[str, ...]] = ("regression",)
    USES_TEXT_ENCODER: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        # Sec. V-B: Adam; 1e-3 for the other parameters, 5e-3 for the unimodal online models, 5e-5 BERT
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.unimodal_lr": 5e-3,
        "train.text_lr": 5e-5,
        "train.batch_size": 64,  # MOSI
        # not in the paper: the harness's defaults
        "train.epochs": 30,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Sec. V-B: fine-tuned bert-base-uncased; batch 64 / 128; queues 1,024 / 8,192
        "mosi": {"text.encoder": "bert-base-uncased", "text.frozen": False, "train.batch_size": 64,
                 "model.queue_size": 1024},
        "mosei": {"text.encoder": "bert-base-uncased", "text.frozen": False, "train.batch_size": 128,
                  "model.queue_size": 8192},
    }
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        # Table II
        "no-reg": {"model.reg_distill": False},
        "no-cls": {"model.cls_distill": False},
        "no-feat": {"model.feat_distill": False},
        "no-queue": {"model.queue": False},
        "dmd-no-mom": {"model.dmd_momentum": False},
        "no-fusion-factors": {"model.fusion_factors": False},
        "no-hardatt": {"model.hard_attention": False},
        "no-fusion-distill": {"model.fusion_distill": False},
        "mfd-no-mom": {"model.fusion_momentum": False},
        "no-t-subtask": {"model.subtasks": "av"},
        "no-a-subtask": {"model.subtasks": "tv"},
        "no-v-subtask": {"model.subtasks": "ta"},
        "no-distill": {"model.distill": False},
        # Table III
        "instance-negatives": {"model.negatives": "instance"},
    }

    def __init__(self, cfg: MTMDConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        unknown = set(cfg.subtasks) - set(MODALITY_ORDER)
        if unknown or len(set(cfg.subtasks)) != len(cfg.subtasks):
            raise UserError(f"model.subtasks={cfg.subtasks!r}: use distinct letters of 'tav', e.g. 'av'")
        if cfg.negatives not in ("class", "instance"):
            raise UserError(f"model.negatives={cfg.negatives!r}: use 'class' or 'instance'")
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities and m in cfg.subtasks)
        if not self.modalities:
            raise UserError(f"mtmd has no modality: the data has {','.join(spec.modalities)}, "
                            f"model.subtasks={cfg.subtasks!r}")
        self.students = tuple(m for m in STUDENTS if m in self.modalities)
        self.has_teacher_text = "t" in self.modalities
        d = cfg.feature_dim
        self.subtasks = nn.ModuleDict()
        for m in self.modalities:
            if m == "t":
                encoder: nn.Module = TextCLS(spec, cfg.token_embed_dim)
            else:
                hidden = cfg.audio_hidden if m == "a" else cfg.vision_hidden
                encoder = SequenceEncoder(m, int(spec.dims[m]), hidden, cfg.transformer_layers,
                                          cfg.transformer_heads, cfg.dropout)
            self.subtasks[m] = Subtask(encoder, d, cfg.dropout)

        self.uses_momentum_models = cfg.distill and cfg.dmd_momentum and bool(self.students)
        self.momentum_models = nn.ModuleDict({m: copy.deepcopy(self.subtasks[m]).requires_grad_(False)
                                              for m in (self.students if self.uses_momentum_models else ())})

        if cfg.fusion_factors:  # learnable factors, start at 1.0 (Sec. V-E4)
            self.fusion_factors = nn.Parameter(torch.ones(len(self.modalities)))
            if cfg.fusion_momentum:
                self.register_buffer("momentum_fusion_factors", torch.ones(len(self.modalities)))
        self.fusion = nn.Sequential(nn.Linear(d * len(self.modalities), cfg.fusion_dim), nn.ReLU(),
                                    nn.Dropout(cfg.dropout))
        self.fusion_regress = nn.Linear(cfg.fusion_dim, 1)
        self.fusion_classify = nn.Linear(cfg.fusion_dim, N_CLASSES)

        self.uses_contrast = (cfg.distill and self.has_teacher_text and bool(self.students)
                              and (cfg.feat_distill or self.uses_momentum_models))
        if self.uses_contrast:
            self.temperature = nn.Parameter(torch.tensor(float(cfg.temperature)))
        self.uses_queue = self.uses_contrast and cfg.queue
        if self.uses_queue:
            q = int(cfg.queue_size)
            for name in self.queue_names():
                self.register_buffer(f"queue_{name}", torch.zeros(q, d))
            self.register_buffer("queue_class", torch.full((q,), -1, dtype=torch.long))
            self.register_buffer("queue_index", torch.full((q,), -1, dtype=torch.long))  # -1: empty slot
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @classmethod
    def tiny(cls) -> MTMDConfig:
        return MTMDConfig(audio_hidden=8, vision_hidden=8, transformer_layers=1, transformer_heads=2,
                          feature_dim=8, fusion_dim=8, token_embed_dim=8, queue_size=32)

    def queue_names(self) -> tuple[str, ...]:
        """The queues' names: online t, a, v; momentum a, v (one slot = one sample in every queue)."""
        online = ("t", *self.students)
        return online + tuple(f"momentum_{m}" for m in self.students if self.uses_momentum_models)

    # -- forward ------------------------------------------------------------------------------------

    def current_fusion_factors(self) -> torch.Tensor | None:
        """(M,) the w_u multiplying F_u, or None without factors (see Deviations: momentum factors)."""
        if not self.cfg.fusion_factors:
            return None
        if not self.cfg.fusion_momentum:
            return self.fusion_factors
        if self.training:
            eta = self.cfg.momentum
            return eta * self.momentum_fusion_factors + (1 - eta) * self.fusion_factors
        return self.momentum_fusion_factors

    def encode(self, batch: Batch) -> Encoding:
        unimodal = {m: self.subtasks[m](batch) for m in self.modalities}  # F_u (B, d)
        factors = self.current_fusion_factors()
        parts = [unimodal[m].feature * (factors[i] if factors is not None else 1.0)
                 for i, m in enumerate(self.modalities)]
        fused = self.fusion(torch.cat(parts, dim=-1))  # (B, d_f), eq. 12
        fusion = SubtaskOutput(feature=fused, score=self.fusion_regress(fused).squeeze(-1),
                               logits=self.fusion_classify(fused))
        return Encoding(unimodal=unimodal, fusion=fusion)

    def forward(self, batch: Batch) -> ModelOutput:
        enc = self.encode(batch)
        features = {m: out.feature for m, out in enc.unimodal.items()}
        features["fusion"] = enc.fusion.feature
        return ModelOutput(pred=enc.fusion.score, features=features)

    def inference_parameter_count(self) -> int:
        training_only = {id(p) for p in self.momentum_models.parameters()}
        for sub in self.subtasks.values():
            training_only.update(id(p) for head in (sub.regress, sub.classify) for p in head.parameters())
        training_only.update(id(p) for p in self.fusion_classify.parameters())
        if self.uses_contrast:
            training_only.add(id(self.temperature))
        return sum(p.numel() for p in self.parameters() if id(p) not in training_only)

    # -- losses -------------------------------------------------------------------------------------

    def training_losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The terms of eq. 18 (unweighted; absent when switched off) and what the step enqueues."""
        cfg = self.cfg
        y = batch.y.float()
        classes = sentiment_classes(batch.y, self.spec.label_rule)  # (B,) neg/neu/pos
        enc = self.encode(batch)
        outputs = [*enc.unimodal.values(), enc.fusion]
        terms = {"gt": sum(F.l1_loss(o.score.float(), y) + F.cross_entropy(o.logits.float(), classes)
                           for o in outputs)}  # eqs. 5, 13, 17
        stash: dict[str, Any] = {"classes": classes, "index": batch.index.long(), "task": F.l1_loss(
            enc.fusion.score.float(), y)}
        if not cfg.distill:
            return terms, stash
        momentum: dict[str, SubtaskOutput] = {}
        if self.uses_momentum_models:
            with torch.no_grad():
                momentum = {m: self.momentum_models[m](batch) for m in self.students}
        terms.update(self.response_distillation(enc.unimodal, momentum))
        if self.uses_contrast:
            feat, keys = self.feature_distillation(enc.unimodal, momentum, classes, stash["index"])
            terms["feat"] = feat
            stash["keys"] = keys
        if cfg.fusion_distill and self.students:
            terms["fusion"] = self.fusion_distillation(enc, y, classes)
        return terms, stash

    def response_distillation(self, uni: dict[str, SubtaskOutput], momentum: dict[str, SubtaskOutput]
                              ) -> dict[str, torch.Tensor]:
        """Eq. 10: L_reg^m and L_cls^m (eq. 7's text teacher at 1 - alpha, the momentum model at alpha)."""
        cfg = self.cfg
        alpha = cfg.alpha if momentum else 0.0
        reg: list[torch.Tensor] = []
        cls: list[torch.Tensor] = []
        for u in self.students:
            student = uni[u]
            if self.has_teacher_text and cfg.reg_distill:
                reg.append((1 - alpha) * F.l1_loss(student.score.float(), uni["t"].score.detach().float()))
            if self.has_teacher_text and cfg.cls_distill:
                cls.append((1 - alpha) * soft_cross_entropy(student.logits, uni["t"].logits.detach()).mean())
            if momentum:
                reg.append(alpha * F.l1_loss(student.score.float(), momentum[u].score.float()))
                cls.append(alpha * soft_cross_entropy(student.logits, momentum[u].logits).mean())
        out = {}
        if reg:
            out["reg"] = torch.stack(reg).sum()
        if cls:
            out["cls"] = torch.stack(cls).sum()
        return out

    def queued(self, name: str) -> torch.Tensor:
        """(K, d) the filled entries of one queue (empty without queues)."""
        if not self.uses_queue:
            return torch.zeros(0, self.cfg.feature_dim, device=self.fusion_regress.weight.device)
        return getattr(self, f"queue_{name}")[self.queue_index >= 0]

    def key_positives(self, classes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, B + K) bool: the keys (batch, then queue) that are positives of each query (eqs. 8-9)."""
        if self.uses_queue:
            filled = self.queue_index >= 0
            key_classes = torch.cat([classes, self.queue_class[filled]])
            key_index = torch.cat([index, self.queue_index[filled]])
        else:
            key_classes, key_index = classes, index
        if self.cfg.negatives == "instance":
            return index[:, None] == key_index[None, :]
        return classes[:, None] == key_classes[None, :]

    def feature_distillation(self, uni: dict[str, SubtaskOutput], momentum: dict[str, SubtaskOutput],
                             classes: torch.Tensor, index: torch.Tensor
                             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 11: L_feat^m over the students, and the batch's normalised features for the queues."""
        cfg = self.cfg
        alpha = cfg.alpha if momentum else 0.0
        tau = self.temperature
        text = F.normalize(uni["t"].feature.detach().float(), dim=-1)  # (B, d) teacher
        text_keys = torch.cat([text, self.queued("t")])  # (B + K, d)
        positives = self.key_positives(classes, index).float()
        target = positives / positives.sum(-1, keepdim=True)  # Y: uniform over same-class keys
        keys = {"t": text}
        total = []
        for u in self.students:
            student = F.normalize(uni[u].feature.float(), dim=-1)  # (B, d)
            keys[u] = student.detach()
            log_v_t2u = F.log_softmax(text @ torch.cat([student, self.queued(u)]).T / tau, dim=-1)  # (B, B + K)
            log_v_u2t = F.log_softmax(student @ text_keys.T / tau, dim=-1)  # (B, B + K)
            if cfg.feat_distill:  # eq. 9
                total.append((1 - alpha) * 0.5 * (target_cross_entropy(target, log_v_t2u)
                                                  + target_cross_entropy(target, log_v_u2t)))
            if momentum:  # the momentum part of eq. 11: U from the momentum features and queues
                with torch.no_grad():
                    mom = F.normalize(momentum[u].feature.float(), dim=-1)
                    keys[f"momentum_{u}"] = mom
                    u_t2u = F.softmax(text @ torch.cat([mom, self.queued(f"momentum_{u}")]).T / tau, dim=-1)
                    u_u2t = F.softmax(mom @ text_keys.T / tau, dim=-1)
                kl = (F.kl_div(log_v_t2u, u_t2u, reduction="batchmean")
                      + F.kl_div(log_v_u2t, u_u2t, reduction="batchmean"))
                total.append(alpha * 0.5 * kl)
        return torch.stack(total).sum(), keys

    def fusion_distillation(self, enc: Encoding, y: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Eqs. 14-16: the multimodal subtask teaches audio and vision, hard samples weighted more."""
        teacher = enc.fusion
        score, logits = teacher.score.detach().float(), teacher.logits.detach()
        if self.cfg.hard_attention:
            w_reg = torch.tanh((y - score).abs())  # (B,)
            w_cls = (classes - logits.argmax(dim=-1)).abs().float().mean()
        else:
            w_reg, w_cls = torch.ones_like(score), torch.ones((), device=score.device)
        terms = [(w_reg * (score - enc.unimodal[u].score.float()).abs()).mean()
                 + w_cls * soft_cross_entropy(enc.unimodal[u].logits, logits).mean() for u in self.students]
        return torch.stack(terms).sum()

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 18."""
        cfg = self.cfg
        gammas = {"gt": 1.0, "reg": cfg.gamma_reg, "cls": cfg.gamma_cls, "feat": cfg.gamma_feat,
                  "fusion": cfg.gamma_fusion}
        return sum(gammas[k] * v for k, v in terms.items())

    # -- training -----------------------------------------------------------------------------------

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Sec. V-B: audio/vision online models at train.unimodal_lr, BERT at train.text_lr, the rest at train.lr."""
        base = super().param_groups(train_cfg).get("main", [])
        text_groups = [g for g in base if g.get("name") == "text_encoder"]
        rest = [p for g in base if g.get("name") != "text_encoder" for p in g["params"]]
        online = {id(p) for m in self.students for p in self.subtasks[m].parameters()}
        groups = [{"params": [p for p in rest if id(p) in online], "name": "unimodal",
                   "lr": float(train_cfg.get("train.unimodal_lr", self.TRAIN_DEFAULTS["train.unimodal_lr"]))},
                  {"params": [p for p in rest if id(p) not in online]}, *text_groups]
        return {"main": [g for g in groups if g["params"]]}

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            terms, stash = self.training_losses(batch)
            total = self.weighted_total(terms)
        ctx.backward(total)
        if ctx.step():
            self.momentum_update()
        if self.uses_contrast:
            with torch.no_grad():
                self.temperature.clamp_(*TEMPERATURE_RANGE)
        if self.uses_queue:
            self.enqueue(stash["keys"], stash["classes"], stash["index"])
        logged = {"task": float(stash["task"].detach()), "total": float(total.detach())}
        logged.update({k: float(v.detach()) for k, v in terms.items()})
        return logged

    @torch.no_grad()
    def momentum_update(self) -> None:
        """Eq. 6 after an optimisation step: the momentum models and the momentum fusion factors."""
        eta = self.cfg.momentum
        for m, mom in self.momentum_models.items():
            for p_m, p in zip(mom.parameters(), self.subtasks[m].parameters()):
                p_m.mul_(eta).add_(p.detach(), alpha=1 - eta)
        if self.cfg.fusion_factors and self.cfg.fusion_momentum:
            self.momentum_fusion_factors.mul_(eta).add_(self.fusion_factors.detach(), alpha=1 - eta)

    @torch.no_grad()
    def enqueue(self, keys: dict[str, torch.Tensor], classes: torch.Tensor, index: torch.Tensor) -> None:
        """FIFO: the batch's features, classes and indices replace the oldest entries."""
        q = int(self.cfg.queue_size)
        n = min(int(classes.shape[0]), q)
        ptr = int(self.queue_ptr)
        slots = (torch.arange(n, device=classes.device) + ptr) % q
        for name in self.queue_names():
            getattr(self, f"queue_{name}")[slots] = keys[name][-n:].to(self.queue_class.device, torch.float32)
        self.queue_class[slots] = classes[-n:]
        self.queue_index[slots] = index[-n:]
        self.queue_ptr.fill_((ptr + n) % q)

    # -- per-epoch values for the records -----------------------------------------------------------

    def epoch_values(self) -> dict[str, float]:
        """Fusion factors (Fig. 7), temperature and the queue's entries per class."""
        values: dict[str, float] = {}
        if self.cfg.fusion_factors:
            used = self.momentum_fusion_factors if self.cfg.fusion_momentum else self.fusion_factors
            for i, m in enumerate(self.modalities):
                values[f"fusion_factor_{m}"] = float(used[i].detach())
                values[f"fusion_factor_online_{m}"] = float(self.fusion_factors[i].detach())
        if self.uses_contrast:
            values["temperature"] = float(self.temperature.detach())
        if self.uses_queue:
            filled = self.queue_class[self.queue_index >= 0]
            for c, name in enumerate(CLASS_NAMES):
                values[f"queue_{name}"] = float((filled == c).sum())
        return values

    def on_validation_end(self, ctx: Any, records: list[dict[str, Any]]) -> None:
        values = self.epoch_values()
        for record in records:
            record["model_values"] = dict(values)
