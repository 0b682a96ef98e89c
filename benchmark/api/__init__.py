"""The model-facing API: everything a model plugin imports (docs/adding-a-model.md).

A plugin imports only from here and from `msabench.models.layers`. Names resolve lazily (PEP 562),
so `msabench.api.types` (plain dataclasses) can be imported by torch-free code such as the planner
without pulling in torch through `MSAModel`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # contract types (torch-free)
    "InputSpec": "msabench.api.types",
    "Batch": "msabench.api.types",
    "MissingView": "msabench.api.types",
    "ModelOutput": "msabench.api.types",
    "MODALITIES": "msabench.core.types",
    "MODALITY_NAMES": "msabench.core.types",
    "TASKS": "msabench.core.types",
    "CLASS_NAMES": "msabench.core.types",
    "IEMOCAP_EMOTIONS": "msabench.core.types",
    "UserError": "msabench.core.errors",
    "did_you_mean": "msabench.core.errors",
    # the model base class and its registry
    "MSAModel": "msabench.api.model",
    "MODELS": "msabench.api.model",
    "config_from_flat": "msabench.api.model",
    "masked_mean": "msabench.api.model",
    # training
    "TrainContext": "msabench.api.context",
    "OptimizerSpec": "msabench.api.context",
    "SchedulerSpec": "msabench.api.context",
    "task_loss_fn": "msabench.api.context",
    # text and masking
    "TextInput": "msabench.api.text",
    "drop_positions": "msabench.api.masking",
    "complete_view": "msabench.api.masking",
    "masked_view": "msabench.api.masking",
    # labels
    "sentiment_classes": "msabench.api.labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'msabench.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
