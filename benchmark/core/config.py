"""Config namespaces, precedence and the model-spec syntax (docs/architecture.md §4).

A resolved config is a flat dict of namespaced keys: `model.*` (architecture and losses),
`train.*`, `data.*`, `text.*`. Precedence, lowest first:
    global defaults < model defaults (or `tiny()`) < family preset < protocol policy (then its
    caps, as minima) < `--set` < the spec's variant < the spec's inline keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from msabench.core.errors import UserError, close_matches

NAMESPACES = ("model", "train", "data", "text")

GLOBAL_DEFAULTS: dict[str, Any] = {
    "train.optimizer": "adam",
    "train.lr": 1e-3,
    "train.text_lr": 5e-5,  # a fine-tuned text encoder's own lr
    "train.batch_size": 32,
    "train.eval_batch_size": 256,
    "train.epochs": 30,
    "train.patience": 8,
    "train.grad_accum": 1,
    "train.clip": 0.0,  # max grad norm, 0 = off
    "train.weight_decay": 0.0,
    "train.scheduler": "none",  # none | plateau (on the valid loss) | linear (warm-up, then decay)
    "train.scheduler_patience": 10,  # plateau: epochs without improvement before the lr drops
    "train.scheduler_factor": 0.1,  # plateau: lr multiplier
    "train.warmup_ratio": 0.1,  # linear: share of all steps spent warming up
    "train.min_epochs": 0,  # early stopping never ends a run before this many epochs
    # Evaluate the training split after every epoch too: no selection rule or report reads it (the
    # training losses are logged either way), so protocols that need speed turn it off (§6).
    "train.eval_train": True,
    "data.source": "auto",  # auto | pkl | aligned | label-csv
    "data.scale": 1.0,  # synthetic suite only
    "data.seed": 0,  # synthetic suite generation seed
    "data.aligned": False,
    "data.noise_modality": "",  # "", t, a or v
    "data.mask_scheme": "msabench",  # msabench | emt (msabench.data.masks)
    "text.encoder": "features",  # precomputed features, or a Hugging Face name / local path
    "text.frozen": True,
    "text.max_length": 50,
    "text.pooling": "sequence",  # sequence | cls | mean (a Hugging Face encoder's output)
    "text.layer": -1,  # the encoder's hidden state to read; -1 = the last layer
    "text.dtype": "float32",  # float32 | bfloat16 | float16: the encoder's dtype
}

DATA_SOURCES = ("auto", "pkl", "aligned", "label-csv")
SCHEDULER_KINDS = ("none", "plateau", "linear")
MASK_SCHEMES = ("msabench", "emt")

# Keys added after stores existed: at their default they stay out of the run id, so adding them
# changes no existing run id (docs/architecture.md §4); any other value enters the id as usual.
ID_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "train.scheduler": "none",
    "train.scheduler_patience": 10,
    "train.scheduler_factor": 0.1,
    "train.warmup_ratio": 0.1,
    "train.min_epochs": 0,
    "train.eval_train": True,
    "text.pooling": "sequence",
    "text.layer": -1,
    "text.dtype": "float32",
    "data.mask_scheme": "msabench",
}


def identity_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that enters the run id (ID-neutral keys at default dropped)."""
    return {k: v for k, v in config.items()
            if not (k in ID_NEUTRAL_DEFAULTS and v == ID_NEUTRAL_DEFAULTS[k])}

_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9_\-]+)(@(?P<variant>[A-Za-z0-9_.\-]+))?(:(?P<keys>.*))?$")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    variant: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """NAME[@VARIANT]: the row label in tables (inline keys are in the config)."""
        return self.name + (f"@{self.variant}" if self.variant else "")

    def __str__(self) -> str:
        return model_label(self.label, self.overrides)


def model_label(model: str, keys: dict[str, Any] | None = None) -> str:
    """`NAME[@VARIANT]` plus the spec's inline keys: the one name of a model configuration in progress
    lines, dry runs, exports, MLflow, plots and table rows (two configs of a model never share it)."""
    if not keys:
        return model
    return model + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in sorted(keys.items()))


def spec_label(spec: dict[str, Any]) -> str:
    """`model_label` of a spec.json dict (runs written before inline keys were kept show NAME[@VARIANT])."""
    return model_label(str(spec.get("model", "")), spec.get("model_keys") or {})


def _format_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def parse_value(text: str) -> Any:
    """`true` -> True, `3` -> 3, `1e-3` -> 0.001, `"x"`/`x` -> 'x', `none` -> None."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def parse_assignment(text: str, where: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"{where}: {text!r} is not KEY=VALUE; write e.g. train.lr=0.001")
    key, value = text.split("=", 1)
    key = key.strip()
    if "." not in key or key.split(".", 1)[0] not in NAMESPACES:
        raise UserError(
            f"{where}: key {key!r} needs a namespace ({', '.join(n + '.*' for n in NAMESPACES)}), e.g. train.lr=0.001"
        )
    return key, parse_value(value)


def parse_model_spec(text: str) -> ModelSpec:
    """Parse `NAME[@VARIANT][:key=value,...]`."""
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise UserError(
            f"bad model spec {text!r}: write NAME[@VARIANT][:key=value,...], e.g. tfn or tfn:model.dropout=0.2"
        )
    overrides: dict[str, Any] = {}
    keys = match.group("keys")
    if keys is not None:
        if not keys.strip():
            raise UserError(f"bad model spec {text!r}: nothing after ':'; drop it or add key=value pairs")
        for part in _split_top_level(keys):
            key, value = parse_assignment(part, f"model spec {text!r}")
            overrides[key] = value
    return ModelSpec(match.group("name"), match.group("variant"), overrides)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes, so list values survive."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def model_defaults(model_cls: type, tiny: bool = False) -> dict[str, Any]:
    cfg = model_cls.tiny() if tiny else model_cls.config_cls()
    flat = {f"model.{k}": v for k, v in dataclasses.asdict(cfg).items()}
    flat.update(model_cls.TRAIN_DEFAULTS)
    return flat


def check_keys(overrides: dict[str, Any], known: set[str], where: str, tolerated: set[str] = frozenset()) -> None:
    for key in overrides:
        if key in known or key in tolerated:
            continue
        matches = close_matches(key, known)
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        raise UserError(f"{where}: unknown key {key!r}.{hint} `msabench models --json` lists each model's keys.")


def check_types(resolved: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """Coerce ints to floats where the default is a float; refuse other type changes."""
    out = dict(resolved)
    for key, value in resolved.items():
        if key not in defaults or defaults[key] is None:
            continue
        if value is None and isinstance(defaults[key], str):
            out[key] = "none"  # `train.scheduler=none`: for a string key the word is the string, not null
            continue
        if value is None:
            raise UserError(f"{where}: {key}=null is not a value; it takes a {type(defaults[key]).__name__} "
                            f"(default {defaults[key]!r}): give one, or drop the key for the default")
        expected = type(defaults[key])
        if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
            continue
        if expected in (tuple, list) and isinstance(value, (list, tuple)):
            out[key] = expected(value)
            continue
        raise UserError(
            f"{where}: {key}={value!r} has type {type(value).__name__}; it takes a {expected.__name__} "
            f"(default {defaults[key]!r})"
        )
    return out


def resolve_config(
    model_cls: type,
    spec: ModelSpec,
    family: str,
    *,
    policy: dict[str, Any] | None = None,
    caps: dict[str, Any] | None = None,
    user_set: dict[str, Any] | None = None,
    tiny: bool = False,
    tolerated_model_keys: set[str] = frozenset(),
) -> dict[str, Any]:
    """The flat config of one model on one dataset family, every layer applied in order."""
    defaults = dict(GLOBAL_DEFAULTS)
    defaults.update(model_defaults(model_cls, tiny=tiny))
    known = set(defaults)
    resolved = dict(defaults)
    preset = dict(model_cls.PRESETS.get(family, {}))
    if tiny:  # tiny() fixes the architecture; presets keep only their non-model keys
        preset = {k: v for k, v in preset.items() if not k.startswith("model.")}
    resolved.update(preset)
    resolved.update(policy or {})
    for key, cap in (caps or {}).items():
        resolved[key] = min(resolved[key], cap)
    user_set = user_set or {}
    check_keys(user_set, known, "--set", tolerated=set(tolerated_model_keys))
    resolved.update({k: v for k, v in user_set.items() if k in known})
    if spec.variant is not None:
        if spec.variant not in model_cls.VARIANTS:
            matches = close_matches(spec.variant, model_cls.VARIANTS)
            known_variants = ", ".join(sorted(model_cls.VARIANTS))
            hint = (f" Did you mean: {', '.join(matches)}?" if matches
                    else f" Its variants: {known_variants}." if known_variants
                    else f" It has no variants: drop @{spec.variant}.")
            raise UserError(f"unknown variant {spec.variant!r} of model {spec.name!r}.{hint}")
        resolved.update(model_cls.VARIANTS[spec.variant])
    check_keys(spec.overrides, known, f"model spec {str(spec)!r}")
    resolved.update(spec.overrides)
    resolved = check_types(resolved, defaults, f"model {spec.label}")
    _check_values(resolved)
    return dict(sorted(resolved.items()))


OPTIMIZER_NAMES = ("adam", "adamw", "sgd")  # msabench.train_context.OPTIMIZERS builds them


def _check_values(cfg: dict[str, Any]) -> None:
    """Values that would start a run only to fail it (or to train on garbage): refused at plan time."""
    for key, value in cfg.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key}={value}: must be a finite number")
    if str(cfg["train.optimizer"]).lower() not in OPTIMIZER_NAMES:
        raise UserError(f"unknown train.optimizer {str(cfg['train.optimizer'])[:40]!r}; use one of "
                        f"{', '.join(OPTIMIZER_NAMES)}")
    for key in ("train.text_lr",):
        if key in cfg and cfg[key] <= 0:
            raise UserError(f"{key}={cfg[key]} must be positive")
    for key in ("train.weight_decay", "train.clip", "train.patience"):
        if key in cfg and cfg[key] < 0:
            raise UserError(f"{key}={cfg[key]} must be zero or positive")
    if cfg["data.source"] not in DATA_SOURCES:
        raise UserError(f"data.source={cfg['data.source']!r}: use one of {', '.join(DATA_SOURCES)}")
    if cfg["data.mask_scheme"] not in MASK_SCHEMES:
        raise UserError(f"data.mask_scheme={cfg['data.mask_scheme']!r}: use one of {', '.join(MASK_SCHEMES)}")
    if cfg["data.noise_modality"] not in ("", "t", "a", "v"):
        raise UserError(f"data.noise_modality={cfg['data.noise_modality']!r}: use t, a or v (or leave it empty)")
    for key in ("train.batch_size", "train.epochs", "train.grad_accum", "train.eval_batch_size"):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} must be at least 1")
    if cfg["train.scheduler"] not in SCHEDULER_KINDS:
        raise UserError(f"train.scheduler={cfg['train.scheduler']!r}: use one of {', '.join(SCHEDULER_KINDS)}")
    if cfg["train.min_epochs"] < 0:
        raise UserError(f"train.min_epochs={cfg['train.min_epochs']} must be 0 or more")
    if cfg["train.lr"] <= 0:
        raise UserError(f"train.lr={cfg['train.lr']} must be positive")
    if cfg["data.scale"] <= 0:
        raise UserError(f"data.scale={cfg['data.scale']} must be positive")
