"""`mmim`: MultiModal InfoMax, BERT + LSTM encoders with hierarchical mutual-information maximisation.

Paper: W. Han, H. Chen, S. Poria, "Improving Multimodal Fusion with Hierarchical Mutual Information
Maximization for Multimodal Sentiment Analysis", EMNLP 2021.
Reference code: MMSA 2.2.1 (thuiar/MMSA) models/singleTask/MMIM.py and trains/singleTask/MMIM.py,
and the authors' declare-lab/Multimodal-Infomax (src/model.py, src/modules/encoders.py,
src/solver.py); read for facts.

Architecture (MMSA's MMIM):
- text: the [CLS] vector of the last layer of a fine-tuned bert-base-uncased (through `TextInput`;
  the family presets set text.encoder=bert-base-uncased, text.frozen=false);
- audio, vision: a bidirectional one-layer LSTM over the real frames, both final states
  concatenated, Linear to d_aout / d_vout (`RecurrentSubNet`, MMSA's RNNEncoder);
- fusion on concat(text, audio, vision): dropout, tanh(Linear) to d_prjh, tanh(Linear) (the fusion
  Z), Linear to the prediction.
Mutual information terms (training only):
- input level, the Barber-Agakov lower bound between modality pairs: a Gaussian q(y|x) with mean
  and log-variance MLPs (`MMILB`); lld = mean over the batch of sum_dims -(mu(x) - y)^2 / (2
  exp(logvar(x))). Pairs (x -> y): text -> vision and text -> audio, and vision -> audio with
  `add_va` (MMSA's default: off).
- the entropy of y in that bound, by a Gaussian mixture of the positive (label > 0) and negative
  (label < 0) samples: y projected by a Linear + tanh to a quarter of its width, the samples of the
  current batch joined with those of the last `mem_size` batches of the epoch (the memory, kept
  detached in `ctx.state`, emptied at every epoch start); H = (log det Sigma_pos + log det
  Sigma_neg) / 4, added from the (mem_size + 2)-th batch of each epoch on, as MMSA;
- fusion level, CPC between the fusion Z and each modality: a Linear predicts the modality's vector
  from Z, both normalised to unit length; nce = -mean(<x_i, x^_i> - logsumexp_j <x_i, x^_j>).
Training, two stages per step (two optimisers, `param_groups`): stage 1 maximises the lld of the
pairs with respect to the q networks only (optimiser "mmilb"; the modality vectors are detached);
stage 2 minimises task + alpha * nce - beta * lld - beta * H over BERT, the encoders, the fusion and
the CPC networks (optimiser "main"; the q networks' gradients of this loss are discarded).

Defaults and presets: MMSA config_regression.json "mmim" (defaults = "mosi"; the mosi, mosei and
sims entries are equal but for the BERT, bert-base-chinese on sims): widths d_ah, d_vh, d_aout,
d_vout, d_prjh, n_layer, bidirectional, cpc_layers, activations, dropouts (the LSTM dropouts apply
only with n_layer > 1, as MMSA), alpha, beta, add_va, mem_size, contrast; lr_main (train.lr),
lr_bert (train.text_lr), lr_mmilb (`mmilb_lr`), weight_decay_main (train.weight_decay),
weight_decay_bert (`text_weight_decay`), weight_decay_mmilb (`mmilb_weight_decay`); batch_size 32;
grad_clip 1.0 (train.clip); Adam; ReduceLROnPlateau on the valid loss for "main" only (factor 0.5,
patience `when` 20: `lr_decay_factor`, `lr_decay_patience`); early_stop 8 (train.patience). MMSA
re-initialises every non-BERT weight matrix with xavier_normal_ (so does this plugin). MMSA runs
stage 1 on the first half of each epoch's batches on MOSEI only: `lld_fraction` 0.5 in the mosei
preset.

Deviations:
- The two stages alternate per step here. MMSA (and the authors' solver.py) run a whole epoch of
  stage 1, then a whole epoch of stage 2; the number of updates of each optimiser per epoch is the
  same, but stage 1 here sees the encoders as they are at each step, not as the last epoch left them.
- One forward pass per step serves both stages (MMSA forwards the whole model, BERT included, in
  each stage): the stages see the same dropout masks.
- Gradient clipping (train.clip = grad_clip 1.0) is applied per optimiser to the parameters it
  steps. MMSA clips the norm over every parameter's gradient: in stage 1 that includes BERT's and
  the encoders' gradients of -lld (which it then discards), in stage 2 the q networks' gradients.
- The entropy projection (`entropy_prj`) is frozen at its initial weights (requires_grad False):
  MMSA puts it in the stage-1 optimiser, but the lld does not depend on it and zero_grad leaves its
  gradient None there, so Adam never moves it. The same computation; its parameters count as frozen.
- The entropy of a pair is left out of a step when either class has no more samples than the
  projection's width (memory included) or its covariance is not positive definite: MMSA's log det is
  then -inf or NaN and the run fails.
- Regression only: the positive/negative split of the entropy estimate reads the sign of a
  sentiment score (MMSA's MMIM on class labels would find no negative sample).
- The LSTMs read the last layer's final states (MMSA's final_states[0][0] and [0][1] are the first
  layer's; with its one layer they are the same).
- train.epochs caps the run at 100 epochs; MMSA trains until early stopping (the authors' code: 40
  epochs).
- Text as plain token ids (text.encoder=tokens) has no encoder to give [CLS] context: the text
  vector is then the masked mean of the token embeddings; precomputed features use the first
  position, as MMSA's [CLS]. The text input (BERT, or our token embedding) keeps its own
  initialisation.
- bert-base-uncased with its pooler (MMSA's from_pretrained) has 590,592 parameters more than the
  harness's count, which builds BERT from its config without the pooler; neither model uses it.
- MMSA's config key mmilb_last_activation is read by no code (the log-variance MLP has no last
  activation in MMSA or in the authors' code); it is not a key here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from msabench.api import (
    MODELS,
    Batch,
    InputSpec,
    ModelOutput,
    MSAModel,
    OptimizerSpec,
    SchedulerSpec,
    TextInput,
    UserError,
    masked_mean,
)
from msabench.models.layers.recurrent import RecurrentSubNet

MODALITY_ORDER = ("t", "a", "v")  # MMSA's concatenation order for the fusion
# BA-bound pairs (x, y): q(y | x); "va" only with add_va
PAIRS = {"tv": ("t", "v"), "ta": ("t", "a"), "va": ("v", "a")}


@dataclass(frozen=True)
class MMIMConfig:
    # MMSA config_regression.json "mmim": commonParams and datasetParams "mosi"
    dropout_a: float = 0.1
    dropout_v: float = 0.1
    dropout_prj: float = 0.1
    n_layer: int = 1
    cpc_layers: int = 1
    d_vh: int = 16
    d_ah: int = 16
    d_vout: int = 16
    d_aout: int = 16
    bidirectional: bool = True
    d_prjh: int = 128
    mmilb_mid_activation: str = "ReLU"
    cpc_activation: str = "Tanh"
    alpha: float = 0.1  # weight of the CPC terms
    beta: float = 0.1  # weight of the BA lld and of the entropy
    add_va: bool = False  # the vision -> audio BA pair
    mem_size: int = 1  # past batches in the entropy's memory
    contrast: bool = True  # false: stage 1 off and no CPC / lld terms (the entropy stays, as in MMSA)
    lld_fraction: float = 1.0  # share of each epoch's batches with a stage-1 step (MMSA: 0.5 on MOSEI)
    mmilb_lr: float = 1e-3  # lr_mmilb
    mmilb_weight_decay: float = 1e-4  # weight_decay_mmilb
    text_weight_decay: float = 1e-4  # weight_decay_bert
    lr_decay_patience: int = 20  # when: ReduceLROnPlateau of "main"
    lr_decay_factor: float = 0.5
    # msabench: embedding width when text comes as plain token ids
    token_embed_dim: int = 128


def _activation(name: str) -> type[nn.Module]:
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserError(f"activation {name!r} is not a torch.nn module; use e.g. ReLU or Tanh")
    return cls


class MMILB(nn.Module):
    """The BA lower bound of one pair: q(y | x) = N(mu(x), exp(logvar(x))), and y's entropy projection."""

    def __init__(self, x_size: int, y_size: int, mid_activation: str):
        super().__init__()
        act = _activation(mid_activation)
        self.mlp_mu = nn.Sequential(nn.Linear(x_size, y_size), act(), nn.Linear(y_size, y_size))
        self.mlp_logvar = nn.Sequential(nn.Linear(x_size, y_size), act(), nn.Linear(y_size, y_size))
        # frozen: MMSA never updates it (module docstring)
        self.entropy_prj = nn.Sequential(nn.Linear(y_size, y_size // 4), nn.Tanh()).requires_grad_(False)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (B, X), y: (B, Y) -> scalar; MMSA's lld leaves out the log-variance and constant terms
        mu, logvar = self.mlp_mu(x), self.mlp_logvar(x)  # (B, Y)
        return (-(mu - y) ** 2 / 2.0 / torch.exp(logvar)).sum(dim=-1).mean()


class CPC(nn.Module):
    """CPC score between a modality vector x and the fusion y (MMSA's CPC)."""

    def __init__(self, x_size: int, y_size: int, n_layers: int, activation: str):
        super().__init__()
        if n_layers == 1:
            self.net: nn.Module = nn.Linear(y_size, x_size)
        else:  # MMSA: Linear, activation, then Linears with no activation between them
            layers: list[nn.Module] = [nn.Linear(y_size, x_size), _activation(activation)()]
            layers += [nn.Linear(x_size, x_size) for _ in range(n_layers - 1)]
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (B, X), y: (B, Y) -> scalar NCE
        x_pred = self.net(y)
        x_pred = x_pred / x_pred.norm(dim=1, keepdim=True)
        x = x / x.norm(dim=1, keepdim=True)
        pos = (x * x_pred).sum(dim=-1)  # (B,)
        neg = torch.logsumexp(x @ x_pred.t(), dim=-1)  # (B,)
        return -(pos - neg).mean()


class FusionHead(nn.Module):
    """MMSA's Fusion: dropout, tanh(Linear), tanh(Linear) = Z, Linear to the prediction."""

    def __init__(self, in_size: int, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(in_size, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)
        self.linear_3 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.tanh(self.linear_2(torch.tanh(self.linear_1(self.drop(x)))))  # (B, hidden)
        return z, self.linear_3(z)


def log_det_covariance(samples: torch.Tensor) -> torch.Tensor | None:
    """log det of the (biased) covariance of (n, k) samples; None unless it is positive definite."""
    n, k = samples.shape
    if n <= k:
        return None
    centred = samples.float() - samples.float().mean(dim=0)
    sign, logabs = torch.linalg.slogdet(centred.t() @ centred / n)
    if float(sign.detach()) <= 0 or not math.isfinite(float(logabs.detach())):
        return None
    return logabs


def mixture_entropy(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor | None:
    """MMSA's H of one pair: (log det Sigma_pos + log det Sigma_neg) / 4."""
    pos_term, neg_term = log_det_covariance(pos), log_det_covariance(neg)
    if pos_term is None or neg_term is None:
        return None
    return 0.25 * (pos_term + neg_term)


@MODELS.register()
class MMIM(MSAModel):
    name: ClassVar[str] = "mmim"
    config_cls: ClassVar[type] = MMIMConfig
    impl_version: ClassVar[int] = 1
    TASKS: ClassVar[tuple[str, ...]] = ("regression",)
    USES_TEXT_ENCODER: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 1e-3,  # lr_main
        "train.text_lr": 5e-5,  # lr_bert
        "train.weight_decay": 1e-4,  # weight_decay_main
        "train.batch_size": 32,
        "train.clip": 1.0,  # grad_clip
        "train.epochs": 100,  # a cap: MMSA trains until early stopping
        "train.patience": 8,  # early_stop
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": {"text.encoder": "bert-base-uncased", "text.frozen": False},
        "mosei": {"text.encoder": "bert-base-uncased", "text.frozen": False, "model.lld_fraction": 0.5},
        "sims": {"text.encoder": "bert-base-chinese", "text.frozen": False},
    }

    def __init__(self, cfg: MMIMConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("mmim needs at least one modality")
        widths = {}
        if "t" in self.modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
            widths["t"] = self.text_input.out_dim  # MMSA's d_tout: BERT's width
        if "a" in self.modalities:
            self.acoustic_enc = RecurrentSubNet(int(spec.dims["a"]), cfg.d_ah, cfg.d_aout, cfg.n_layer,
                                                cfg.dropout_a if cfg.n_layer > 1 else 0.0, cfg.bidirectional)
            widths["a"] = cfg.d_aout
        if "v" in self.modalities:
            self.visual_enc = RecurrentSubNet(int(spec.dims["v"]), cfg.d_vh, cfg.d_vout, cfg.n_layer,
                                              cfg.dropout_v if cfg.n_layer > 1 else 0.0, cfg.bidirectional)
            widths["v"] = cfg.d_vout
        pairs = [p for p in ("tv", "ta") + (("va",) if cfg.add_va else ()) if set(PAIRS[p]) <= set(self.modalities)]
        self.mi = nn.ModuleDict({p: MMILB(widths[PAIRS[p][0]], widths[PAIRS[p][1]], cfg.mmilb_mid_activation)
                                 for p in pairs})
        self.cpc = nn.ModuleDict({m: CPC(widths[m], cfg.d_prjh, cfg.cpc_layers, cfg.cpc_activation)
                                  for m in self.modalities})
        self.fusion_prj = FusionHead(sum(widths.values()), cfg.d_prjh, 1, cfg.dropout_prj)
        self._xavier_init()

    def _xavier_init(self) -> None:
        """MMSA's trainer: xavier_normal_ on every non-BERT parameter with two or more dimensions."""
        text = {id(p) for p in self.text_input.parameters()} if hasattr(self, "text_input") else set()
        for p in self.parameters():
            if p.dim() > 1 and id(p) not in text:
                nn.init.xavier_normal_(p)

    @classmethod
    def tiny(cls) -> MMIMConfig:
        return MMIMConfig(d_vh=4, d_ah=4, d_vout=4, d_aout=4, d_prjh=8, token_embed_dim=8)

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        vectors = {}
        if "t" in self.modalities:
            x, mask = self.text_input(batch)  # (B, T, D), (B, T)
            # [CLS]; plain token ids have no encoder context (see Deviations)
            vectors["t"] = masked_mean(x, mask) if self.spec.text_kind == "tokens" else x[:, 0]
        if "a" in self.modalities:
            vectors["a"] = self.acoustic_enc(*batch.modality("a"))  # (B, d_aout)
        if "v" in self.modalities:
            vectors["v"] = self.visual_enc(*batch.modality("v"))  # (B, d_vout)
        return vectors

    def fuse(self, vectors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z, pred = self.fusion_prj(torch.cat([vectors[m] for m in self.modalities], dim=-1))
        return z, pred.squeeze(-1)  # (B, d_prjh), (B,)

    def forward(self, batch: Batch) -> ModelOutput:
        vectors = self.encode(batch)
        z, pred = self.fuse(vectors)
        return ModelOutput(pred=pred, features={**vectors, "fusion": z})

    # -- training ----------------------------------------------------------------------------------

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, OptimizerSpec]:
        cfg = self.cfg
        estimator = [p for p in self.mi.parameters() if p.requires_grad]
        encoder = self.text_input.encoder if hasattr(self, "text_input") else None
        bert = [p for p in encoder.parameters() if p.requires_grad] if encoder is not None else []
        taken = {id(p) for p in estimator + bert}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        plateau = SchedulerSpec("plateau", metric="loss", mode="min", factor=cfg.lr_decay_factor,
                                patience=cfg.lr_decay_patience)
        return {
            "mmilb": OptimizerSpec([{"params": estimator}], lr=cfg.mmilb_lr, weight_decay=cfg.mmilb_weight_decay),
            "main": OptimizerSpec([{"params": bert, "lr": float(train_cfg.get("train.text_lr", 5e-5)),
                                    "weight_decay": cfg.text_weight_decay}, {"params": main}], scheduler=plateau),
        }

    def pair_log_likelihood(self, vectors: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.mi[p].log_likelihood(vectors[PAIRS[p][0]], vectors[PAIRS[p][1]]) for p in self.mi)

    def on_epoch_start(self, ctx: Any) -> None:
        ctx.state["batch_in_epoch"] = 0  # MMSA's memory and batch count live for one epoch
        ctx.state["memory"] = {p: {"pos": [], "neg": []} for p in self.mi}

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        cfg = self.cfg
        step = ctx.state.get("batch_in_epoch", 0)
        ctx.state["batch_in_epoch"] = step + 1
        memory = ctx.state.setdefault("memory", {p: {"pos": [], "neg": []} for p in self.mi})
        batches = max(1, math.ceil(ctx.n_train / int(ctx.train_cfg.get("train.batch_size", len(batch)))))
        logged: dict[str, float] = {}
        with ctx.autocast():
            vectors = self.encode(batch)

        if cfg.contrast and len(self.mi) and step < cfg.lld_fraction * batches:
            # stage 1: the q networks alone climb the lld
            with ctx.autocast():
                lld_q = self.pair_log_likelihood({m: v.detach() for m, v in vectors.items()})
            ctx.backward(-lld_q)
            ctx.step("mmilb")
            logged["lld_stage1"] = float(lld_q.detach())

        y = batch.y.float()
        with ctx.autocast():
            z, pred = self.fuse(vectors)
            task = ctx.loss_fn(pred, y)
            loss = task
            if cfg.contrast:
                nce = sum(self.cpc[m](vectors[m], z) for m in self.modalities)
                lld = self.pair_log_likelihood(vectors) if len(self.mi) else torch.zeros((), device=y.device)
                loss = loss + cfg.alpha * nce - cfg.beta * lld
                logged.update(nce=float(nce.detach()), lld=float(lld.detach()))
            projected = {p: self.mi[p].entropy_prj(vectors[PAIRS[p][1]]) for p in self.mi}  # (B, Y // 4)
            entropy = self.memory_entropy(projected, y, memory) if step > cfg.mem_size else None
            if entropy is not None:
                loss = loss - cfg.beta * entropy
                logged["entropy"] = float(entropy.detach())
        estimator = [p for p in self.mi.parameters() if p.requires_grad]
        held = [p.grad for p in estimator]  # stage 2 must not touch the q networks' gradients
        for p in estimator:
            p.grad = None
        ctx.backward(loss)
        ctx.step("main")
        for p, g in zip(estimator, held):
            p.grad = g
        self.remember(projected, y, memory, step)
        logged["task"] = float(task.detach())
        logged["total"] = float(loss.detach())
        return logged

    def memory_entropy(self, projected: dict[str, torch.Tensor], y: torch.Tensor,
                       memory: dict[str, dict[str, list[torch.Tensor]]]) -> torch.Tensor | None:
        """Sum over pairs of H on the current batch joined with the memory (pairs left out: Deviations)."""
        terms = []
        for p, current in projected.items():
            pos = torch.cat(memory[p]["pos"] + [current[y > 0].float()], dim=0)
            neg = torch.cat(memory[p]["neg"] + [current[y < 0].float()], dim=0)
            h = mixture_entropy(pos, neg)
            if h is not None:
                terms.append(h)
        return sum(terms) if terms else None

    def remember(self, projected: dict[str, torch.Tensor], y: torch.Tensor,
                 memory: dict[str, dict[str, list[torch.Tensor]]], step: int) -> None:
        """Keep this batch's projected positives and negatives; a full memory replaces its oldest entry."""
        for p, current in projected.items():
            for key, rows in (("pos", current[y > 0]), ("neg", current[y < 0])):
                kept = memory[p][key]
                if len(kept) < self.cfg.mem_size:
                    kept.append(rows.detach().float())
                else:
                    kept[step % self.cfg.mem_size] = rows.detach().float()
