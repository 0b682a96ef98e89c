"""Labels of the synthetic suite: empirical label distributions and the latent sentiment.

Each family's labels follow the real data's distribution (aggregate value histograms only; no
real rows are used or stored):

* MOSI: averages of annotators in [-3, 3] (steps of 0.2 mostly, plus quarters, halves and
  thirds). The value histogram and the per-split counts of five buckets (s < -0.5,
  -0.5 <= s < 0, s == 0, 0 < s <= 0.5, s > 0.5) are aggregates of CMU-MOSI's labels, so at scale 1
  the sign counts are exactly the real ones (train 552/53/679, valid 92/13/124, test 379/30/277)
  and so are the `round`-rule counts (test 347/106/233).
* MOSEI: thirds in [-3, 3], positively skewed (an approximation: no MOSEI labels are at hand).
* SIMS: [-1, 1] in steps of 0.2, negatively skewed; unimodal T/A/V scores near the multimodal one.
* MELD: three sentiment classes in MELD's train proportions (2945/4710/2334).
* IEMOCAP: one-hot over `IEMOCAP_EMOTIONS` (MulT's column order: neutral, happy, sad, angry), balanced.

Bucket (or class) counts are exact (largest remainder) at every scale; values inside a bucket are
drawn from the histogram.

The latent sentiment `z` (N, 2) is a function of the label: `z[:, 0]` the valence, `z[:, 1]` the
intensity (|valence|) or, for IEMOCAP, the arousal. In the DG suite the latent separates the three
`round`-rule classes by a gap (the DG protocols score those classes), with the score adding a
little within-class variation.
"""

from __future__ import annotations

import numpy as np

from msabench.core.types import IEMOCAP_EMOTIONS

# --- value histograms (value -> relative weight) -------------------------------------------------
# CMU-MOSI, all 2199 labels pooled (aggregate counts per distinct value).
_T = 1.0 / 3.0
MOSI_HIST: dict[float, int] = {
    -3.0: 12, -2.8: 32, -2.6: 36, -2.5: 2, -2.4: 40, -2.25: 2, -2.2: 61, -2.0: 103, -1.8: 72,
    -1.75: 4, -1.6: 91, -1.5: 10, -1.4: 79, -4 * _T: 2, -1.25: 8, -1.2: 71, -1.0: 110, -0.8: 68,
    -0.75: 8, -2 * _T: 3, -0.6: 55, -0.5: 18, -0.4: 69, -_T: 2, -0.25: 10, -0.2: 55, 0.0: 96,
    0.2: 61, 0.25: 12, _T: 1, 0.4: 62, 0.5: 17, 0.6: 63, 2 * _T: 2, 0.75: 4, 0.8: 77, 1.0: 62,
    1.2: 68, 1.25: 7, 4 * _T: 4, 1.4: 92, 1.5: 3, 1.6: 90, 1.75: 4, 1.8: 94, 2.0: 120, 2.2: 94,
    2.25: 2, 2.4: 54, 2.5: 2, 2.6: 44, 2.8: 29, 3.0: 12,
}
# CMU-MOSI bucket counts per split (s<-0.5, -0.5<=s<0, 0, 0<s<=0.5, s>0.5).
MOSI_BUCKETS = {
    "train": (450, 102, 53, 93, 586),
    "valid": (72, 20, 13, 16, 108),
    "test": (347, 32, 30, 44, 233),
}
# MOSEI: thirds k/3, k = -9..9 (approximate shape: ~26% negative, ~21% zero, ~53% positive).
MOSEI_HIST: dict[float, float] = {
    k / 3.0: w
    for k, w in zip(
        range(-9, 10),
        (1.2, 1.0, 1.3, 2.8, 2.2, 2.5, 5.5, 4.5, 5.0, 21.0, 7.0, 7.0, 11.0, 6.5, 6.0, 7.0, 3.5,
         2.5, 2.5),
    )
}
# CH-SIMS: steps of 0.2 (approximate shape: ~60% negative, ~9% zero, ~31% positive).
SIMS_HIST: dict[float, float] = {
    round(-1.0 + 0.2 * k, 1): w
    for k, w in enumerate((9, 15, 10, 12, 14, 9, 7, 6, 6, 8, 4))
}
MELD_CLASS_COUNTS = (2945, 4710, 2334)  # negative, neutral, positive (MELD train)
EMOTIONS = IEMOCAP_EMOTIONS

# Latent corners (valence, intensity/arousal).
CLASS3_CORNERS = np.array([[-0.7, 1.0], [0.0, 0.0], [0.7, 1.0]], dtype=np.float32)
_CORNER_OF = {"happy": (0.8, 0.6), "sad": (-0.8, -0.4), "angry": (-0.8, 0.8), "neutral": (0.0, -0.9)}
EMOTION_CORNERS = np.array([_CORNER_OF[e] for e in EMOTIONS], dtype=np.float32)  # one row per label column


def largest_remainder(weights, n: int) -> np.ndarray:
    """Integer counts summing to n, proportional to weights (ties to the earlier entry)."""
    w = np.asarray(weights, dtype=np.float64)
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(np.int64)
    rest = n - int(counts.sum())
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _bucket_of(values: np.ndarray) -> np.ndarray:
    b = np.full(values.shape, 4, dtype=np.int64)
    b[values <= 0.5] = 3
    b[values == 0] = 2
    b[values < 0] = 1
    b[values < -0.5] = 0
    return b


def _draw_from_hist(hist: dict[float, float], bucket_counts, rng) -> np.ndarray:
    """Exact per-bucket counts, values inside a bucket drawn from the histogram, shuffled."""
    values = np.array(list(hist.keys()), dtype=np.float64)
    weights = np.array(list(hist.values()), dtype=np.float64)
    buckets = _bucket_of(values)
    out = []
    for b, count in enumerate(bucket_counts):
        if count == 0:
            continue
        sel = buckets == b
        p = weights[sel] / weights[sel].sum()
        out.append(rng.choice(values[sel], size=int(count), p=p))
    s = np.concatenate(out)
    rng.shuffle(s)
    return s


def _hist_buckets(hist: dict[float, float]) -> np.ndarray:
    values = np.array(list(hist.keys()))
    weights = np.array(list(hist.values()), dtype=np.float64)
    return np.bincount(_bucket_of(values), weights=weights, minlength=5)


def draw_labels(family: str, split: str, n: int, rng: np.random.Generator) -> dict:
    """Labels of one split: {"regression"| "classification" | "multilabel": array, "unimodal"}."""
    if family == "mosi":
        counts = largest_remainder(MOSI_BUCKETS[split], n)
        return {"regression": _draw_from_hist(MOSI_HIST, counts, rng).astype(np.float32)}
    if family == "mosei":
        counts = largest_remainder(_hist_buckets(MOSEI_HIST), n)
        return {"regression": _draw_from_hist(MOSEI_HIST, counts, rng).astype(np.float32)}
    if family == "sims":
        counts = largest_remainder(_hist_buckets(SIMS_HIST), n)
        s = _draw_from_hist(SIMS_HIST, counts, rng)
        uni = {}
        for m, sd in (("t", 0.25), ("a", 0.4), ("v", 0.3)):
            noisy = s + sd * rng.standard_normal(n)
            uni[m] = np.clip(np.round(noisy * 5.0) / 5.0, -1.0, 1.0).astype(np.float32)
            uni[m][uni[m] == 0] = 0.0  # no negative zeros
        return {"regression": s.astype(np.float32), "unimodal": uni}
    if family == "meld":
        counts = largest_remainder(MELD_CLASS_COUNTS, n)
        c = np.repeat(np.arange(3, dtype=np.int64), counts)
        rng.shuffle(c)
        return {"classification": c}
    if family == "iemocap":
        counts = largest_remainder([1, 1, 1, 1], n)
        c = np.repeat(np.arange(4), counts)
        rng.shuffle(c)
        return {"multilabel": np.eye(4, dtype=np.float32)[c]}
    raise KeyError(family)


def round_class(s: np.ndarray) -> np.ndarray:
    """The `round` rule: neutral iff -0.5 <= s <= 0.5 (np.round halves to even)."""
    return (np.sign(np.round(s)) + 1).astype(np.int64)


def latent(family: str, labels: dict, dg: bool, rng: np.random.Generator,
           modality: str | None = None) -> np.ndarray:
    """The latent sentiment (N, 2) float32 of a split's labels (see the module docstring).

    For SIMS each modality's latent follows its own unimodal score when `modality` is given.
    """
    if "regression" in labels:
        s = labels["regression"].astype(np.float64)
        if family == "sims" and modality is not None:
            s = labels["unimodal"][modality].astype(np.float64)
        v = s if family == "sims" else s / 3.0
        if dg:
            z = CLASS3_CORNERS[round_class(s)].astype(np.float64)
            z[:, 0] += 0.1 * v
            z[:, 1] += 0.1 * np.abs(v)
        else:
            z = np.stack([v, np.abs(v)], axis=1)
    elif "classification" in labels:
        c = labels["classification"]
        z = CLASS3_CORNERS[c] + 0.08 * rng.standard_normal((len(c), 2))
    else:
        c = np.argmax(labels["multilabel"], axis=1)
        z = EMOTION_CORNERS[c] + 0.08 * rng.standard_normal((len(c), 2))
    return np.ascontiguousarray(z, dtype=np.float32)
