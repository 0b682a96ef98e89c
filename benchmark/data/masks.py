"""Missing-modality drop masks with EMT-DLFR semantics (docs/architecture.md §5).

Each non-padding position of a modality is dropped independently with probability `rate`; text
given as token ids keeps [CLS] (position 0) and [SEP] (position length-1); padding is never touched. The masks come
from a local `np.random.Generator` seeded by a stable hash (sha256, not Python's `hash()`) of
(dataset, split, modality, rate, mask seed), so they are static across epochs, model seeds,
processes and machines. True in a mask means "dropped".

Schemes (`data.mask_scheme`):

* `msabench` (default): the draws are keyed by (dataset, split, modality, rate, mask seed). The masks
  are statistically equivalent to EMT-DLFR's (each real position dropped independently with
  p = rate, [CLS]/[SEP] kept), but they are *not* the same draws, and they are *not nested* across
  rates (the positions dropped at 0.3 are not a subset of those dropped at 0.5), nor shared
  across splits.
* `emt`: EMT-DLFR's official scheme (sunlicai/EMT-DLFR, data/load_data.py `generate_m`): the
  legacy global generator reseeded with the modality's missing seed (111/1111/11111) before one
  uniform draw of shape (N, max_len) per split and modality; a real position is kept when its draw
  exceeds the rate. The same seed for every split and rate, so the draws are shared across splits
  (every split reads the same stream from its start) and the masks are nested across rates. With
  the released pickles' sample order and sequence lengths these are the official masks.

`random_rate_drop_masks` draws the training masks of `missing-random` (LNLN, Haoyu-ha/LNLN
core/dataset.py): a rate per sample and modality, redrawn every epoch.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from msabench.core.errors import UserError

DEFAULT_MASK_SEEDS = {"t": 111, "a": 1111, "v": 11111}
MASK_SCHEMES = ("msabench", "emt")

# Where text is only precomputed vectors, a missing rate zeroes them after encoding (no [CLS]/[SEP] kept):
# EMT-DLFR and TFR-Net instead replace dropped tokens by [UNK] before BERT. Records and captions say so.
TEXT_MASKED_AFTER_ENCODING = "text masked after encoding, not EMT-DLFR's protocol"


def text_masked_after_encoding(spec: dict[str, Any]) -> bool:
    """Whether a run (its RunSpec as a dict) drops text from precomputed vectors at a rate above 0."""
    rates = [float(spec.get("rate") or 0.0), *(float(r) for r in spec.get("eval_rates") or ())]
    return ("t" in spec.get("modalities", ()) and any(r > 0 for r in rates)
            and (spec.get("config") or {}).get("text.encoder", "features") == "features")


def _rate_key(rate: float) -> str:
    # 0.30000000000000004 (np.arange) and 0.3 name the same rate.
    return f"{float(rate):.6f}"


def mask_rng_seed(dataset: str, split: str, modality: str, rate: float, mask_seed: int) -> int:
    """The generator seed for one (dataset, split, modality, rate, mask seed): a stable 64-bit int."""
    key = "\x1f".join(
        ["msabench-mask-v1", str(dataset), str(split), str(modality), _rate_key(rate), str(int(mask_seed))]
    )
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


def drop_masks(
    lengths: np.ndarray,
    max_len: int,
    rate: float,
    *,
    dataset: str,
    split: str,
    modality: str,
    mask_seed: int | None = None,
    keep_ends: bool | None = None,
    scheme: str = "msabench",
) -> np.ndarray:
    """(N, max_len) bool drop mask (True = dropped) for sequences of the given real lengths.

    `mask_seed` defaults to `DEFAULT_MASK_SEEDS[modality]`; `keep_ends` (keep position 0 and
    position length-1: [CLS] and [SEP]) defaults to True for text ("t") and False otherwise;
    `scheme`: see the module docstring.
    """
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"missing rate {rate} is outside [0, 1]; pass a rate between 0 and 1.")
    if scheme not in MASK_SCHEMES:
        raise UserError(f"data.mask_scheme={scheme!r}: use one of {', '.join(MASK_SCHEMES)}")
    mask_seed = _mask_seed(modality, mask_seed)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    max_len = int(max_len)
    n = lengths.shape[0]
    if rate == 0.0:
        return np.zeros((n, max_len), dtype=bool)
    # One uniform draw per grid position whatever the lengths, so a mask depends only on its key.
    if scheme == "emt":
        draws = np.random.RandomState(int(mask_seed)).uniform(size=(n, max_len))
        drop = ~(draws > rate)  # EMT-DLFR keeps a position whose draw exceeds the rate
    else:
        rng = np.random.default_rng(mask_rng_seed(dataset, split, modality, rate, mask_seed))
        drop = rng.random((n, max_len), dtype=np.float64) < rate
    return _restrict(drop, lengths, max_len, modality == "t" if keep_ends is None else keep_ends)


def _mask_seed(modality: str, mask_seed: int | None) -> int:
    if mask_seed is not None:
        return int(mask_seed)
    if modality not in DEFAULT_MASK_SEEDS:
        raise UserError(f"unknown modality {modality!r} for a drop mask; use t, a or v.")
    return DEFAULT_MASK_SEEDS[modality]


def _restrict(drop: np.ndarray, lengths: np.ndarray, max_len: int, keep_ends: bool) -> np.ndarray:
    """Padding is never dropped; with `keep_ends`, neither are [CLS] (0) and [SEP] (length-1)."""
    n = lengths.shape[0]
    drop = drop & (np.arange(max_len, dtype=np.int64)[None, :] < np.minimum(lengths, max_len)[:, None])
    if keep_ends:
        drop[:, 0] = False
        last = np.clip(lengths - 1, 0, max(max_len - 1, 0))
        drop[np.arange(n)[lengths > 0], last[lengths > 0]] = False
    return drop


def random_rate_drop_masks(
    lengths: np.ndarray,
    max_len: int,
    *,
    dataset: str,
    split: str,
    modality: str,
    epoch: int,
    seed: int,
    mask_seed: int | None = None,
    keep_ends: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LNLN's training masks (Haoyu-ha/LNLN core/dataset.py): ((N, max_len) drop mask, (N,) rates).

    Per sample a rate from U(0, 1), set to 0 for a random half of the samples (floor(N/2), drawn
    per modality), redrawn every epoch; a real position is dropped when its uniform draw falls
    below the sample's rate. As in LNLN, the position draws are fixed for the run (LNLN reseeds
    with the run seed before each draw) and only the rates change between epochs. Ours are keyed
    like every mask here (dataset, split, modality, run seed, mask seed; the rates also by epoch),
    so one modality's draws differ from another's (LNLN reuses one stream for all three).
    """
    mask_seed = _mask_seed(modality, mask_seed)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    n, max_len = lengths.shape[0], int(max_len)
    rate_key = f"random-rates|epoch={int(epoch)}|seed={int(seed)}"
    rate_rng = np.random.default_rng(mask_rng_seed(dataset, split, modality, 0.0, mask_seed) ^ _key_int(rate_key))
    rates = rate_rng.random(n)
    rates[rate_rng.choice(n, n // 2, replace=False)] = 0.0
    grid_key = _key_int(f"random-grid|seed={int(seed)}")
    grid_rng = np.random.default_rng(mask_rng_seed(dataset, split, modality, 0.0, mask_seed) ^ grid_key)
    drop = grid_rng.random((n, max_len), dtype=np.float64) < rates[:, None]
    return _restrict(drop, lengths, max_len, modality == "t" if keep_ends is None else keep_ends), rates


def _key_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def mask_hash(mask: np.ndarray | dict[str, np.ndarray]) -> str:
    """Short sha256 of a mask (shape + bits), or of a dict of masks in key order."""
    h = hashlib.sha256()
    items = sorted(mask.items()) if isinstance(mask, dict) else [("", mask)]
    for key, m in items:
        m = np.asarray(m, dtype=bool)
        h.update(f"{key}|{m.shape}|".encode())
        h.update(np.packbits(m, axis=None).tobytes())
    return h.hexdigest()[:16]


def apply_drop(values: Any, drop: Any, *, unk_id: int | None = None) -> Any:
    """A copy of `values` with dropped positions replaced: token ids -> `unk_id`, features -> 0.

    `values` is (N, T) integer token ids or (N, T) / (N, T, D) float features, numpy or torch;
    `drop` is the (N, T) bool mask. The input is never modified.
    """
    if hasattr(values, "masked_fill"):  # torch tensor
        import torch

        mask = torch.as_tensor(drop, device=values.device).bool()
        if values.is_floating_point():
            fill = 0.0
        else:
            if unk_id is None:
                raise ValueError("apply_drop on token ids needs unk_id (the vocabulary's [UNK] id)")
            fill = int(unk_id)
        while mask.dim() < values.dim():
            mask = mask.unsqueeze(-1)
        return values.masked_fill(mask, fill)
    values = np.asarray(values)
    drop = np.asarray(drop, dtype=bool)
    if drop.shape != values.shape[: drop.ndim]:
        raise ValueError(f"drop mask of shape {drop.shape} does not fit values of shape {values.shape}")
    out = values.copy()
    if np.issubdtype(values.dtype, np.floating):
        out[drop] = 0
    else:
        if unk_id is None:
            raise ValueError("apply_drop on token ids needs unk_id (the vocabulary's [UNK] id)")
        out[drop] = unk_id
    return out


def split_masks(
    split_data: Any,
    rate: float,
    *,
    dataset: str,
    split: str,
    modalities: tuple[str, ...] = ("t", "a", "v"),
    mask_seeds: dict[str, int] | None = None,
    scheme: str = "msabench",
) -> dict[str, np.ndarray]:
    """Drop masks for every requested modality of a `SplitData` that has values and lengths."""
    seeds = {**DEFAULT_MASK_SEEDS, **(mask_seeds or {})}
    out: dict[str, np.ndarray] = {}
    for m in modalities:
        values, lengths = split_data.modality(m)
        if values is None:
            continue
        if lengths is None:
            lengths = np.full(values.shape[0], values.shape[1], dtype=np.int64)
        out[m] = drop_masks(lengths, values.shape[1], rate, dataset=dataset, split=split, modality=m,
                            mask_seed=seeds[m], scheme=scheme)
    return out
