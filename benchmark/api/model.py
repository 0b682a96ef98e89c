"""The model plugin contract (design 6): `MSAModel`, its config conventions and `MODELS`.

A plugin is one file in `models/` that subclasses `MSAModel`, sets `name`, `config_cls` (a frozen
dataclass of its `model.*` keys with the paper defaults), optionally `PRESETS` (per dataset family,
namespaced keys, e.g. {"mosi": {"train.lr": 1e-3, "model.dropout": 0.2}}), `TRAIN_DEFAULTS`
(namespaced `train.*` keys), `VARIANTS` (name -> namespaced overrides), `impl_version`, a
`tiny()` classmethod returning a small config, and registers itself with `@MODELS.register()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from msabench.core.registry import Registry
from msabench.core.types import Batch, InputSpec, ModelOutput

MODELS: Registry[type[MSAModel]] = Registry("model")


class MSAModel(nn.Module):
    name: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    impl_version: ClassVar[int] = 1
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {}
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {}
    # Modalities the model can take; a subset of ("t", "a", "v") it needs at least one of.
    SUPPORTED_MODALITIES: ClassVar[tuple[str, ...]] = ("t", "a", "v")
    REQUIRED_MODALITIES: ClassVar[tuple[str, ...]] = ()
    TASKS: ClassVar[tuple[str, ...]] = ("regression", "classification", "multilabel")
    HAS_TRAINABLE_PARAMS: ClassVar[bool] = True

    def __init__(self, cfg: Any, spec: InputSpec):
        super().__init__()
        self.cfg = cfg
        self.spec = spec

    @classmethod
    def tiny(cls) -> Any:
        """A small config for smoke runs and the conformance suite."""
        return cls.config_cls()

    @classmethod
    def check_inputs(cls, spec: InputSpec) -> str | None:
        """None when the model can take `spec`, else a sentence saying why not."""
        unsupported = [m for m in spec.modalities if m not in cls.SUPPORTED_MODALITIES]
        if unsupported:
            return f"model {cls.name!r} cannot take modalities {','.join(unsupported)} (it supports {','.join(cls.SUPPORTED_MODALITIES)})"
        missing = [m for m in cls.REQUIRED_MODALITIES if m not in spec.modalities]
        if missing:
            return f"model {cls.name!r} needs modalities {','.join(missing)}"
        if spec.task not in cls.TASKS:
            return f"model {cls.name!r} has no {spec.task} head"
        return None

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return {"main": [{"params": params}]} if params else {}

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        out = self(batch)
        task_loss = ctx.loss_fn(out.pred, batch.y)
        loss = task_loss
        for aux in out.aux_losses.values():
            loss = loss + aux
        ctx.backward(loss)
        ctx.step()
        logged = {"task": float(task_loss.detach())}
        logged.update({k: float(v.detach()) for k, v in out.aux_losses.items()})
        logged["total"] = float(loss.detach())
        return logged

    def on_epoch_start(self, ctx: Any) -> None:
        pass

    def on_epoch_end(self, ctx: Any) -> None:
        pass


def config_from_flat(config_cls: type, flat: dict[str, Any]) -> Any:
    """Build a model's config dataclass from the `model.*` keys of a resolved flat config."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.") and k[len("model."):] in names}
    return config_cls(**kwargs)


def config_to_flat(cfg: Any) -> dict[str, Any]:
    return {f"model.{k}": v for k, v in dataclasses.asdict(cfg).items()}


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over time of (B, T, D) using a (B, T) bool mask of real positions."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
