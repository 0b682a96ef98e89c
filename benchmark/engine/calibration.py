"""A quick time calibration for `run --dry-run` when the store holds no timings (docs/architecture.md §9).

One epoch of the one training loop over the first few batches of the training set and of each
evaluated split, timed per sample from the epoch's records (the first record's `seconds` holds the
training time too), then scaled to the splits' full sizes and `train.epochs` epochs, plus the time
to build the model and its tensors. Nothing is written to the store.
"""

from __future__ import annotations

import dataclasses
import time

from msabench.core.types import RunSpec
from msabench.engine.options import RunOptions

BATCHES = 3  # training batches timed per configuration


def calibrate(spec: RunSpec, options: RunOptions) -> float:
    """Estimated serial seconds of `spec` if it trains every one of its `train.epochs` epochs."""
    import torch

    from msabench.engine.loop import EvalSet, run_loop
    from msabench.engine.runner import build_model, prepare_tensors, resolve_device

    device = resolve_device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    started = time.perf_counter()
    model, datasets, tokens = build_model(spec, options.data_root)
    model.to(device)
    train, eval_sets = prepare_tensors(spec, datasets, tokens, str(device))
    setup = time.perf_counter() - started
    cfg = spec.config
    train_part = train.head(min(len(train), BATCHES * int(cfg["train.batch_size"])))
    eval_parts = [EvalSet(es.split, es.domain, es.data.head(min(len(es.data), int(cfg["train.eval_batch_size"]))),
                          es.rate) for es in eval_sets]
    one_epoch = dataclasses.replace(spec, config={**cfg, "train.epochs": 1}, input_spec=spec.input_spec)
    result = run_loop(model, one_epoch, train_part, eval_parts, family=datasets[0].family, device=device,
                      precision=options.precision, early_stopping=False)
    seconds = [float(r["seconds"]) for r in result.records]
    sizes = [len(es.data) for es in eval_parts]
    eval_per_sample = sum(seconds[1:]) / max(1, sum(sizes[1:])) if len(seconds) > 1 else 0.0
    train_per_sample = max(0.0, seconds[0] - eval_per_sample * sizes[0]) / max(1, len(train_part))
    per_epoch = train_per_sample * len(train) + eval_per_sample * sum(len(es.data) for es in eval_sets)
    return setup + per_epoch * int(cfg["train.epochs"])
