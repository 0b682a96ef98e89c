"""A frozen text encoder's outputs for one split: computed once through the text cache, then read.

With `text.frozen`, the engine (not the model) runs the encoder: each (split, mask) of token ids
is encoded once, stored in `msabench.store.text_cache` and memory-mapped by every seed, model and
worker after. The split then carries the outputs as text vectors, so `TextInput` reads them like
precomputed features. Under a missing rate both the masked ids ([UNK] where dropped) and the
complete ids are encoded: two entries, one per mask.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from msabench.api.text_encoder import EncoderSettings, TextEncoder, load_pretrained
from msabench.engine.batching import TensorSplit
from msabench.store.text_cache import TEXT_CACHE_VERSION, cached_array

ENCODE_BATCH = 256


@functools.lru_cache(maxsize=2)
def _frozen_encoder(settings: EncoderSettings, device: str) -> TextEncoder:
    return TextEncoder(settings).to(device).eval()


def key_parts(settings: EncoderSettings, data_hash: str, split: str, mask: str) -> dict:
    from msabench import major_minor

    return {"encoder": settings.name, "fingerprint": load_pretrained(settings.name).fingerprint,
            "max_length": settings.max_length, "pooling": settings.pooling, "layer": settings.layer,
            "dtype": settings.dtype, "dataset": data_hash, "split": split, "mask": mask,
            "code": f"text-cache-v{TEXT_CACHE_VERSION}/msabench-{major_minor()}"}


@torch.no_grad()
def encode_ids(settings: EncoderSettings, ids: np.ndarray, mask: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(N, T) ids and (N, T) bool mask -> (N, T', D) outputs (float32; float16 when text.dtype is).

    Samples are encoded in order of length, each batch cut to its longest sample: with the attention
    mask, padding changes no real position's output, so this only saves the work on padding. Padding
    positions of a `sequence` output are zero.
    """
    encoder = _frozen_encoder(settings, device)
    out_dtype = np.float16 if settings.dtype == "float16" else np.float32
    n, t = ids.shape
    lengths = np.asarray(mask, dtype=bool).sum(axis=1)
    out = np.zeros((n, t if settings.pooling == "sequence" else 1, encoder.out_dim), dtype=out_dtype)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, n, ENCODE_BATCH):
        rows = order[start:start + ENCODE_BATCH]
        width = max(int(lengths[rows].max()), 1)
        b_ids = torch.from_numpy(np.array(ids[rows, :width], dtype=np.int64)).to(device)
        b_mask = torch.from_numpy(np.array(mask[rows, :width], dtype=bool)).to(device)
        x, x_mask = encoder(b_ids, b_mask)  # (B, width or 1, D)
        x = x.float().masked_fill(~x_mask.unsqueeze(-1), 0.0)
        out[rows, : x.shape[1]] = x.cpu().numpy().astype(out_dtype, copy=False)
    return out


def encode_frozen(ts: TensorSplit, settings: EncoderSettings, data_hash: str, device: str = "cpu") -> TensorSplit:
    """`ts` with its text token ids replaced by the frozen encoder's cached outputs (in place)."""
    ids, mask = ts.inputs["text"], ts.inputs["text_mask"]

    def cached(values: np.ndarray, mask_name: str) -> np.ndarray:
        return cached_array(key_parts(settings, data_hash, ts.split, mask_name),
                            lambda: encode_ids(settings, values, mask, device))

    ts.inputs["text"] = cached(ids, ts.mask_hashes.get("t", "none"))
    if "t" in ts.drop:
        ts.complete["t"] = cached(ts.complete["t"], "none")
    if settings.pooling != "sequence":  # one vector per sample: one real position
        ts.inputs["text_mask"] = np.ones((ids.shape[0], 1), dtype=bool)
        if "t" in ts.drop:  # a pooled sample counts as dropped when every word was
            words = mask.copy()
            words[:, 0] = False
            words[np.arange(ids.shape[0]), np.maximum(mask.sum(1) - 1, 0)] = False
            ts.drop["t"] = (~words | ts.drop["t"]).all(axis=1, keepdims=True)
    ts.text_is_tokens = False
    return ts
