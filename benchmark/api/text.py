"""`TextInput`: the single place where a model turns a batch's text into (B, T, D) vectors.

Text reaches a model in one of two forms (`InputSpec.text_kind`):

* ``"features"``: precomputed token vectors (`Batch.text_feats`, e.g. MMSA's 768-d BERT features).
  They pass through unchanged, or through one ``nn.Linear`` when the model asks for another width.
* ``"tokens"``: token ids (`Batch.text_ids`). For now they go through a trainable ``nn.Embedding``
  (``padding_idx`` = the vocabulary's pad id).

A Hugging Face ``TextEncoder`` (a model by name or local path, frozen with the content-addressed
cache of design 5, or fine-tuned with its own lr) will replace the token path (roadmap item 1).
So that this swap touches one file, models must only ever call ``TextInput``: they never read the
batch's ``text_ids`` / ``text_feats`` themselves (the conformance suite checks model sources for it).
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
        if self.kind == "features":
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
            raise UserError(f"unknown text kind {spec.text_kind!r}; use 'tokens' or 'features'")

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "features":
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
