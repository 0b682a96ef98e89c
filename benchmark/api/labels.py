"""Torch-side sentiment classes for models with class heads on regression scores (docs/architecture.md §5).

A model that trains a 3-class head next to a regression head (MTMD's classification subtasks)
derives its class targets from the batch's scores by the run's label rule (`InputSpec.label_rule`).
The rule has one definition, `msabench.data.labels.to_classes`; this wraps it for tensors so that a
model never re-implements it (class order neg=0, neu=1, pos=2).
"""

from __future__ import annotations

import torch

from msabench.data.labels import to_classes


def sentiment_classes(scores: torch.Tensor, rule: str) -> torch.Tensor:
    """(N,) sentiment scores -> (N,) long classes under `rule` ("sign" | "round"), on the scores' device."""
    classes = to_classes(scores.detach().reshape(-1).to("cpu", torch.float64).numpy(), rule)
    return torch.from_numpy(classes).to(scores.device)
