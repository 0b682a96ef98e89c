"""Hand-built RunViews for the report's golden files, tests and examples (no store, no training).

`fabricate_views(template, models)` builds, for each model spec, the runs a template reads (one per
dataset or DG setting, seed and missing rate) with deterministic, plausible records: the numbers
are arbitrary but stable across machines and Python versions (they come from SHA-256, not from
Python's salted hash or a platform RNG).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from msabench.core.types import IEMOCAP_EMOTIONS
from msabench.report.aggregate import RunView

REGRESSION = ("mae", "corr", "acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0")
SIMS = ("mae", "corr", "acc2", "acc3", "acc5", "f1")
MULTILABEL = tuple(f"{k}_{e}" for e in IEMOCAP_EMOTIONS for k in ("acc", "f1")) + ("mean_f1",)
CLASSIFICATION = ("acc", "f1_weighted", "f1_macro")


def unit(*key: Any) -> float:
    """A deterministic number in [0, 1) from `key`."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def _metric(name: str, base: float, noise: float, rate: float) -> float:
    quality = max(0.0, min(1.0, base - 0.35 * rate + noise))
    if name == "mae":
        value = 1.45 - 0.8 * quality
    elif name == "corr":
        value = 0.1 + 0.75 * quality
    elif name.startswith("acc7"):
        value = 0.15 + 0.35 * quality
    elif name.startswith("acc5"):
        value = 0.2 + 0.4 * quality
    elif name.startswith("acc3"):
        value = 0.3 + 0.4 * quality
    else:
        value = 0.45 + 0.45 * quality
    return round(value, 6)


def _metrics(task: str, family: str, base: float, key: tuple, rate: float) -> dict[str, float]:
    if task == "classification":
        names = CLASSIFICATION
    elif task == "multilabel":
        names = MULTILABEL
    else:
        names = SIMS if family == "sims" else REGRESSION
    return {n: _metric(n, base, 0.08 * (unit(*key, n) - 0.5), rate) for n in names}


def _records(run_id: str, task: str, family_of, domains: Sequence[str], sources: Sequence[str], base: float,
             key: tuple, rates: Sequence[float], train_rate: float, epochs: int = 3) -> list[dict[str, Any]]:
    records = []
    for epoch in range(epochs):
        growth = 0.03 * epoch
        for domain in domains:
            splits = ("valid", "test")
            for split in splits:
                eval_rates = [train_rate] + [r for r in rates if r != train_rate and split == "test"]
                for rate in eval_rates:
                    metrics = _metrics(task, family_of(domain), base + growth - (0.05 if domain not in sources else 0),
                                       (*key, epoch, domain, split), rate)
                    records.append({"schema": 1, "run_id": run_id, "epoch": epoch, "split": split, "domain": domain,
                                    "rate": rate, "metrics": metrics, "loss": {"task": round(1 - base, 6)},
                                    "seconds": 0.0})
    return records


def _family(domain: str) -> str:
    from msabench.data.names import base_name

    return base_name(domain)


def _view(protocol: str, setting: str, datasets: Sequence[str], sources: Sequence[str], targets: Sequence[str],
          model: str, config: dict[str, Any], seed: int, rate: float, modalities: Sequence[str], task: str,
          rules: Sequence[str], base: float, eval_rates: Sequence[float] = (), n_params: float | None = None,
          version: str = "1.0", train_domains: Sequence[str] = (), model_keys: dict[str, Any] | None = None) -> RunView:
    key = (protocol, setting, tuple(datasets), model, seed, rate, tuple(train_domains))
    run_id = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
    spec = {"protocol": protocol, "protocol_version": version, "setting": setting, "datasets": list(datasets),
            "data_hashes": ["0" * 16] * len(datasets), "model": model, "config": dict(config), "impl_version": 1,
            "seed": seed, "rate": rate, "modalities": list(modalities), "label_rule": "round" if targets else "sign",
            "task": task, "source_domains": list(sources), "target_domains": list(targets),
            "selection_rules": list(rules), "eval_rates": list(eval_rates), "train_domains": list(train_domains),
            "valid_domains": [], "msabench_version": "0.1", "schema": 1}
    if model_keys:  # as the planner writes it: the spec's inline keys name the run
        spec["model_keys"] = dict(model_keys)
    records = _records(run_id, task, _family, datasets, train_domains or sources, base, key, eval_rates, rate)
    env = {"inference_params": n_params} if n_params is not None else {}
    return RunView(run_id=run_id, spec=spec, records=records, git="0" * 40, env=env)


def fabricate_views(template, models: Sequence[str], *, seeds: Sequence[int] = (1, 2, 3), real: bool = False,
                    rates: Sequence[float] | None = None) -> list[RunView]:
    """Runs of `models` (specs; inline keys become config) for every dataset/setting `template` reads;
    missing-rate templates on `rates` (default: the protocol's grid of each dataset)."""
    from msabench.core.config import parse_model_spec
    from msabench.protocols.missing_random import TEST_GRID, VALID_RATE
    from msabench.protocols.missing_rate import default_grid

    views = []
    for model in models:
        spec = parse_model_spec(model)
        row = next((r for r in template.rows if r.model == model), None)
        base = 0.35 + 0.5 * unit("base", template.name, model)
        if template.is_dg:
            modalities = (row.modalities if row and row.modalities else ("t", "v"))
            for s in template.settings:
                prefix = "" if real else "synth-dg/"
                sources = [prefix + d for d in s.sources]
                targets = [prefix + d for d in s.targets]
                for seed in seeds:
                    views.append(_view(template.protocol, s.name, sources + targets, sources, targets, spec.label,
                                       spec.overrides, seed, 0.0, modalities, "classification",
                                       ("train-domain", "oracle", "lodo", "last"), base,
                                       model_keys=spec.overrides))
            continue
        modalities = row.modalities if row and row.modalities else ("t", "a", "v")
        for dataset in template.datasets:
            name = dataset if real else f"synth-{dataset}"
            task = "multilabel" if dataset == "iemocap" else ("classification" if dataset == "meld" else "regression")
            grid, eval_rates = [0.0], ()
            if template.protocol == "missing-rate":
                grid = [r for r in (default_grid(dataset) if rates is None else rates) if dataset != "sims" or r <= 0.5]
            elif template.protocol == "missing-random":
                grid, eval_rates = [VALID_RATE], tuple(TEST_GRID if rates is None else rates)
            for seed in seeds:
                for rate in grid:
                    views.append(_view(template.protocol, "", [name], [name], [], spec.label, spec.overrides, seed,
                                       rate, modalities, task, ("val", "last"), base, eval_rates=eval_rates,
                                       n_params=110.5e6 + 1e6 * round(6 * unit("params", model), 1),
                                       model_keys=spec.overrides))
    return views


def write_store(views: Sequence[RunView], out: str) -> list[str]:
    """Write fabricated runs into a results store at `out` (spec, env, records, done) through the
    store's own API, as finished runs; returns their run ids."""
    from msabench.core.types import RunSpec
    from msabench.store.runs import Store

    store = Store(out)
    ids = []
    for view in views:
        spec = RunSpec.from_dict(view.spec)
        rd = store.run(spec.run_id)
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.write_spec(spec)
        rd.write_env({"git_sha": view.git, "git_dirty": False, "threads": 1, **view.env})
        rd.append_records([{**r, "run_id": spec.run_id} for r in view.records])
        rd.mark_done()
        ids.append(spec.run_id)
    return ids
