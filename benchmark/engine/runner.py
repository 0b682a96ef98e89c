"""Execute one RunSpec into the store: data -> tensors -> model -> the loop -> run directory."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from typing import Any

import torch

from msabench.api.text_encoder import ENCODER_PASSES
from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.data.datasets import register_cards
from msabench.data.masks import TEXT_MASKED_AFTER_ENCODING, text_masked_after_encoding
from msabench.engine.batching import TensorSplit, build_tensor_split, concat_splits, random_rate_split
from msabench.engine.loop import EvalSet, LoopResult, run_loop
from msabench.engine.options import RunOptions
from msabench.engine.seeding import seed_everything, seed_hash
from msabench.plan.planner import build_input_spec, load_for_config, text_encoder_of, text_is_tokens
from msabench.protocols import protocol_of
from msabench.store.text_cache import CACHE_STATS

__all__ = ["RunOptions", "build_model", "check_precision", "execute", "failure_reason", "resolve_device"]

SPLITS_OF_SOURCES = ("train", "valid", "test")
SPLITS_OF_TARGETS = ("valid", "test")  # target train data is never used, so never evaluated


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu or auto")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"--precision {precision!r}: use fp32, bf16 or fp16")
    if precision != "fp32" and device.type != "cuda":
        raise UserError(f"--precision {precision} needs a CUDA GPU (autocast); use --precision fp32 on the CPU")


def check_data_hashes(spec: RunSpec, datasets) -> None:
    """Refuse to train on data other than what the plan measured (and the run id records).

    The hashes are those of the data in hand: a worker process or a stored spec (`check --run`,
    `--from-run`) loads and hashes the files afresh; in the planning process the data loaded and
    hashed at plan time is the data trained on."""
    for name, planned, data in zip(spec.datasets, spec.data_hashes, datasets):
        if data.data_hash != planned:
            raise UserError(
                f"dataset {name} changed since the run was planned (data hash {data.data_hash}, the plan has "
                f"{planned}): run {spec.run_id} would train on other data than its id records; plan again "
                f"(rerun the same `msabench run` command) or restore the files the plan read")


def build_model(spec: RunSpec, data_root: str | None):
    """The model of a run, its datasets, and whether text enters as tokens (also for feature analysis)."""
    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS, config_from_flat

    cfg = spec.config
    datasets = [load_for_config(name, cfg, data_root) for name in spec.datasets]
    check_data_hashes(spec, datasets)
    tokens = text_is_tokens(cfg) if "t" in spec.modalities else False
    # The plan's InputSpec when the spec comes from planning; rebuilt for a spec read from a store.
    input_spec = spec.input_spec or build_input_spec(datasets, spec.modalities, spec.task, spec.label_rule, tokens,
                                                     text_encoder_of(cfg, spec.modalities))
    cls = MODELS.get(spec.model_name)
    try:
        model = cls(config_from_flat(cls.config_cls, cfg), input_spec)
    except ValueError as exc:  # a plugin's check of its model.* values (docs/adding-a-model.md): the user's to fix
        raise UserError(f"model {spec.label}: {exc}") from exc
    return model, datasets, tokens


def _random_train_masks(spec: RunSpec) -> bool:
    """Whether the run's protocol redraws random-rate training masks every epoch (missing-random)."""
    protocol = protocol_of(spec.protocol)
    return protocol is not None and protocol.train_masks == "random-per-epoch"


def _early_stopping(spec: RunSpec) -> bool:
    protocol = protocol_of(spec.protocol)
    return protocol is None or protocol.early_stopping


def prepare_tensors(spec: RunSpec, datasets, tokens: bool, device: str = "cpu") -> tuple[TensorSplit, list[EvalSet]]:
    """Every split's tensors; a frozen text encoder's outputs come from the text cache (run on `device`)."""
    from msabench.engine.text_encoding import encode_frozen

    index = {d.name: i for i, d in enumerate(datasets)}
    by_name = {d.name: d for d in datasets}
    encoder = text_encoder_of(spec.config, spec.modalities)
    scheme = spec.config.get("data.mask_scheme", "msabench")  # runs stored before the key have none

    def tensors(name: str, split: str, rate: float) -> TensorSplit:
        ts = build_tensor_split(by_name[name], split, index[name], modalities=spec.modalities, task=spec.task,
                                label_rule=spec.label_rule, text_tokens=tokens, rate=rate, encoder=encoder,
                                mask_scheme=scheme)
        if encoder is not None and encoder.frozen:
            encode_frozen(ts, encoder, by_name[name].data_hash, device)
        return ts

    def train_tensors(name: str) -> TensorSplit:
        if _random_train_masks(spec):
            if encoder is not None:
                raise UserError(
                    f"{spec.protocol} redraws the training masks every epoch, so a Hugging Face text encoder would "
                    "re-encode the training text each epoch, which this version does not do; run it with "
                    "precomputed text (--set text.encoder=features) or token ids (--set text.encoder=tokens)")
            return random_rate_split(by_name[name], "train", index[name], modalities=spec.modalities, task=spec.task,
                                     label_rule=spec.label_rule, text_tokens=tokens, seed=spec.seed)
        return tensors(name, "train", spec.rate)

    sources = spec.source_domains or spec.datasets[:1]
    train_domains = spec.train_domains or sources
    train_parts = {name: train_tensors(name) for name in train_domains}
    eval_sets: list[EvalSet] = []
    eval_train = bool(spec.config.get("train.eval_train", True))  # runs stored before the key evaluated it
    for name in spec.datasets:
        splits = SPLITS_OF_SOURCES if name in sources else SPLITS_OF_TARGETS
        for split in splits:
            if split == "train" and not eval_train:
                continue
            data = train_parts[name] if split == "train" and name in train_parts else tensors(name, split, spec.rate)
            eval_sets.append(EvalSet(split, name, data, spec.rate))
    for rate in spec.eval_rates:
        if rate == spec.rate:
            continue
        for name in spec.datasets:
            eval_sets.append(EvalSet("test", name, tensors(name, "test", rate), rate))
    train = concat_splits([train_parts[n] for n in train_domains])
    return train, eval_sets


def execute(spec: RunSpec, run_dir, options: RunOptions) -> LoopResult:
    """Train and evaluate `spec`, writing everything into `run_dir` (already claimed)."""
    from msabench.store.envinfo import collect_env

    run_dir.write_spec(spec)  # first: a run that fails early still says what it was (status, report)
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    if options.threads:
        torch.set_num_threads(options.threads)
    flags = seed_everything(seed_hash("init", spec.seed))
    register_cards(options.dataset_cards)  # a spawned worker or a Ray task starts without them
    model, datasets, tokens = build_model(spec, options.data_root)
    model.to(device)
    cache_before, passes_before = Counter(CACHE_STATS), Counter(ENCODER_PASSES)
    train, eval_sets = prepare_tensors(spec, datasets, tokens, str(device))
    mask_hashes = {f"{es.split}/{es.domain}/{m}@{es.rate:g}": h for es in eval_sets
                   for m, h in es.data.mask_hashes.items()}
    run_dir.write_env(collect_env(str(device), torch.get_num_threads(), {
        "data_hashes": dict(zip(spec.datasets, spec.data_hashes)), "mask_hashes": mask_hashes,
        "neg_inf_counts": {d.name: d.neg_inf_count for d in datasets}, "determinism": flags,
        "precision": options.precision,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),  # trainable
        "inference_params": int(model.inference_parameter_count()),  # emt-table9's #Params
        "text": text_record(spec, CACHE_STATS - cache_before, ENCODER_PASSES - passes_before),
    }))
    if spec.protocol == "feature-analysis":
        _check_exposes_features(spec, model, eval_sets, device)
    started = time.perf_counter()
    show = None
    if options.verbosity > 0:
        from msabench.execution.progress import EpochLines

        show = EpochLines(spec, options.verbosity)

    def on_epoch(epoch: int, records: list[dict[str, Any]]) -> None:
        run_dir.append_records(records)
        if show is not None:
            show(epoch, records)

    result = run_loop(model, spec, train, eval_sets, family=datasets[0].family, device=device,
                      precision=options.precision, shuffle_seed=seed_hash("shuffle", spec.seed),
                      on_epoch=on_epoch, early_stopping=_early_stopping(spec))
    run_dir.write_predictions(result.predictions)
    for rule, state in result.checkpoints.items():
        run_dir.write_checkpoint(rule, state, epoch=result.chosen_epochs[rule])
    run_dir.write_json("summary.json", {
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "chosen_epochs": result.chosen_epochs, "train_seconds": round(time.perf_counter() - started, 3),
    })
    protocol = protocol_of(spec.protocol)
    if protocol is not None:
        protocol.after_run(spec, run_dir, model, datasets, eval_sets, result, device)
    return result


def text_record(spec: RunSpec, cache: Counter, passes: Counter) -> dict[str, Any]:
    """env.json's "text": how text became vectors, the frozen cache's hits and misses, the masking protocol."""
    encoder = text_encoder_of(spec.config, spec.modalities)
    out: dict[str, Any] = {"encoder": spec.config.get("text.encoder") if "t" in spec.modalities else None}
    if encoder is not None:
        out.update(settings=encoder.as_dict(), cache={"hits": cache["hits"], "misses": cache["misses"],
                                                      "rebuilt": cache["rebuilt"]},
                   encoded_samples=passes["samples"])
        if cache["off"]:  # MSABENCH_TEXT_CACHE=off: encoded in memory, the cache untouched
            out["cache"]["off"] = cache["off"]
    if "t" in spec.modalities and any(r > 0 for r in (spec.rate, *spec.eval_rates)):
        out["missing_protocol"] = (TEXT_MASKED_AFTER_ENCODING if text_masked_after_encoding(spec.to_dict())
                                   else "dropped tokens replaced by [UNK] before encoding (EMT-DLFR)")
    return out


def _check_exposes_features(spec: RunSpec, model, eval_sets: list[EvalSet], device: torch.device) -> None:
    """Feature analysis needs ModelOutput.features: one forward pass on one test batch says so before
    any training (the RNG state is restored, so the run's results do not change)."""
    from msabench.engine.loop import move_batch

    test = next((es for es in eval_sets if es.split == "test"), eval_sets[0])
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    model.eval()
    try:
        with torch.no_grad():
            batch = next(iter(test.data.batches(2)))
            features = model(move_batch(batch, device)).features
    finally:
        model.train()
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    if not features:
        raise UserError(f"model {spec.model!r} returns no named features (ModelOutput.features), so protocol "
                        f"feature-analysis cannot analyse it; choose a model that does (e.g. linear_probe, tfn)")


def failure_reason(exc: BaseException) -> dict[str, Any]:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        reason += (" -- out of memory: run fewer runs at once (--workers, --runs-per-gpu) and rerun it with "
                   "--retry-failed, or lower train.batch_size (--set train.batch_size=N), which makes a new run "
                   "(a new config is a new run id; this one stays failed)")
    return {"reason": reason, "traceback": traceback.format_exc()}
