"""From a `Request` (CLI options, a sweep file or a paper template) to RunSpecs: protocol runs x model specs.

Config resolution, model/modality compatibility and data hashes happen here, at plan time, so a
sweep fails before it trains anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from msabench import major_minor
from msabench.api.types import InputSpec
from msabench.core.config import ModelSpec, parse_model_spec, resolve_config
from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.data.names import family_of, is_synthetic
from msabench.plan.request import Request

N_OUTPUTS = {"regression": 1, "classification": 3, "multilabel": 4}


_LOADED: dict[tuple, Any] = {}


def load_for_config(name: str, cfg: dict[str, Any], data_root: str | None):
    """Load the dataset `name` with the data options of a resolved config, once per process."""
    from msabench.data.datasets import DATASETS, load_dataset

    options = dict(source=cfg["data.source"], seed=int(cfg["data.seed"]), scale=float(cfg["data.scale"]),
                   aligned=bool(cfg["data.aligned"]), noise_modality=cfg["data.noise_modality"] or None)
    card = DATASETS.get(name).card if name in DATASETS else ""  # two cards may share a name across a process
    key = (name, data_root, card, *options.values())
    if key not in _LOADED:
        _LOADED[key] = load_dataset(name, data_root=data_root, **options)
    return _LOADED[key]


def task_of(datasets: list[Any], planned_task: str | None) -> str:
    if planned_task is not None:
        return planned_task
    return datasets[0].label_kind


def text_is_tokens(cfg: dict[str, Any]) -> bool:
    """Whether text enters as token ids: plain ids (text.encoder=tokens) or through a Hugging Face encoder."""
    from msabench.api.text_encoder import EncoderSettings

    EncoderSettings.from_config(cfg)  # a bad text.* value fails at plan time
    return cfg["text.encoder"] != "features"


def text_encoder_of(cfg: dict[str, Any], modalities: tuple[str, ...]):
    """The run's `EncoderSettings` when text is among its modalities and goes through an encoder, else None."""
    from msabench.api.text_encoder import EncoderSettings

    return EncoderSettings.from_config(cfg) if "t" in modalities else None


def build_input_spec(datasets: list[Any], modalities: tuple[str, ...], task: str, label_rule: str,
                     tokens: bool, encoder: Any = None) -> InputSpec:
    """`encoder` (an `EncoderSettings`): text enters as that encoder's outputs ("encoded")."""
    dims_per = [d.dims() for d in datasets]
    lens_per = [d.max_lens() for d in datasets]
    for d, dims in zip(datasets, dims_per):  # at plan time, not in the first run (so --dry-run says it too)
        has = {m for m in ("a", "v") if m in dims}
        train = d.splits["train"]
        if ((encoder is not None and (train.text_ids is not None or train.raw_text is not None))
                or (encoder is None and tokens and train.text_ids is not None) or (not tokens and "t" in dims)):
            has.add("t")
        lacking = [m for m in modalities if m not in has]
        if lacking:
            what = ", ".join({"t": "text token ids" if tokens else "text features", "a": "audio features",
                              "v": "vision features"}[m] for m in lacking)
            raise UserError(f"dataset {d.name} has no {what} (it has: {','.join(sorted(has)) or 'none'}); "
                            f"choose --modalities among those"
                            + (", or add a features.npz beside its labels" if "t" in lacking and not tokens else ""))
    for m in modalities:
        if m == "t" and encoder is not None:  # one encoder: one text feature space
            continue
        values = {d.name: dims.get(m) for d, dims in zip(datasets, dims_per)}
        if len(set(values.values())) > 1:
            read = "; ".join(f"{d.name}: dim {dims.get(m)} read from {d.source or 'its default source'}"
                             for d, dims in zip(datasets, dims_per))
            if m == "t":
                pickles = [d.name for d in datasets if str(d.source).endswith(".pkl")]
                fix = (f"{', '.join(pickles)} took its text from an MMSA pickle (data.source=auto prefers it); "
                       "`--set data.source=label-csv` reads every domain's label.csv and features.npz instead. "
                       "Otherwise re-encode every domain's text with one encoder (one features.npz dim)"
                       if pickles else "re-encode every domain's text with one encoder (one features.npz dim)")
            else:
                fix = (f"leave {m} out (--modalities t on real public features) or give every domain the same {m} "
                       "features (data.source chooses the file each domain is read from)")
            raise UserError(f"the domains do not share a feature space for modality {m} ({read}). DG needs one"
                            f" feature space: {fix}")
    first = datasets[0]
    dims = {m: dims_per[0][m] for m in modalities if m in dims_per[0]}
    max_lens = {m: max(lp.get(m, 0) for lp in lens_per) for m in modalities}
    vocab, special_ids = list(first.vocab or ()), dict(first.special_ids)
    if tokens:
        dims.pop("t", None)
    if encoder is not None and "t" in modalities:
        from msabench.api.text_encoder import load_pretrained

        pretrained = load_pretrained(encoder.name)
        dims["t"] = pretrained.hidden_size
        max_lens["t"] = encoder.max_length if encoder.pooling == "sequence" else 1
        vocab, special_ids = list(pretrained.vocab), dict(pretrained.special_ids)
    groups = {}
    if first.ground_truth and not tokens:
        # The synthetic suite's ground_truth.json names the groups per modality
        # under "modalities" (with dims and coefficients beside them); keep the index lists only.
        truth = first.ground_truth.get("features") or first.ground_truth.get("modalities", {})
        groups = {m: {k: [int(i) for i in g.get(k, [])] for k in ("invariant", "spurious", "style")}
                  for m, g in truth.items() if m in modalities}
    return InputSpec(
        modalities=tuple(modalities), dims=dims, max_lens=max_lens,
        text_kind="encoded" if encoder is not None else "tokens" if tokens else "features", vocab_size=len(vocab),
        special_ids=special_ids, task=task, n_outputs=N_OUTPUTS[task], label_rule=label_rule,
        family=first.family, domains=tuple(d.name for d in datasets), feature_groups=groups,
        # word-aligned: every modality at one sequence length (MMSA's aligned_50, data.aligned=true)
        aligned=len({max_lens[m] for m in modalities}) <= 1,
        text_encoder=encoder.as_dict() if encoder is not None and "t" in modalities else {},
    )


def plan(request: Request) -> list[RunSpec]:
    import msabench.models  # noqa: F401  (registers the plugins)
    from msabench.api.model import MODELS
    from msabench.data.datasets import resolve_dataset_arg
    from msabench.protocols import PROTOCOLS

    protocol = PROTOCOLS.get(request.protocol)
    # names in any case, a card's folder or a card's name under the data root -> registered names
    datasets = tuple(resolve_dataset_arg(d, request.data_root) for d in request.datasets)
    request = replace(request, datasets=datasets)
    real = [d for d in datasets if not is_synthetic(d)]
    if real and len(real) != len(datasets):
        raise UserError(f"mixing real and synthetic datasets ({', '.join(datasets)}) is not allowed: use one kind")
    _check_modalities(request.modalities)
    planned = protocol.plan(request)
    model_texts = request.models or protocol.quick_models
    if model_texts == ("all",):
        model_texts = tuple(MODELS.names())
    specs = [parse_model_spec(t) for t in model_texts]
    specs = [replace(s, name=MODELS.canonical(s.name)) for s in specs]  # `TFN` -> `tfn`: one run id
    classes = {s.name: MODELS.get(s.name) for s in specs}
    sweep_model_keys = {k for cls in classes.values() for k in _model_keys(cls)}
    skip_incompatible = request.models == ("all",)
    out: list[RunSpec] = []
    for run in planned:
        for spec in specs:
            built = _build(run, spec, classes[spec.name], protocol, request, sweep_model_keys, skip_incompatible)
            if built is not None:
                out.append(built)
    return _dedupe(out)


def _build(run, spec: ModelSpec, cls, protocol, request: Request, sweep_model_keys, skip_incompatible):
    synthetic = is_synthetic(run.datasets[0])
    # --tiny is part of the policy layer, so --set and the model spec still win over it.
    policy = {**protocol.policy(synthetic), **(_tiny_policy(synthetic) if request.tiny else {})}
    family = family_of(run.preset_domain or run.datasets[0]) or _card_family(run.datasets[0], request.data_root)
    cfg = resolve_config(cls, spec, family, policy=policy, caps=protocol.caps(synthetic),
                         user_set=request.user_set, tiny=request.tiny, tolerated_model_keys=sweep_model_keys)
    if request.tiny and synthetic:
        cfg = _tiny_text_encoder(cfg, chosen="text.encoder" in request.user_set or "text.encoder" in spec.overrides)
    data = [load_for_config(name, cfg, request.data_root) for name in run.datasets]
    task = task_of(data, run.task)
    tokens = text_is_tokens(cfg) if "t" in run.modalities else False
    input_spec = build_input_spec(data, run.modalities, task, run.label_rule, tokens,
                                  text_encoder_of(cfg, run.modalities))
    problem = cls.check_inputs(input_spec)
    if problem:
        if skip_incompatible:
            print(f"skipping {spec.label}: {problem}")
            return None
        raise UserError(f"{problem}; choose other --modalities or another model")
    return RunSpec(
        protocol=protocol.name, protocol_version=protocol.version, setting=run.setting, datasets=run.datasets,
        data_hashes=tuple(d.data_hash for d in data), model=spec.label, config=cfg, impl_version=cls.impl_version,
        model_keys=dict(spec.overrides), smoke=request.tiny,
        seed=run.seed, rate=run.rate, modalities=run.modalities, label_rule=run.label_rule, task=task,
        source_domains=run.source_domains, target_domains=run.target_domains,
        selection_rules=run.selection_rules, eval_rates=run.eval_rates, train_domains=run.train_domains,
        valid_domains=run.valid_domains, msabench_version=major_minor(), input_spec=input_spec,
    )


def _card_family(name: str, data_root: str | None) -> str:
    """The preset family a corpus registered from a card declares ("" for any other name)."""
    from msabench.data.datasets import lookup

    return lookup(name, data_root).family


def _tiny_policy(synthetic: bool) -> dict[str, Any]:
    policy = {"train.epochs": 3, "train.patience": 3}
    if synthetic:
        policy["data.scale"] = 0.05
    return policy


def _tiny_text_encoder(cfg: dict[str, Any], chosen: bool) -> dict[str, Any]:
    """--tiny on the synthetic suite: a model's default Hugging Face encoder becomes tiny-bert (no weights to
    fetch, the suite's own vocabulary); an encoder the user chose with --set or the model spec stays."""
    from msabench.api.text_encoder import NOT_ENCODERS, TINY_BERT

    if chosen or cfg["text.encoder"] in (*NOT_ENCODERS, TINY_BERT):
        return cfg
    return {**cfg, "text.encoder": TINY_BERT}


def _model_keys(cls) -> set[str]:
    from msabench.core.config import model_defaults

    return {k for k in model_defaults(cls) if k.startswith("model.")}


def _check_modalities(modalities) -> None:
    if modalities is None:
        return
    bad = [m for m in modalities if m not in ("t", "a", "v")]
    if bad or not modalities or len(set(modalities)) != len(modalities):
        raise UserError(f"--modalities {','.join(modalities)}: use a non-empty subset of t,a,v, e.g. t,v")


def _dedupe(specs: list[RunSpec]) -> list[RunSpec]:
    seen, out = set(), []
    for s in specs:
        if s.run_id not in seen:
            seen.add(s.run_id)
            out.append(s)
    return out
