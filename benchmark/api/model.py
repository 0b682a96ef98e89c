"""The model plugin contract (docs/architecture.md §6): `MSAModel`, its config conventions and `MODELS`.

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

from msabench.api.types import Batch, InputSpec, ModelOutput
from msabench.core.registry import Registry

ENTRY_POINT_GROUP = "msabench.models"


def _discover_models() -> None:
    """The built-in plugins (`msabench.models`), then third-party ones from the entry-point group.

    An entry point names a module (importing it registers its models) or an `MSAModel` subclass.
    A plugin that fails to load is reported on stderr and skipped, so one broken package never
    breaks the command line for every other model.
    """
    import importlib.metadata
    import sys

    import msabench.models  # noqa: F401  (registers the built-in plugins)

    seen = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001  (a third-party import can raise anything)
            print(f"msabench: warning: model plugin {ep.name!r} ({ep.value}) failed to load: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if isinstance(loaded, type) and issubclass(loaded, MSAModel) and loaded.name not in MODELS._items:
            MODELS.add(loaded.name, loaded)


MODELS: Registry[type[MSAModel]] = Registry("model", discover=_discover_models)


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
    # Capabilities the planner and the conformance suite read (never the model's name):
    NEEDS_ALIGNED: ClassVar[bool] = False  # word-aligned sequences (all modalities at text length)
    MASKS_PADDING: ClassVar[bool] = True  # padded positions never change the output
    USES_TEXT_ENCODER: ClassVar[bool] = False  # reads text through a Hugging Face encoder (BERT) by default
    # Epochs of a few steps that the conformance suite runs before it expects every trainable
    # parameter to have moved: more than 1 for models whose parameters train in later stages.
    CONFORMANCE_EPOCHS: ClassVar[int] = 1
    # A baseline that predicts one value by design (`constant`): its runs are not flagged degenerate.
    CONSTANT_BY_DESIGN: ClassVar[bool] = False

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
            return (f"model {cls.name!r} cannot take modalities {','.join(unsupported)} "
                    f"(it supports {','.join(cls.SUPPORTED_MODALITIES)})")
        missing = [m for m in cls.REQUIRED_MODALITIES if m not in spec.modalities]
        if missing:
            return f"model {cls.name!r} needs modalities {','.join(missing)}"
        if spec.task not in cls.TASKS:
            return f"model {cls.name!r} has no {spec.task} head"
        if cls.NEEDS_ALIGNED and not spec.aligned:
            lens = ", ".join(f"{m}={spec.max_lens.get(m)}" for m in spec.modalities)
            return (f"model {cls.name!r} needs word-aligned sequences (every modality at the text's length; "
                    f"these have {lens}): use --set data.aligned=true on the synthetic suite, or "
                    f"data.source=aligned for MMSA's aligned_50.pkl")
        return None

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def inference_parameter_count(self) -> int:
        """Parameters of the networks used at inference (trainable or frozen, a frozen text encoder
        included): the `#Params` papers print (EMT-DLFR Table 9). Models with networks used only in
        training (e.g. EMT-DLFR's feature-reconstruction decoders) override this to leave them out."""
        return sum(p.numel() for p in self.parameters())

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """One optimiser "main"; a fine-tuned `TextEncoder`'s parameters form its own group at train.text_lr."""
        from msabench.api.text_encoder import TextEncoder

        text = {id(p): p for m in self.modules() if isinstance(m, TextEncoder) for p in m.parameters()
                if p.requires_grad}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in text]
        groups = [{"params": params}] if params else []
        if text:
            groups.append({"params": list(text.values()), "lr": float(train_cfg.get("train.text_lr", 5e-5)),
                           "name": "text_encoder"})
        return {"main": groups} if groups else {}

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        """One training step: forward under `ctx.autocast()`, task loss + sum of aux losses, one update.

        Override for two-phase updates, EMA, queues or two views (docs/adding-a-model.md); always go
        through `ctx.backward` and `ctx.step`, and return the losses to log (floats).
        """
        with ctx.autocast():
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
        """After the epoch's training steps, before evaluation."""

    def on_validation_end(self, ctx: Any, records: list[dict[str, Any]]) -> None:
        """After every split of the epoch was evaluated: `records` are that epoch's store records."""

    def epoch_is_complete(self, ctx: Any) -> bool:
        """Whether the model trained so far is the whole method, so that a selection rule may pick this
        epoch. A staged model answers False before its last stage (S2LIF's first stage predicts from
        one modality's classifier alone): its records are marked `provisional` and every rule skips
        them (docs/architecture.md §8)."""
        return True

    def should_stop(self, ctx: Any, patience_exhausted: bool) -> bool:
        """Whether training ends after this epoch. The default follows early stopping (which never ends a
        stage before the last: see `epoch_is_complete`); a model may also end its own schedule (True)."""
        return patience_exhausted


def config_from_flat(config_cls: type, flat: dict[str, Any]) -> Any:
    """Build a model's config dataclass from the `model.*` keys of a resolved flat config."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.") and k[len("model."):] in names}
    return config_cls(**kwargs)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over time of (B, T, D) using a (B, T) bool mask of real positions."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
