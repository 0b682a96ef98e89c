"""`almt`: Adaptive Language-guided Multimodal Transformer (ALMT), hyper-modality learning.

Paper: H. Zhang, Y. Wang, G. Yin, K. Liu, Y. Liu, T. Yu, "Learning Language-guided Adaptive
Hyper-modality Representation for Multimodal Sentiment Analysis", EMNLP 2023. The paper is not
among the project's papers (S2LIF, shared/papers/s2lif.txt, uses it as a baseline, Tables 1-3); the
facts come from the authors' code, github Haoyu-ha/ALMT (models/almt.py, models/almt_layer.py,
configs/{mosi,mosei,sims}.yaml, train.py, core/scheduler.py), read for facts and written anew.

Architecture:
- unimodal representations (`unimodal`): text through `TextInput` (a fine-tuned BERT by default);
  each modality Linear(input width -> `dim`), then a transformer (`embed_layers` layers) over
  [`num_tokens` learnable tokens (zero-initialised); the sequence] with a learnable positional
  embedding (N(0, 1)-initialised, `num_tokens` + T_max positions): the outputs at the token
  positions, (B, `num_tokens`, `dim`) per modality: each modality compressed into 8 tokens;
- language encoder: the text tokens + a learnable positional embedding through `hyper_layers` - 1
  transformer layers, keeping every level (the input and each layer's output: `hyper_layers` levels);
- adaptive hyper-modality learning (AHL): H_hyper starts as a learnable (`num_tokens`, `dim`) tensor
  of ones; layer i takes the text level i as queries and attends to audio and to vision separately
  (own key/value maps per source, `hyper_heads` x `hyper_dim_head`), sums the two attention outputs,
  projects them (Linear + dropout `hyper_dropout`) and adds them to LayerNorm(H_hyper); every input
  of a layer has its own LayerNorm;
- cross-modality fusion: a transformer (`fusion_layers` layers) in which [token; last text level]
  (the queries) attends to [token; H_hyper] (keys and values), each with its own learnable positional
  embedding, the token a shared learnable vector (zero-initialised); its output at the token -> Linear
  to the output.
Transformer layers are pre-LN: attention with its own LayerNorm for queries, keys and values
(`heads` x `dim_head`, bias-free q/k/v maps, Linear(+bias) out), residual; LayerNorm -> Linear(`dim`,
`mlp_dim`) -> GELU -> Linear -> residual; dropout `dropout` after the attention projection and in the
MLP (0 in the authors' configs).

Training and selection: regression loss MSE (`regression_loss`, the authors' train.py), classes
cross-entropy; AdamW (lr 1e-4, weight decay 1e-4) over every parameter, BERT included at the same lr;
warm-up over the first 10% then decay; 200 epochs, batch 64. Model selection is the harness's rule
(`val`: the epoch with the best validation value), not the official code's choice of the best *test*
epoch for each metric separately (its README, note 4: Acc-2/F1 and MAE may come from different
epochs). With no early stopping in the official code, train.patience = train.epochs.

Defaults and presets: configs/mosi.yaml (the defaults), mosei.yaml and sims.yaml: token_len ->
`num_tokens`; token_dim = proj_input_dim = {l,a,v}_proj_dst_dim -> `dim`; proj_depth ->
`embed_layers`, proj_heads -> `heads`, proj_mlp_dim -> `mlp_dim`; l_enc_heads / l_enc_mlp_dim (= heads,
mlp_dim in every config); AHL_depth -> `hyper_layers`; ahl_heads, ahl_dim_head, ahl_droup ->
`hyper_heads`, `hyper_dim_head`, `hyper_dropout`; fusion_layer_depth -> `fusion_layers` (2 mosi, 4
mosei/sims); fusion_heads / fusion_mlp_dim (= heads, mlp_dim); bert_pretrained -> text.encoder
(bert-base-uncased, bert-base-chinese for sims); base lr, weight_decay, batch_size, n_epochs -> train.*.
`dim_head` 64 and `dropout` 0: the defaults of almt_layer.py's Transformer and CrossTransformer.
`almt@frozen` / `almt@finetune`: text.frozen true / false (S2LIF's "M-Frozen" and "M-Fine tuning"
rows); the official code always fine-tunes.

`almt@mask-frozen` / `almt@mask-finetune` (S2LIF's "ALMT + Mask" rows, `model.feature_mask`): S2LIF's
learnable mask (eqs. 6-11) on each modality's `num_tokens` tokens, the sparsity term (eq. 12) weighted
by `mask_sparsity_weight` added to the task loss. S2LIF does not say where it adds its masks to ALMT
nor with which weight: both are this re-implementation's choice (layers/learnable_mask.ModalityMasks).

Deviations:
- Padding is masked in the unimodal transformers: padded frames get no attention weight (the
  official code attends to every padded position, and gives them positional embeddings).
- Modality subsets: AHL attends to the non-verbal modalities present (S2LIF's text + vision rows:
  vision only); with text alone H_hyper is its LayerNorm'd initial value at every layer. Text is
  required (the model is language-guided).
- The schedule: linear warm-up over 10% of the optimisation steps, then linear decay to 0, stepped
  per optimisation step (the harness's `linear`); the official code warms up linearly over 10% of
  the epochs, then cosine-anneals over the remaining 90%, stepped per epoch.
- Classification heads (S2LIF's 3 classes) end in n_outputs logits under cross-entropy; the
  official code has a regression head only.
- The harness's epoch loop, selection and early stopping (see above); evaluation is on the
  validation and test splits each epoch, as the official code.
- The positional embeddings are sized by `InputSpec.max_lens` (official: the configs' *_input_length,
  the same at MOSI/MOSEI/SIMS shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput
from msabench.models.layers.learnable_mask import ModalityMasks

MODALITY_ORDER = ("t", "a", "v")
NON_VERBAL = ("a", "v")
REGRESSION_LOSSES = ("mse", "l1")


@dataclass(frozen=True)
class ALMTConfig:
    # Haoyu-ha/ALMT configs/mosi.yaml
    num_tokens: int = 8  # token_len
    dim: int = 128  # token_dim, proj_input_dim, *_proj_dst_dim
    embed_layers: int = 1  # proj_depth
    heads: int = 8  # proj_heads, l_enc_heads, fusion_heads
    mlp_dim: int = 128  # proj_mlp_dim, l_enc_mlp_dim, fusion_mlp_dim
    hyper_layers: int = 3  # AHL_depth (the language encoder has AHL_depth - 1 layers)
    hyper_heads: int = 8  # ahl_heads
    hyper_dim_head: int = 16  # ahl_dim_head
    hyper_dropout: float = 0.0  # ahl_droup
    fusion_layers: int = 2  # fusion_layer_depth
    # almt_layer.py defaults (Transformer, CrossTransformer)
    dim_head: int = 64
    dropout: float = 0.0
    # train.py: torch.nn.MSELoss()
    regression_loss: str = "mse"
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128
    # S2LIF Tables 1-2 "ALMT + Mask": learnable masks on each modality's compressed tokens
    # (layers/learnable_mask.ModalityMasks); the weight is S2LIF's alpha as `s2lif` sets it (not given by the paper)
    feature_mask: bool = False
    mask_sparsity_weight: float = 0.01


def almt_preset(fusion_layers: int, encoder: str) -> dict[str, Any]:
    """A preset in the shape of the authors' configs/<dataset>.yaml (what differs between datasets)."""
    return {"model.fusion_layers": fusion_layers, "text.encoder": encoder, "text.frozen": False}


class Attention(nn.Module):
    """Pre-LN multi-head attention: own LayerNorm for queries, keys, values; bias-free q/k/v maps."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        # almt_layer.py: no output projection exactly when heads == 1 and dim_head == dim
        self.to_out = (nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
                       if not (heads == 1 and dim_head == dim) else nn.Identity())

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        # q: (B, Nq, D); k, v: (B, Nk, D); key_mask: (B, Nk) bool, True = may be attended to
        return self.to_out(attend(self.to_q(self.norm_q(q)), self.to_k(self.norm_k(k)), self.to_v(self.norm_v(v)),
                                  self.heads, self.scale, key_mask))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float,
           key_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention over `heads` heads: (B, Nq, H*Dh), (B, Nk, H*Dh) x2 -> (B, Nq, H*Dh)."""
    b, nq, inner = q.shape
    nk = k.shape[1]
    qh = q.view(b, nq, heads, -1).transpose(1, 2)  # (B, H, Nq, Dh)
    kh = k.view(b, nk, heads, -1).transpose(1, 2)
    vh = v.view(b, nk, heads, -1).transpose(1, 2)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * scale  # (B, H, Nq, Nk)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(scores.float(), dim=-1).to(vh.dtype), vh)  # (B, H, Nq, Dh)
    return out.transpose(1, 2).reshape(b, nq, inner)


class FeedForward(nn.Module):
    """Pre-LN MLP: LayerNorm -> Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


class EncoderLayer(nn.Module):
    """x + Attention(x, x, x), then + FeedForward; `source` given: the target x attends to it."""

    def __init__(self, cfg: ALMTConfig):
        super().__init__()
        self.attention = Attention(cfg.dim, cfg.heads, cfg.dim_head, cfg.dropout)
        self.mlp = FeedForward(cfg.dim, cfg.mlp_dim, cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                source: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if source is None else source
        x = x + self.attention(x, kv, kv, key_mask)
        return x + self.mlp(x)


class TokenEncoder(nn.Module):
    """almt_layer.py's Transformer: [learnable tokens;] x + positional embedding, then layers.

    With `num_tokens` > 0 the tokens (zeros) are prepended and the output is at their positions
    ((B, num_tokens, D)); else the output is every level: [input, after layer 1, ...].
    """

    def __init__(self, cfg: ALMTConfig, num_frames: int, num_tokens: int, layers: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.tokens = nn.Parameter(torch.zeros(1, num_tokens, cfg.dim)) if num_tokens else None
        self.positions = nn.Parameter(torch.randn(1, num_frames + num_tokens, cfg.dim))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        # x: (B, T, D), mask: (B, T) real frames (None: all real)
        b, t, _ = x.shape
        if t + self.num_tokens > self.positions.shape[1]:
            raise ValueError(f"almt: a sequence of {t} steps, longer than the input spec's "
                             f"{self.positions.shape[1] - self.num_tokens}")
        key_mask = None
        if self.tokens is not None:
            x = torch.cat([self.tokens.expand(b, -1, -1), x], dim=1)  # (B, N + T, D)
            if mask is not None:
                key_mask = torch.cat([torch.ones(b, self.num_tokens, dtype=torch.bool, device=x.device), mask], dim=1)
        elif mask is not None:
            key_mask = mask
        x = x + self.positions[:, : x.shape[1]]
        levels = [x]
        for layer in self.layers:
            x = layer(x, key_mask)
            levels.append(x)
        if self.tokens is not None:
            return [x[:, : self.num_tokens]]
        return levels


class HyperLayer(nn.Module):
    """One AHL layer: H_hyper <- LayerNorm(H_hyper) + Linear(sum over sources of attention(text -> source))."""

    def __init__(self, cfg: ALMTConfig, sources: tuple[str, ...]):
        super().__init__()
        inner = cfg.hyper_heads * cfg.hyper_dim_head
        self.heads, self.scale = cfg.hyper_heads, cfg.hyper_dim_head ** -0.5
        self.norm_text, self.norm_hyper = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.norm_source = nn.ModuleDict({m: nn.LayerNorm(cfg.dim) for m in sources})
        self.to_q = nn.Linear(cfg.dim, inner, bias=False)
        self.to_k = nn.ModuleDict({m: nn.Linear(cfg.dim, inner, bias=False) for m in sources})
        self.to_v = nn.ModuleDict({m: nn.Linear(cfg.dim, inner, bias=False) for m in sources})
        self.to_out = (nn.Sequential(nn.Linear(inner, cfg.dim), nn.Dropout(cfg.hyper_dropout))
                       if not (cfg.hyper_heads == 1 and cfg.hyper_dim_head == cfg.dim) else nn.Identity())

    def forward(self, text: torch.Tensor, sources: dict[str, torch.Tensor], hyper: torch.Tensor) -> torch.Tensor:
        # text, hyper, sources[m]: (B, N, D) -> (B, N, D)
        hyper = self.norm_hyper(hyper)
        if not self.to_k:
            return hyper
        q = self.to_q(self.norm_text(text))
        shift = 0
        for m in self.to_k:
            s = self.norm_source[m](sources[m])
            shift = shift + attend(q, self.to_k[m](s), self.to_v[m](s), self.heads, self.scale, None)
        return hyper + self.to_out(shift)


class CrossFusion(nn.Module):
    """almt_layer.py's CrossTransformer: [token; target] attends to [token; source]; output at the token."""

    def __init__(self, cfg: ALMTConfig, source_len: int, target_len: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.source_positions = nn.Parameter(torch.randn(1, source_len + 1, cfg.dim))
        self.target_positions = nn.Parameter(torch.randn(1, target_len + 1, cfg.dim))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.fusion_layers))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # source: (B, Ns, D) (H_hyper), target: (B, Nt, D) (text) -> (B, D)
        token = self.token.expand(source.shape[0], -1, -1)
        source = torch.cat([token, source], dim=1) + self.source_positions[:, : source.shape[1] + 1]
        x = torch.cat([token, target], dim=1) + self.target_positions[:, : target.shape[1] + 1]
        for layer in self.layers:
            x = layer(x, source=source)
        return x[:, 0]


@MODELS.register()
class ALMT(MSAModel):
    name: ClassVar[str] = "almt"
    config_cls: ClassVar[type] = ALMTConfig
    impl_version: ClassVar[int] = 1
    USES_TEXT_ENCODER: ClassVar[bool] = True
    REQUIRED_MODALITIES: ClassVar[tuple[str, ...]] = ("t",)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adamw",
        "train.lr": 1e-4,
        "train.text_lr": 1e-4,  # one optimiser, one lr: BERT trains at the base lr
        "train.weight_decay": 1e-4,
        "train.batch_size": 64,
        "train.epochs": 200,
        "train.patience": 200,  # no early stopping in the official code
        "train.scheduler": "linear",  # warm-up over 10%, then decay (official: cosine, per epoch)
        "train.warmup_ratio": 0.1,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": almt_preset(2, "bert-base-uncased"),
        "mosei": almt_preset(4, "bert-base-uncased"),
        "sims": almt_preset(4, "bert-base-chinese"),
        # no official config: the model's text encoder, nothing else
        "meld": {"text.encoder": "bert-base-uncased", "text.frozen": False},
        "iemocap": {"text.encoder": "bert-base-uncased", "text.frozen": False},
    }
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {
        "frozen": {"text.frozen": True},  # S2LIF "ALMT (M-Frozen)"
        "finetune": {"text.frozen": False},  # S2LIF "ALMT (M-Fine tuning)"
        "mask-frozen": {"text.frozen": True, "model.feature_mask": True},  # S2LIF "ALMT + Mask (M-Frozen)"
        "mask-finetune": {"text.frozen": False, "model.feature_mask": True},  # "ALMT + Mask (M-Fine tuning)"
    }

    def __init__(self, cfg: ALMTConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if cfg.regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"model.regression_loss={cfg.regression_loss!r}: use one of "
                             f"{', '.join(REGRESSION_LOSSES)}")
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        self.sources = tuple(m for m in NON_VERBAL if m in self.modalities)
        self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        in_dims = {m: (self.text_input.out_dim if m == "t" else int(spec.dims[m])) for m in self.modalities}
        self.proj = nn.ModuleDict({m: nn.Linear(in_dims[m], cfg.dim) for m in self.modalities})
        self.compress = nn.ModuleDict({m: TokenEncoder(cfg, int(spec.max_lens[m]), cfg.num_tokens, cfg.embed_layers)
                                       for m in self.modalities})
        self.text_encoder = TokenEncoder(cfg, cfg.num_tokens, 0, cfg.hyper_layers - 1)
        self.hyper_init = nn.Parameter(torch.ones(1, cfg.num_tokens, cfg.dim))
        self.hyper = nn.ModuleList(HyperLayer(cfg, self.sources) for _ in range(cfg.hyper_layers))
        self.fusion = CrossFusion(cfg, cfg.num_tokens, cfg.num_tokens)
        self.out = nn.Linear(cfg.dim, 1 if spec.task == "regression" else int(spec.n_outputs))
        self.feature_masks = (ModalityMasks({m: cfg.dim for m in self.modalities}, cfg.mask_sparsity_weight)
                              if cfg.feature_mask else None)

    @classmethod
    def tiny(cls) -> ALMTConfig:
        return ALMTConfig(num_tokens=4, dim=16, heads=2, dim_head=8, mlp_dim=16, hyper_layers=2, hyper_heads=2,
                          hyper_dim_head=8, fusion_layers=1, token_embed_dim=16)

    def unimodal(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each present modality compressed into its `num_tokens` learnable tokens: m -> (B, N, D)."""
        out = {}
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)  # (B, T, D_t)
            else:
                x, mask = batch.modality(m)
                x = x.float()
            out[m] = self.compress[m](self.proj[m](x.float()), None if mask is None else mask.bool())[0]  # (B, N, D)
            if self.feature_masks is not None:
                out[m] = self.feature_masks(m, out[m])  # (B, N, D), eq. 10 on the modality's tokens
        return out

    def predict(self, unimodal: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Language-guided hyper-modality learning, cross-modality fusion and the head."""
        text_levels = self.text_encoder(unimodal["t"])  # hyper_layers x (B, N, D)
        sources = {m: unimodal[m] for m in self.sources}
        hyper = self.hyper_init.expand(unimodal["t"].shape[0], -1, -1)  # (B, N, D)
        for level, layer in zip(text_levels, self.hyper):
            hyper = layer(level, sources, hyper)
        fused = self.fusion(hyper, text_levels[-1])  # (B, D)
        out = self.out(fused)  # (B, 1) | (B, C)
        features = {m: u.mean(dim=1) for m, u in unimodal.items()}
        features.update(hyper=hyper.mean(dim=1), fusion=fused)
        return (out.squeeze(-1) if self.spec.task == "regression" else out), features

    def forward(self, batch: Batch) -> ModelOutput:
        pred, features = self.predict(self.unimodal(batch))
        return ModelOutput(pred=pred, features=features)

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        with ctx.autocast():
            pred = self(batch).pred
            if self.spec.task == "regression" and self.cfg.regression_loss == "mse":
                loss = F.mse_loss(pred.reshape(-1).float(), batch.y.float())
            else:
                loss = ctx.loss_fn(pred, batch.y)
            task = loss
            if self.feature_masks is not None:
                loss = task + self.feature_masks.penalty()
        ctx.backward(loss)
        ctx.step()
        logged = {"task": float(task.detach()), "total": float(loss.detach())}
        if self.feature_masks is not None:
            logged.update({f"kept_{m}": share for m, share in self.feature_masks.kept_shares().items()})
        return logged
