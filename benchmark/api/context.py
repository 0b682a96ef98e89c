"""`TrainContext`: what a model's `training_step` gets (design 6).

`ctx.backward(loss)` and `ctx.step(name)` own gradient accumulation, clipping and the AMP grad
scaler, so a model that overrides `training_step` (two-phase updates, EMA, two views) never
re-implements them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

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


def build_optimizers(model: nn.Module, train_cfg: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per named group set of `model.param_groups`; lr/weight decay from train.*."""
    name = str(train_cfg.get("train.optimizer", "adam")).lower()
    if name not in OPTIMIZERS:
        raise UserError(f"unknown train.optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
    optimizers = {}
    for group_name, groups in model.param_groups(train_cfg).items():
        groups = [g for g in groups if g["params"]]
        if not groups:
            continue
        optimizers[group_name] = OPTIMIZERS[name](
            groups, lr=float(train_cfg["train.lr"]), weight_decay=float(train_cfg.get("train.weight_decay", 0.0))
        )
    return optimizers


@dataclass
class TrainContext:
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad_accum: int = 1
    clip: float = 0.0  # max grad norm; 0 = off
    scaler: Any = None  # torch.amp.GradScaler for fp16, else None
    epoch: int = 0
    step_index: int = 0  # optimiser steps taken
    stage: str = ""  # for staged training (S2LIF)
    state: dict[str, Any] = field(default_factory=dict)  # free space for models' own bookkeeping
    _micro: dict[str, int] = field(default_factory=dict)

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.grad_accum
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, name: str | None = None) -> bool:
        """Count a micro-step for `name` (all optimisers when None); step them when accumulation is full.

        Returns True when an optimiser step happened.
        """
        names = list(self.optimizers) if name is None else [name]
        stepped = False
        for n in names:
            self._micro[n] = self._micro.get(n, 0) + 1
            if self._micro[n] < self.grad_accum:
                continue
            self._micro[n] = 0
            self._apply(self.optimizers[n])
            stepped = True
        if stepped:
            self.step_index += 1
        return stepped

    def flush(self) -> None:
        """Step optimisers holding a partial accumulation (end of epoch)."""
        for n, count in list(self._micro.items()):
            if count:
                self._micro[n] = 0
                self._apply(self.optimizers[n])

    def _apply(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.clip and self.clip > 0:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            nn.utils.clip_grad_norm_(params, self.clip)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
