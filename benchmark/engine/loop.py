"""The one generic training loop (design 6).

Per epoch: `on_epoch_start`, the model's `training_step` over shuffled training batches,
`on_epoch_end`, then every (split, domain) evaluated with predictions kept (the training split only
with `train.eval_train`). Early stopping and
checkpoint choice both use `msabench.evaluation.selection`, so they agree with the report.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from msabench.api.context import TrainContext, build_optimizers, build_schedulers, task_loss_fn
from msabench.api.types import Batch
from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.engine.batching import TensorSplit
from msabench.evaluation.selection import SELECTION_RULES, select_epoch
from msabench.metrics import UndefinedMetricWarning, degenerate_predictions, task_metrics


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class EvalSet:
    split: str
    domain: str
    data: TensorSplit
    rate: float = 0.0


@dataclass
class LoopResult:
    records: list[dict[str, Any]]
    predictions: dict[str, np.ndarray]  # store keys -> arrays
    checkpoints: dict[str, dict[str, torch.Tensor]]  # rule -> state dict at its epoch
    chosen_epochs: dict[str, int]
    stopped_early: bool = False
    epochs_run: int = 0


def move_batch(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor):
            setattr(batch, name, value.to(device, non_blocking=True))
    if batch.missing is not None:
        batch.missing.drop = {k: v.to(device) for k, v in batch.missing.drop.items()}
        batch.missing.complete = {k: v.to(device) for k, v in batch.missing.complete.items()}
    return batch


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast_for(device: torch.device, precision: str):
    dtype = autocast_dtype(device, precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type="cuda", dtype=dtype)


@torch.no_grad()
def infer(model: torch.nn.Module, data: TensorSplit, batch_size: int, device: torch.device,
          precision: str = "fp32", with_features: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The one inference loop: predictions (float32) and, on request, the named features.

    Features come back as (N, D): (B, T, D) features are averaged over time, (B,) become (N, 1).
    """
    model.eval()
    outputs, parts = [], {}
    with autocast_for(device, precision):
        for batch in data.batches(batch_size):
            out = model(move_batch(batch, device))
            outputs.append(out.pred.float().cpu())
            if with_features:
                for name, value in (out.features or {}).items():
                    v = value.detach().float()
                    v = v.mean(dim=1) if v.dim() == 3 else (v.unsqueeze(1) if v.dim() == 1 else v)
                    parts.setdefault(name, []).append(v.cpu().numpy())
    pred = torch.cat(outputs) if outputs else torch.empty(0)
    return pred.numpy().astype(np.float32), {k: np.concatenate(v) for k, v in parts.items()}


def predict(model: torch.nn.Module, data: TensorSplit, batch_size: int, device: torch.device,
            precision: str) -> np.ndarray:
    return infer(model, data, batch_size, device, precision)[0]


def run_loop(
    model: torch.nn.Module,
    spec: RunSpec,
    train: TensorSplit,
    eval_sets: Sequence[EvalSet],
    *,
    family: str,
    device: torch.device,
    precision: str = "fp32",
    shuffle_seed: int = 0,
    on_epoch: Callable[[int, list[dict[str, Any]]], None] | None = None,
    early_stopping: bool = True,
) -> LoopResult:
    cfg = spec.config
    task = spec.task
    loss_fn = task_loss_fn(task)
    batch_size, eval_batch = int(cfg["train.batch_size"]), int(cfg["train.eval_batch_size"])
    grad_accum, epochs = int(cfg["train.grad_accum"]), int(cfg["train.epochs"])
    steps_per_epoch = max(1, math.ceil(math.ceil(len(train) / batch_size) / grad_accum))
    optimizers = build_optimizers(model, cfg)
    scaler = torch.amp.GradScaler("cuda") if (precision == "fp16" and device.type == "cuda") else None
    ctx = TrainContext(model=model, optimizers=optimizers, loss_fn=loss_fn, grad_accum=grad_accum,
                       clip=float(cfg["train.clip"]), scaler=scaler,
                       schedulers=build_schedulers(model, cfg, optimizers, steps_per_epoch * epochs),
                       train_cfg=cfg, n_train=len(train), steps_per_epoch=steps_per_epoch, epochs=epochs,
                       device_type=device.type, autocast_dtype=autocast_dtype(device, precision))
    generator = torch.Generator().manual_seed(shuffle_seed)
    # rules answered from other runs' records (lodo) get no checkpoint and never drive early stopping
    rules = tuple(r for r in spec.selection_rules if not SELECTION_RULES.get(r).needs_helper_runs)
    primary = spec.selection_rules[0]
    sources = spec.train_domains or spec.source_domains or spec.datasets[:1]
    valid_domains = spec.valid_domains or sources
    min_epochs = int(cfg.get("train.min_epochs", 0))
    run_id = spec.run_id  # a hash of the spec, computed on each access
    result = LoopResult(records=[], predictions={}, checkpoints={}, chosen_epochs={})
    for es in eval_sets:
        result.predictions[f"ids/{_key(es)}"] = es.data.ids.astype(str)
        result.predictions[f"y/{_key(es)}"] = np.asarray(es.data.y)  # item-level tests (report --test)
    # The epoch's training losses go into the first training split's record, or into the first record
    # when the training split is not evaluated (train.eval_train=false).
    evaluates_train = any(es.split == "train" for es in eval_sets)
    losses_record_of = eval_sets[0] if eval_sets and (eval_sets[0].split == "train" or not evaluates_train) else None

    for epoch in range(epochs):
        started = time.perf_counter()
        ctx.epoch = epoch
        if train.redraw is not None:
            train.redraw(epoch)
        model.train()
        model.on_epoch_start(ctx)
        losses: dict[str, list[float]] = {}
        for batch in train.batches(batch_size, generator):
            logged = model.training_step(move_batch(batch, device), ctx)
            for k, v in logged.items():
                losses.setdefault(k, []).append(v)
        ctx.flush()
        model.on_epoch_end(ctx)
        train_loss = {k: float(np.mean(v)) for k, v in losses.items()}
        if any(not np.isfinite(v) for v in train_loss.values()):
            raise NonFiniteLoss(f"training loss is not finite at epoch {epoch}: {train_loss}; "
                                "a lower train.lr or gradient clipping (--set train.clip=1.0) makes a new run "
                                "(a new config is a new run id; this one stays failed), while --retry-failed "
                                "reruns this same config")
        train_seconds = time.perf_counter() - started

        epoch_records = []
        provisional = not model.epoch_is_complete(ctx)
        for es in eval_sets:
            t0 = time.perf_counter()
            pred = predict(model, es.data, eval_batch, device, precision)
            true = es.data.y
            with warnings.catch_warnings():
                # An undefined metric (constant predictions) is stored as null and shown as "-".
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                metrics = task_metrics(task, pred, true, family=family)
            eval_loss = float(loss_fn(torch.from_numpy(pred), es.data.y_tensor)) if len(pred) else float("nan")
            loss = {"task": eval_loss}
            if es is losses_record_of:
                loss.update({f"train_{k}": v for k, v in train_loss.items()})
            record = {
                "schema": 1, "run_id": run_id, "epoch": epoch, "split": es.split, "domain": es.domain,
                "rate": es.rate, "metrics": {k: _clean(v) for k, v in metrics.items()}, "loss": loss,
                "seconds": round(time.perf_counter() - t0 + (train_seconds if es is eval_sets[0] else 0.0), 4),
            }
            degenerate = ("" if getattr(model, "CONSTANT_BY_DESIGN", False) or not len(pred)
                          else degenerate_predictions(task, pred, true))
            if degenerate:  # only then, so the records of ordinary runs keep their form
                record["degenerate"] = degenerate
            if provisional:  # likewise; no selection rule picks this epoch
                record["provisional"] = True
            epoch_records.append(record)
            result.predictions[f"pred/{epoch}/{_key(es)}"] = pred
        result.records.extend(epoch_records)
        result.epochs_run = epoch + 1
        ctx.validation_end(functools.partial(_validation_value, epoch_records, domains=valid_domains, rate=spec.rate))
        model.on_validation_end(ctx, epoch_records)

        chosen_now = [rule for rule in rules
                      if select_epoch(result.records, rule, task=task, sources=valid_domains,
                                      targets=spec.target_domains, train_rate=spec.rate) == epoch]
        if chosen_now:  # one copy of the weights for every rule that picks this epoch (val and last, often)
            state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
            for rule in chosen_now:
                result.chosen_epochs[rule] = epoch
                result.checkpoints[rule] = state
        if on_epoch is not None:
            on_epoch(epoch, epoch_records)
        best = select_epoch(result.records, primary, task=task, sources=valid_domains,
                            targets=spec.target_domains, train_rate=spec.rate) \
            if primary in rules and early_stopping else None
        exhausted = best is not None and epoch - best >= int(cfg["train.patience"]) and epoch + 1 >= min_epochs
        if model.should_stop(ctx, exhausted):
            result.stopped_early = True
            break
    if result.records and all(r.get("provisional") for r in result.records):
        raise UserError(f"{spec.model}: the run ended after {result.epochs_run} epochs, before the model's last "
                        "training stage began, so no epoch holds the whole method to select; raise train.epochs")
    return result


def _validation_value(records: list[dict[str, Any]], metric: str, *, domains: Sequence[str],
                      rate: float) -> float | None:
    """Mean over the validation domains of the valid task loss (`metric="loss"`) or a valid metric."""
    values = []
    for r in records:
        if r["split"] != "valid" or r["domain"] not in domains or r["rate"] != rate:
            continue
        v = r["loss"].get("task") if metric == "loss" else r["metrics"].get(metric)
        if v is not None:
            values.append(float(v))
    return float(np.mean(values)) if values else None


def _key(es: EvalSet) -> str:
    return f"{es.split}/{es.domain}" + (f"/rate{es.rate:g}" if es.rate else "")


def _clean(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
