"""Losses over padded sequences, shared by the reconstruction / translation models (`mfm`, `mctn`)."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE of (B, T, D) tensors over the real steps of a (B, T) bool mask (every feature counted)."""
    m = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)
