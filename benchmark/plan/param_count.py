"""`msabench models --params PRESET`: every model's parameter count on the meta device, in seconds.

No data and no weights: each model is built inside ``torch.device("meta")`` from its resolved
config on the family's input shapes (those of the synthetic preset `synth-<family>`, which copies
the MMSA feature dimensions). A model whose config names a Hugging Face encoder (`text.encoder`),
or that declares `USES_TEXT_ENCODER`, is counted with bert-base-uncased's shapes
(`transformers.BertConfig()` defaults: 12 layers, 768 wide, 30522 tokens) whatever the encoder's
name, since the weights are not read; tiny-bert keeps its own small config. A frozen encoder is
run by the engine, not the model: its parameters are counted under "frozen".
"""

from __future__ import annotations

import time
from typing import Any

import torch

from msabench.core.errors import UserError


def _family_shapes(preset: str) -> tuple[str, dict[str, int], dict[str, int]]:
    from msabench.data import synth

    family = preset.removeprefix("synth-")
    key = f"synth-{family}"
    if key not in synth.PRESETS or synth.PRESETS[key].dg:
        families = [p.removeprefix("synth-") for p, v in synth.PRESETS.items() if not v.dg]
        raise UserError(f"--params {preset!r}: give a dataset family ({', '.join(families)})")
    domain = next(iter(synth.PRESETS[key].domains.values()))
    return family, {m: d for m, (d, _) in domain.dims.items()}, {m: n for m, (_, n) in domain.dims.items()}


def count_params(preset: str, user_set: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    from transformers import BertConfig

    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS, config_from_flat
    from msabench.api.text_encoder import TINY_BERT, EncoderSettings, config_only, load_pretrained
    from msabench.api.types import InputSpec
    from msabench.core.config import ModelSpec, resolve_config
    from msabench.data.synth import LABEL_KINDS
    from msabench.plan.planner import N_OUTPUTS

    family, dims, max_lens = _family_shapes(preset)
    out: dict[str, dict[str, Any]] = {}
    with config_only(BertConfig()):
        for name, cls in MODELS.items():
            started = time.perf_counter()
            cfg = resolve_config(cls, ModelSpec(name), family, user_set=dict(user_set or {}))
            encoder = EncoderSettings.from_config(cfg)
            if encoder is None and cls.USES_TEXT_ENCODER:  # a BERT model configured without its encoder name
                encoder = EncoderSettings(name="bert-base-uncased", frozen=bool(cfg["text.frozen"]),
                                          max_length=int(cfg["text.max_length"]))
            modalities = tuple(m for m in ("t", "a", "v") if m in cls.SUPPORTED_MODALITIES)
            task = LABEL_KINDS[family] if LABEL_KINDS[family] in cls.TASKS else cls.TASKS[0]
            spec_dims, spec_lens, kind, extra = dict(dims), dict(max_lens), "features", {}
            if encoder is not None and "t" in modalities:
                pretrained = load_pretrained(encoder.name)
                spec_dims["t"] = pretrained.hidden_size
                spec_lens["t"] = encoder.max_length if encoder.pooling == "sequence" else 1
                kind, extra = "encoded", {"text_encoder": encoder.as_dict(), "vocab_size": pretrained.config.vocab_size,
                                          "special_ids": dict(pretrained.special_ids)}
            spec = InputSpec(modalities=modalities, dims=spec_dims, max_lens=spec_lens, text_kind=kind, task=task,
                             n_outputs=N_OUTPUTS[task], family=family, **extra)
            with torch.device("meta"):
                model = cls(config_from_flat(cls.config_cls, cfg), spec)
                frozen_encoder = 0
                if encoder is not None and encoder.frozen and "t" in modalities:  # run by the engine, not the model
                    frozen_encoder = sum(p.numel() for p in load_pretrained(encoder.name).build_module().parameters())
            out[name] = {
                "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad) + frozen_encoder,
                "text_encoder": None if encoder is None else (
                    encoder.name if encoder.name == TINY_BERT else "bert-base-uncased config"),
                "seconds": round(time.perf_counter() - started, 3),
            }
    return out
