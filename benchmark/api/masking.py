"""Torch-side masking helpers for models (docs/architecture.md §5, missing-modality masks).

The protocol's drop masks come with the batch (`Batch.missing`, `Batch.drop_mask(m)`,
`Batch.complete_view()`); these helpers let a model mask on its own (e.g. a model that draws its own
training-time views) with the same semantics: padding is never touched, dropped token ids become
[UNK], dropped feature vectors become 0, and text may keep its first and last real token ([CLS]/[SEP]).
"""

from __future__ import annotations

import torch

from msabench.api.types import Batch
from msabench.data.masks import apply_drop


def drop_positions(values: torch.Tensor, drop: torch.Tensor, *, unk_id: int | None = None) -> torch.Tensor:
    """A copy of `values` ((B, T) ids or (B, T[, D]) floats) with `drop` ((B, T) bool) positions replaced."""
    return apply_drop(values, drop, unk_id=unk_id)


def random_drop_mask(real: torch.Tensor, rate: float, generator: torch.Generator | None = None,
                     keep_ends: bool = False) -> torch.Tensor:
    """(B, T) bool: each real position (`real` True) dropped independently with probability `rate`.

    `keep_ends` keeps each row's first and last real position (text's [CLS] and [SEP]).
    """
    real = real.bool()
    draw = torch.rand(real.shape, generator=generator, device="cpu").to(real.device) < rate
    drop = draw & real
    if keep_ends:
        lengths = real.sum(dim=1)
        rows = torch.arange(real.shape[0], device=real.device)
        drop[rows, 0] = False
        drop[rows, (lengths - 1).clamp_min(0)] = False
    return drop


def complete_view(batch: Batch) -> Batch:
    """The batch with its un-dropped inputs (see `Batch.complete_view`)."""
    return batch.complete_view()


def masked_view(batch: Batch) -> Batch:
    """The batch as the protocol masked it (the batch's own fields): named for symmetry in recipes."""
    return batch
