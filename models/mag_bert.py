"""`mag_bert`: BERT with the Multimodal Adaptation Gate (MAG) inside, over word-aligned audio and vision.

Paper: W. Rahman, M. K. Hasan, S. Lee, A. Zadeh, C. Mao, L.-P. Morency, E. Hoque, "Integrating
Multimodal Information in Large Pretrained Transformers", ACL 2020. Reference code followed: MMSA
2.2.1 (src/MMSA/models/singleTask/BERT_MAG.py, trainer trains/singleTask/BERT_MAG.py); the authors'
WasifurRahman/BERT_multimodal_transformer (bert.py, modeling.py) read for the injection site.

Architecture:
- BERT (the fine-tuned `TextEncoder` that `TextInput` owns) runs as usual, except that the hidden
  sequence Z leaving layer `inject_after` (0 = the embedding layer, MMSA's and the authors' choice
  for BERT; k = the k-th transformer layer) is replaced by MAG(Z, A, V) before the next layer sees it;
- MAG (paper eqs. 1-6; MMSA's MAG): per position, gates g_v = ReLU(W_hv [V; Z]), g_a = ReLU(W_ha [A; Z]),
  displacement H = g_v * W_v V + g_a * W_a A; scaling alpha = min(||Z|| / ||H|| x beta_shift, 1)
  (||H|| = 0 counted as 1); output Dropout(LayerNorm(Z + alpha H));
- head (MMSA's MAG_BertForSequenceClassification): BERT's pooler (Linear + Tanh on the first
  position, [CLS]), dropout `head_dropout`, Linear to the output.
The gate acts inside BERT through a forward hook on the embedding layer or on the k-th encoder
layer (prepended, so Hugging Face's recorded hidden states see the gated sequence); the harness's
`TextEncoder` and `TextInput` run unchanged. Audio and vision must be word-aligned with the text
(`NEEDS_ALIGNED`: the planner asks for data.aligned=true): position i of A and V is read at token i;
they are cut or zero-padded to the text's length and zeroed on their padded frames.

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "bert_mag": datasetParams
mosi (= the defaults), mosei, sims: beta_shift, dropout_prob -> `gate_dropout`, batch_size,
learning_rate (one Adam over every parameter, BERT included: train.text_lr = train.lr), pretrained
-> text.encoder (bert-base-uncased; bert-base-chinese for sims); commonParams weight_decay 0.0,
early_stop 8 -> train.patience, need_data_aligned true -> NEEDS_ALIGNED; MMSA fine-tunes BERT
(text.frozen false). `head_dropout` 0.1: BertConfig's hidden_dropout_prob, the classifier dropout of
MAG_BertForSequenceClassification. Injection after the embeddings: MAG_BertModel.forward ("Early
fusion with MAG", BertEmbeddings -> MAG -> BertEncoder). Trainer: Adam, L1 loss (the harness's
regression loss). meld and iemocap (no MMSA entry) get the mosi settings and bert-base-uncased.

Deviations:
- Without a fine-tuned encoder inside the model there are no BERT layers to inject into: with
  precomputed text features (MMSA's frozen-BERT vectors), a frozen encoder or token ids, the gate
  acts on the given text sequence (for features: after BERT's last layer), then the pooler and head
  read its first position. With token ids that first position is the [CLS] embedding, so the text
  adds a constant there: a degenerate but well-defined model, for the conformance suite.
- BERT's pooler: the encoder's own (pretrained) pooler when the Hugging Face model has one (as MMSA,
  which loads it with the weights); an encoder built without one (tiny-bert, `msabench models
  --params`) gets a freshly initialised Linear + Tanh of the same shape in the model. Either way the
  count equals MMSA's.
- Padded audio/vision frames are zeroed before the gate (MMSA feeds them as stored, zeros in its
  pickles); padded tokens never reach a real one (BERT's attention mask) nor the pooler.
- Modality subsets: the displacement sums over the non-verbal modalities present; with text alone
  there is no gate (BERT + head). Text is required.
- Gate parameters are float32; with text.dtype bfloat16/float16 the gate runs in float32 and its
  output is cast back to the encoder's dtype.
- Multilabel head (IEMOCAP): 4 logits, classification 3 (MMSA: num_labels=1 in every mode). Those
  tasks use the regression presets.
- Epochs: MMSA trains until early stopping (patience 8) with no cap; `train.epochs` caps at 100.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput, UserError

NONVERBAL = ("v", "a")  # MMSA's MAG: visual first, then acoustic
_BERT = {"text.encoder": "bert-base-uncased", "text.frozen": False}


@dataclass(frozen=True)
class MAGBertConfig:
    # MMSA config_regression.json "bert_mag" / "mosi"
    beta_shift: float = 1.0
    gate_dropout: float = 0.3  # dropout_prob
    inject_after: int = 0  # 0 = the embedding layer (MMSA MAG_BertModel); k = the k-th transformer layer
    head_dropout: float = 0.1  # BertConfig.hidden_dropout_prob (the classifier's dropout)
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _preset(lr: float, dropout: float, encoder: str = "bert-base-uncased") -> dict[str, Any]:
    return {"model.beta_shift": 1.0, "model.gate_dropout": dropout, "train.batch_size": 32, "train.lr": lr,
            "train.text_lr": lr, **_BERT, "text.encoder": encoder}


class AdaptationGate(nn.Module):
    """MAG: shift each position of Z (B, T, D) by a displacement gated from the aligned non-verbal
    inputs, scaled to at most beta_shift x ||Z||, then LayerNorm and dropout (paper eqs. 1-6)."""

    EPS = 1e-6  # MMSA's eps in the scaling

    def __init__(self, text_dim: int, nonverbal_dims: dict[str, int], beta_shift: float, dropout: float):
        super().__init__()
        self.gates = nn.ModuleDict({m: nn.Linear(d + text_dim, text_dim) for m, d in nonverbal_dims.items()})
        self.shifts = nn.ModuleDict({m: nn.Linear(d, text_dim) for m, d in nonverbal_dims.items()})
        self.beta_shift = beta_shift
        self.norm = nn.LayerNorm(text_dim)
        self.dropout = nn.Dropout(dropout)

    def displacement(self, z: torch.Tensor, nonverbal: dict[str, torch.Tensor]) -> torch.Tensor:
        # z: (B, T, D); nonverbal: m -> (B, T, D_m)
        return sum(F.relu(self.gates[m](torch.cat((x, z), dim=-1))) * self.shifts[m](x) for m, x in nonverbal.items())

    def forward(self, z: torch.Tensor, nonverbal: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.displacement(z, nonverbal)  # (B, T, D)
        h_norm = h.norm(dim=-1)
        h_norm = torch.where(h_norm == 0, torch.ones_like(h_norm), h_norm)
        alpha = torch.clamp_max(z.norm(dim=-1) / (h_norm + self.EPS) * self.beta_shift, 1.0)  # (B, T)
        return self.dropout(self.norm(z + alpha.unsqueeze(-1) * h))


def _fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, D) cut or zero-padded to (B, length, D)."""
    if x.shape[1] >= length:
        return x[:, :length]
    return F.pad(x, (0, 0, 0, length - x.shape[1]))


def _injection_site(transformer: nn.Module, inject_after: int, encoder_name: str) -> nn.Module:
    """The module whose output MAG replaces: the embeddings (0) or the k-th layer of a BERT-style encoder."""
    layers = getattr(getattr(transformer, "encoder", None), "layer", None)
    if not hasattr(transformer, "embeddings") or not isinstance(layers, nn.ModuleList):
        raise UserError(f"mag_bert: text.encoder={encoder_name!r} is not a BERT-style model (embeddings and "
                        f"encoder.layer); MAG is injected between BERT's layers")
    if not 0 <= inject_after <= len(layers):
        raise UserError(f"model.inject_after={inject_after}: {encoder_name} has layers 1 to {len(layers)}; use 0 "
                        f"(after the embeddings, MMSA's choice) to {len(layers)}")
    return transformer.embeddings if inject_after == 0 else layers[inject_after - 1]


@MODELS.register()
class MAGBert(MSAModel):
    name: ClassVar[str] = "mag_bert"
    config_cls: ClassVar[type] = MAGBertConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    USES_TEXT_ENCODER: ClassVar[bool] = True
    REQUIRED_MODALITIES: ClassVar[tuple[str, ...]] = ("t",)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 2e-5,
        "train.text_lr": 2e-5,  # one Adam over every parameter, BERT included
        "train.batch_size": 32,
        "train.weight_decay": 0.0,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": _preset(lr=2e-5, dropout=0.3),
        "mosei": _preset(lr=1e-5, dropout=0.2),
        "sims": _preset(lr=5e-5, dropout=0.1, encoder="bert-base-chinese"),
        "meld": dict(_BERT),
        "iemocap": dict(_BERT),
    }

    def __init__(self, cfg: MAGBertConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        if "t" not in spec.modalities:
            raise ValueError("mag_bert needs text")
        self.text = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        width = self.text.out_dim
        self.nonverbal = tuple(m for m in NONVERBAL if m in spec.modalities)
        self.gate = (AdaptationGate(width, {m: int(spec.dims[m]) for m in self.nonverbal}, cfg.beta_shift,
                                    cfg.gate_dropout) if self.nonverbal else None)
        self._gate_inputs: dict[str, torch.Tensor] | None = None  # set only while forward runs BERT
        encoder = self.text.encoder
        self.inside_bert = encoder is not None and self.gate is not None
        if self.inside_bert:
            site = _injection_site(encoder.transformer, cfg.inject_after, encoder.settings.name)
            site.register_forward_hook(self._gate_hook, prepend=True)
        bert_pooler = getattr(encoder.transformer, "pooler", None) if encoder is not None else None
        # the encoder's own pooler when it has one (pretrained, as MMSA), else one of the same shape
        self.pooler = None if bert_pooler is not None else nn.Sequential(nn.Linear(width, width), nn.Tanh())
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.classifier = nn.Linear(width, 1 if spec.task == "regression" else int(spec.n_outputs))

    @classmethod
    def tiny(cls) -> MAGBertConfig:
        return MAGBertConfig(gate_dropout=0.1, token_embed_dim=8)

    @contextlib.contextmanager
    def gating(self, nonverbal: dict[str, torch.Tensor]) -> Iterator[None]:
        """Within: BERT's pass applies MAG with these aligned inputs (m -> (B, T_m, D_m)) at the injection site."""
        self._gate_inputs = nonverbal
        try:
            yield
        finally:
            self._gate_inputs = None

    def _gate_hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self._gate_inputs is None:  # BERT run outside this model's forward: left as it is
            return None
        hidden = output if isinstance(output, torch.Tensor) else output[0]  # (B, T, D)
        gated = self.apply_gate(hidden, self._gate_inputs)
        return gated if isinstance(output, torch.Tensor) else (gated, *output[1:])

    def apply_gate(self, z: torch.Tensor, nonverbal: dict[str, torch.Tensor]) -> torch.Tensor:
        """MAG over z (B, T, D) with the aligned inputs fitted to its T, computed in float32."""
        fitted = {m: _fit_length(x, z.shape[1]).float() for m, x in nonverbal.items()}
        return self.gate(z.float(), fitted).to(z.dtype)

    def aligned_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Vision and audio (B, T_m, D_m), zero on padded frames."""
        out = {}
        for m in self.nonverbal:
            x, mask = batch.modality(m)
            x = x.float()
            out[m] = x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)
        return out

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """BERT's pooler over the first position: (B, T, D) -> (B, D)."""
        if self.pooler is None:
            return self.text.encoder.transformer.pooler(x).float()
        return self.pooler(x[:, 0].float())

    def forward(self, batch: Batch) -> ModelOutput:
        nonverbal = self.aligned_inputs(batch)  # m -> (B, T, D_m)
        if self.inside_bert:
            with self.gating(nonverbal):
                x, _ = self.text(batch)  # (B, T, D): BERT's last layer, MAG applied inside
        else:
            x, _ = self.text(batch)  # (B, T, D)
            if self.gate is not None:
                x = self.apply_gate(x.float(), nonverbal)
        pooled = self.pool(x)  # (B, D)
        pred = self.classifier(self.head_dropout(pooled))  # (B, out)
        if self.spec.task == "regression":
            pred = pred.squeeze(-1)
        return ModelOutput(pred=pred, features={"text": x[:, 0].float(), "pooled": pooled})
