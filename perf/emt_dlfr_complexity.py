"""EMT-DLFR's complexity numbers next to the paper's: Table 9's #Params and Table 8's fusion MACs.

    python perf/emt_dlfr_complexity.py

Nothing is downloaded and no weight is allocated: every model is built on the meta device with
bert-base-uncased's config (`transformers.BertConfig()` defaults, `msabench.api.text_encoder.config_only`)
from the `mosi` preset (Table 3's CMU-MOSI column), on MOSI's input shapes (MMSA's unaligned pickle:
text 50 tokens x 768, audio 375 x 5, vision 20 x 500).

* #Params (Table 9): `MSAModel.inference_parameter_count()` of each sharing variant, i.e. the
  networks used at inference (BERT included; the DLFR projectors, predictors and decoders left out),
  as the paper counts. The harness builds BERT without its pooler (EMT reads [CLS] from the last
  hidden state); the reference code's `BertModel.from_pretrained` keeps the unused pooler, so the
  paper's numbers include 768 x 768 + 768 = 590,592 more parameters. Both columns are printed.
* #Params (Table 8): the same count for each fusion strategy (share-all, the reference config).
* MACs (Table 8): the fusion module alone (`EMTFusion`, share-all; sharing does not change the
  computation) on one sample at MOSI's padded lengths, every position real: the local text sequence
  has 49 positions (the 50 tokens after [CLS]), audio 375, vision 500. Counted with
  `torch.utils.flop_counter.FlopCounterMode` (every matrix product: linear layers and the attention
  products), MACs = FLOPs / 2. The "linear" column is the part in linear layers alone, which is what
  the paper's counter (thop, pytorch-OpCounter: module hooks) sees; the attention products
  (`torch.matmul` inside a module) are invisible to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import torch

MOSI_DIMS = {"t": 768, "a": 5, "v": 20}
MOSI_LENS = {"t": 50, "a": 375, "v": 500}
BERT_POOLER = 768 * 768 + 768
# Table 9 (MPU, modality, layer) -> #Params (M), and Table 8's MACs (G)
PAPER_PARAMS = {"share-none": 116.4, "share-mpu": 113.4, "share-modality": 112.4, "share-layer": 112.1,
                "share-mpu-modality": 111.4, "share-mpu-layer": 111.1, "share-modality-layer": 110.8,
                "share-all": 110.5}
PAPER_MACS = {"ooll": 3.1, "oall": 8.3, "oagl": 1.5}


def mosi_config(variant: str | None = None, **overrides: Any) -> Any:
    """The resolved `mosi` config of `emt_dlfr[@variant]` as an `EMTDLFRConfig`."""
    import msabench.models  # noqa: F401
    from msabench.api import MODELS, config_from_flat
    from msabench.core.config import ModelSpec, resolve_config

    cls = MODELS.get("emt_dlfr")
    flat = resolve_config(cls, ModelSpec("emt_dlfr", variant), "mosi")
    return dataclasses.replace(config_from_flat(cls.config_cls, flat), **overrides)


def inference_params(variant: str | None, **overrides: Any) -> int:
    """Table 9's #Params of a variant (with `model.*` overrides): bert-base-uncased's config, meta device."""
    from transformers import BertConfig

    from msabench.api import MODELS, InputSpec
    from msabench.api.text_encoder import EncoderSettings, config_only, load_pretrained

    cls = MODELS.get("emt_dlfr")
    cfg = mosi_config(variant, **overrides)
    with config_only(BertConfig()):
        bert = load_pretrained("bert-base-uncased")
        encoder = EncoderSettings(name="bert-base-uncased", frozen=False, max_length=MOSI_LENS["t"])
        spec = InputSpec(modalities=("t", "a", "v"), dims=dict(MOSI_DIMS), max_lens=dict(MOSI_LENS),
                         text_kind="encoded", text_encoder=encoder.as_dict(), vocab_size=bert.config.vocab_size,
                         special_ids=dict(bert.special_ids), family="mosi")
        with torch.device("meta"):
            model = cls(cfg, spec)
    return int(model.inference_parameter_count())


def fusion_macs(fusion: str, lengths: tuple[int, ...] = (MOSI_LENS["t"] - 1, MOSI_LENS["a"], MOSI_LENS["v"]),
                batch: int = 1, **overrides: Any) -> dict[str, float]:
    """MACs of the fusion module on one forward pass: {"total", "linear", "attention"} (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    from msabench.models.emt_dlfr import EMTFusion

    cfg = mosi_config(None, fusion=fusion, **overrides)
    with torch.device("meta"):
        module = EMTFusion(cfg, len(lengths)).eval()
        context = torch.zeros(batch, len(lengths), cfg.d_model)
        sequences = [torch.zeros(batch, t, cfg.d_model) for t in lengths]
        masks = [torch.ones(batch, t, dtype=torch.bool) for t in lengths]
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(context, sequences, masks)
    by_op = {str(op): int(flops) for op, flops in counter.get_flop_counts()["Global"].items()}  # every op once
    total = sum(by_op.values())
    linear = sum(v for k, v in by_op.items() if k.split(".")[-1] in ("addmm", "mm"))
    return {"total": total / 2, "linear": linear / 2, "attention": (total - linear) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    params = {v: inference_params(v) for v in PAPER_PARAMS}
    macs = {f: fusion_macs(f) for f in PAPER_MACS}
    fusion_params = {f: inference_params(None, fusion=f) for f in PAPER_MACS}
    if args.json:
        print(json.dumps({"params": params, "macs": macs, "fusion_params": fusion_params}, indent=2))
        return
    print("Table 9: #Params (M), inference-time networks, bert-base-uncased config")
    print(f"{'variant':<22}{'ours':>9}{'+pooler':>9}{'paper':>8}")
    for v, n in params.items():
        print(f"{v:<22}{n / 1e6:>9.3f}{(n + BERT_POOLER) / 1e6:>9.3f}{PAPER_PARAMS[v]:>8.1f}")
    print("\nTable 8: fusion-module MACs (G), one sample at MOSI lengths (text 49, audio 375, vision 500)")
    print(f"{'fusion':<8}{'total':>9}{'linear':>9}{'attention':>11}{'paper':>8}"
          f"{'#Params':>10}{'+pooler':>9}{'paper':>7}")
    for f, m in macs.items():
        n = fusion_params[f]
        print(f"{f:<8}{m['total'] / 1e9:>9.3f}{m['linear'] / 1e9:>9.3f}{m['attention'] / 1e9:>11.3f}"
              f"{PAPER_MACS[f]:>8.1f}{n / 1e6:>10.3f}{(n + BERT_POOLER) / 1e6:>9.3f}{110.5:>7.1f}")


if __name__ == "__main__":
    main()
