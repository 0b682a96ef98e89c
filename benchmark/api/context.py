"""`TrainContext`: what a model's `training_step` gets (docs/architecture.md §6, docs/adding-a-model.md).

`ctx.backward(loss)` and `ctx.step(name)` own gradient accumulation, clipping, the AMP grad scaler
and per-step schedulers, so a model that overrides `training_step` (two-phase updates, EMA, two
views) never re-implements them. One `ctx.step(...)` call is one optimisation step: the scaler is
unscaled for every optimiser stepped, then updated once, so with fp16 each parameter moves by its
own gradient exactly once whatever the number of optimisers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from msabench.core.config import SCHEDULER_KINDS as SCHEDULERS
from msabench.core.errors import UserError


def task_loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L1 for regression (MMSA, EMT-DLFR), cross-entropy for classes, BCE for multilabel."""
    if task == "regression":
        return lambda pred, y: nn.functional.l1_loss(pred.reshape(-1).float(), y.float())
    if task == "classification":
        return lambda logits, y: nn.functional.cross_entropy(logits.float(), y.long())
    if task == "multilabel":
        return lambda logits, y: nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float())
    raise ValueError(f"unknown task {task!r}")


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class SchedulerSpec:
    """A learning-rate schedule of one named optimiser.

    `plateau`: ReduceLROnPlateau on a validation value, stepped after each epoch's evaluation
    (`metric` = "loss" for the valid task loss, or a metric key such as "mae" or "acc"; averaged over
    the run's validation domains). `linear`: linear warm-up over `warmup` (a share of all steps)
    then linear decay to 0, stepped after every optimisation step (BERT-style fine-tuning).
    """

    kind: str
    metric: str = "loss"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    warmup: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS[1:]:
            raise UserError(f"scheduler {self.kind!r}: use one of {', '.join(SCHEDULERS)}")
        if self.mode not in ("min", "max"):
            raise UserError(f"scheduler mode {self.mode!r}: use min or max")


@dataclass
class OptimizerSpec:
    """One named optimiser: its parameter groups (each may carry its own lr / weight_decay) and options.

    `optimizer`, `lr` and `weight_decay` default to `train.optimizer`, `train.lr` and
    `train.weight_decay`; `scheduler` defaults to the one `train.scheduler` names.
    """

    groups: list[dict[str, Any]]
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    scheduler: SchedulerSpec | None = None


def default_scheduler(train_cfg: Mapping[str, Any]) -> SchedulerSpec | None:
    kind = str(train_cfg.get("train.scheduler", "none"))
    if kind not in SCHEDULERS:
        raise UserError(f"train.scheduler={kind!r}: use one of {', '.join(SCHEDULERS)}")
    if kind == "none":
        return None
    return SchedulerSpec(kind, patience=int(train_cfg.get("train.scheduler_patience", 10)),
                         factor=float(train_cfg.get("train.scheduler_factor", 0.1)),
                         warmup=float(train_cfg.get("train.warmup_ratio", 0.1)))


def optimizer_specs(model: nn.Module, train_cfg: Mapping[str, Any]) -> dict[str, OptimizerSpec]:
    """`model.param_groups(train_cfg)` normalised: plain group lists become `OptimizerSpec`s."""
    specs = {}
    for name, value in model.param_groups(dict(train_cfg)).items():
        spec = value if isinstance(value, OptimizerSpec) else OptimizerSpec(groups=list(value))
        spec.groups = [g for g in spec.groups if list(g["params"])]
        if spec.groups:
            specs[name] = spec
    return specs


def build_optimizers(model: nn.Module, train_cfg: Mapping[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per named entry of `model.param_groups`, with its own class, lr and weight decay."""
    optimizers = {}
    for name, spec in optimizer_specs(model, train_cfg).items():
        kind = str(spec.optimizer or train_cfg.get("train.optimizer", "adam")).lower()
        if kind not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {kind!r} for {name!r}; use one of {', '.join(OPTIMIZERS)}")
        lr = float(spec.lr if spec.lr is not None else train_cfg["train.lr"])
        wd = float(spec.weight_decay if spec.weight_decay is not None else train_cfg.get("train.weight_decay", 0.0))
        optimizers[name] = OPTIMIZERS[kind]([dict(g) for g in spec.groups], lr=lr, weight_decay=wd)
    return optimizers


def build_schedulers(model: nn.Module, train_cfg: Mapping[str, Any], optimizers: dict[str, torch.optim.Optimizer],
                     total_steps: int) -> dict[str, tuple[SchedulerSpec, Any]]:
    fallback = default_scheduler(train_cfg)
    out = {}
    for name, spec in optimizer_specs(model, train_cfg).items():
        chosen = spec.scheduler or fallback
        if chosen is None or name not in optimizers:
            continue
        opt = optimizers[name]
        if chosen.kind == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=chosen.mode, factor=chosen.factor,
                                                               patience=chosen.patience)
        else:
            warm = max(1, int(round(chosen.warmup * total_steps)))
            total = max(total_steps, warm + 1)

            def linear(step: int, warm: int = warm, total: int = total) -> float:
                if step < warm:
                    return (step + 1) / warm
                return max(0.0, (total - step) / (total - warm))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
        out[name] = (chosen, sched)
    return out


@dataclass
class TrainContext:
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad_accum: int = 1
    clip: float = 0.0  # max grad norm; 0 = off
    scaler: Any = None  # torch.amp.GradScaler for fp16, else None
    schedulers: dict[str, tuple[SchedulerSpec, Any]] = field(default_factory=dict)
    train_cfg: Mapping[str, Any] = field(default_factory=dict)  # the run's train.* keys, read-only
    n_train: int = 0  # training-set size
    steps_per_epoch: int = 0  # optimisation steps per epoch (after gradient accumulation)
    epochs: int = 0
    device_type: str = "cpu"
    autocast_dtype: Any = None  # torch.bfloat16 / torch.float16 under mixed precision, else None
    epoch: int = 0
    step_index: int = 0  # optimisation steps taken (one per `step()` call that stepped)
    stage: str = ""  # free label of the current stage, for the model's own use (S2LIF's learning orders)
    state: dict[str, Any] = field(default_factory=dict)  # the model's own bookkeeping across steps
    _micro: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train_cfg = MappingProxyType({k: v for k, v in dict(self.train_cfg).items() if k.startswith("train.")})

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision around a forward pass (never around backward or the optimiser step)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.grad_accum
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def clip_accumulated_values(self, params: Iterable[torch.Tensor], bound: float) -> None:
        """MMSA's `clip_grad_value_(params, bound)` after each backward (MulT, MISA, TFR-Net trainers).

        MMSA clips the running *sum* of micro-batch gradients; `backward` here accumulates the sum
        divided by `grad_accum` (times the fp16 loss scale), so the bound is scaled alike and the
        clipping is the same.
        """
        scaled = float(bound) / max(int(self.grad_accum), 1)
        if self.scaler is not None:
            scaled *= float(self.scaler.get_scale())
        nn.utils.clip_grad_value_([p for p in params if p.grad is not None], scaled)

    def zero_grad(self, name: str | None = None) -> None:
        for n in self._names(name):
            self.optimizers[n].zero_grad(set_to_none=True)

    def step(self, name: str | None = None) -> bool:
        """Count a micro-step for `name` (all optimisers when None); step those whose accumulation is full.

        Returns True when an optimisation step happened.
        """
        ready = []
        for n in self._names(name):
            self._micro[n] = self._micro.get(n, 0) + 1
            if self._micro[n] >= self.grad_accum:
                self._micro[n] = 0
                ready.append(n)
        self._apply(ready)
        if ready:
            self.step_index += 1
        return bool(ready)

    def flush(self) -> None:
        """Step optimisers holding a partial accumulation (end of epoch), as one optimisation step."""
        ready = [n for n, count in self._micro.items() if count]
        for n in ready:
            self._micro[n] = 0
        self._apply(ready)

    def lr(self, name: str = "main") -> float:
        return float(self.optimizers[name].param_groups[0]["lr"])

    def param_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _names(self, name: str | None) -> list[str]:
        if name is None:
            return list(self.optimizers)
        if name not in self.optimizers:
            raise KeyError(f"no optimiser {name!r}; the model's param_groups define {sorted(self.optimizers)}")
        return [name]

    def _apply(self, names: list[str]) -> None:
        if not names:
            return
        opts = [self.optimizers[n] for n in names]
        if self.scaler is not None:
            for opt in opts:  # unscale every optimiser at this step's scale, before any update
                self.scaler.unscale_(opt)
        if self.clip and self.clip > 0:
            for opt in opts:
                params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                nn.utils.clip_grad_norm_(params, self.clip)
        for opt in opts:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()  # once per optimisation step, however many optimisers stepped
        for n, opt in zip(names, opts):
            opt.zero_grad(set_to_none=True)
            spec_sched = self.schedulers.get(n)
            if spec_sched is not None and spec_sched[0].kind == "linear":
                spec_sched[1].step()

    def validation_end(self, value_of: Callable[[str], float | None]) -> None:
        """Step plateau schedulers on the epoch's validation value (called by the loop)."""
        for spec, sched in self.schedulers.values():
            if spec.kind != "plateau":
                continue
            value = value_of(spec.metric)
            if value is not None and math.isfinite(value):
                sched.step(value)

