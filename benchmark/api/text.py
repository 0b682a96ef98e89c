"""`TextInput`: the single place where a model turns a batch's text into (B, T, D) vectors.

Text reaches a model in one of three forms (`InputSpec.text_kind`):

* ``"features"``: precomputed token vectors (`Batch.text_feats`, e.g. MMSA's 768-d BERT features).
  They pass through unchanged, or through one ``nn.Linear`` when the model asks for another width.
* ``"tokens"``: token ids (`Batch.text_ids`) through a trainable ``nn.Embedding`` (``padding_idx`` =
  the vocabulary's pad id).
* ``"encoded"``: a Hugging Face encoder's outputs (`msabench.api.text_encoder`, ``text.encoder``).
  Frozen (``text.frozen=true``), the engine encodes each split once through the text cache and the
  batch carries the outputs as `text_feats`, which pass as features do. Fine-tuned, this module owns
  the `TextEncoder` and runs it on `Batch.text_ids` every batch; the model's `param_groups` puts its
  parameters in their own group at ``train.text_lr``. ``InputSpec.dims["t"]`` is the encoder's width.

Models must only ever call ``TextInput``: they never read the batch's ``text_ids`` / ``text_feats``
themselves (the conformance suite checks model sources for it).
"""

from __future__ import annotations

import torch
from torch import nn

from msabench.api.types import Batch, InputSpec
from msabench.core.errors import UserError

# Embedding width used for token input when a model does not ask for one.
DEFAULT_TOKEN_DIM = 128


class TextInput(nn.Module):
    """Text of a batch -> ((B, T, D) float vectors, (B, T) bool mask of real positions).

    ``dim``: the width the model wants. With features, ``None`` (or the feature width) keeps the
    features as they are, another value adds a trainable projection. With tokens it is the
    embedding width (``DEFAULT_TOKEN_DIM`` when ``None``). ``out_dim`` is the resulting width.
    """

    def __init__(self, spec: InputSpec, dim: int | None = None):
        super().__init__()
        self.kind = spec.text_kind
        self.encoder: nn.Module | None = None
        if self.kind == "encoded" and not spec.text_encoder.get("frozen", True):
            from msabench.api.text_encoder import EncoderSettings, TextEncoder

            self.encoder = TextEncoder(EncoderSettings(**spec.text_encoder))
        if self.kind in ("features", "encoded"):
            in_dim = int(spec.dims["t"])
            if dim is None or int(dim) == in_dim:
                self.proj: nn.Module = nn.Identity()
                self.out_dim = in_dim
            else:
                self.proj = nn.Linear(in_dim, int(dim))
                self.out_dim = int(dim)
        elif self.kind == "tokens":
            if spec.vocab_size <= 0:
                raise UserError("text is tokens but the input spec has no vocabulary (vocab_size 0); "
                                "the dataset must ship a vocab.txt, or use text features")
            self.out_dim = int(dim) if dim is not None else DEFAULT_TOKEN_DIM
            self.pad_id = int(spec.special_ids.get("pad", 0))
            self.embedding = nn.Embedding(int(spec.vocab_size), self.out_dim, padding_idx=self.pad_id)
        else:
            raise UserError(f"unknown text kind {spec.text_kind!r}; use 'tokens', 'features' or 'encoded'")

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.encoder is not None:  # fine-tuned: the ids ([UNK] where dropped) through the encoder
            ids, mask = batch.text_ids, batch.text_mask
            if ids is None:
                raise ValueError("the input spec says a fine-tuned text encoder but the batch carries no token ids")
            if mask is None:
                mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
            x, mask = self.encoder(ids, mask.bool())  # (B, T', D), (B, T')
            return self.proj(x.float()), mask
        if self.kind in ("features", "encoded"):
            x = batch.text_feats
            if x is None:
                raise ValueError("the input spec says text features but the batch carries none")
            x = self.proj(x.float())
        else:
            ids = batch.text_ids
            if ids is None:
                raise ValueError("the input spec says text tokens but the batch carries no token ids")
            x = self.embedding(ids.long())
        mask = batch.text_mask
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return x, mask.bool()
