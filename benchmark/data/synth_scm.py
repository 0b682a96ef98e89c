"""The structural causal model behind the synthetic suite's input features.

A *world* (one preset, or the whole DG suite) fixes, per modality, which input dimensions are

* **invariant** causes of the label: `A_m * W_m @ z_expr_m` with the same coefficients `W_m`
  (n_inv, 2) in every domain, where `z_expr_m = z + eta * noise` is the latent sentiment as the
  speaker expresses it (the noise is shared by the modalities and caps what any model can reach;
  in the DG suite each modality adds noise of its own, `eta_m * noise_m`, so that the modalities
  complement each other);
  the signal sits in the *key frames* only: the frames spoken during sentiment words (for text:
  the sentiment tokens themselves, through their embedding);
* **spurious**: `B_{m,d} * C_{m,d} @ z` on every real frame, with a domain-specific direction
  `C_{m,d}` (n_sp, 2) and strength `B_{m,d}`. Across the DG domains the directions are mutually
  orthogonal (drawn, then orthogonalised), so a model fitted on one domain's spurious features
  reads noise on another; in the DG suite they are stronger than the invariant signal
  (tempting: more predictive in-domain);
* **style**: a domain-specific offset on every real frame;
* the rest **noise**. Every real frame also gets standard normal noise; padding stays zero.

Text is the most informative modality and audio the least (amplitudes below).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from msabench.data import synth_text as st

MODALITIES = ("t", "a", "v")
# Invariant amplitude per key frame (text: per sentiment token), spurious amplitude per frame.
# Per-frame amplitudes are AMP * sqrt(REF_LEN / max_len): the time-mean over real frames then has
# the same signal-to-noise whatever the preset's sequence length (calibrated on MOSI's lengths).
REF_LEN = {"t": 50, "a": 375, "v": 500}
AMP_INV = {"t": 6.0, "a": 0.55, "v": 0.6}
AMP_SP = {"t": 0.06, "a": 0.04, "v": 0.05}
AMP_INV_DG = {"t": 10.0, "a": 0.41, "v": 0.9}
AMP_SP_DG = {"t": 1.0, "a": 0.26, "v": 0.31}
EXPRESSION_NOISE = 0.06  # eta, in latent units (single presets)
EXPRESSION_NOISE_DG = 0.08
# DG suite: each modality also expresses the sentiment with noise of its own (eta_m), so vision and
# audio inform where the words are ambiguous, as in real MSA data. With the shared noise alone,
# text's invariant features left nothing for vision's to add, and a model that conditions vision on
# text (S2LIF's T->V) rightly kept no vision feature (docs/architecture.md §5, "synth-dg revision 1").
OWN_EXPRESSION_NOISE_DG = {"t": 0.35, "a": 0.25, "v": 0.25}
STYLE_SCALE = 1.5
WORD_IDENTITY = 0.5  # scale of a word's random embedding on the non-invariant dims


def feature_counts(dim: int, n_domains: int) -> tuple[int, int, int]:
    """(invariant, spurious, style) counts for a modality of `dim` input features."""
    k = int(min(24, max(1, round(0.1 * dim))))
    n_sp = k
    if n_domains > 1 and dim >= 4 * 2 * n_domains:
        n_sp = max(k, 2 * n_domains)  # room for mutually orthogonal per-domain directions
    return k, n_sp, k


@dataclass
class ModalityTruth:
    dim: int
    invariant: np.ndarray
    spurious: np.ndarray
    style: np.ndarray
    inv_coef: np.ndarray  # (n_inv, 2)
    sp_coef: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> (n_sp, 2), scaled
    style_offset: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> (n_style,)

    def to_json(self, pure_noise: bool) -> dict:
        if pure_noise:
            return {"dim": self.dim, "pure_noise": True, "invariant": [], "spurious": [],
                    "style": [], "invariant_coef": [], "spurious_coef": {}, "style_offset": {}}
        f = lambda a: np.asarray(a, dtype=np.float64).round(6).tolist()  # noqa: E731
        return {
            "dim": self.dim,
            "pure_noise": False,
            "invariant": self.invariant.tolist(),
            "spurious": self.spurious.tolist(),
            "style": self.style.tolist(),
            "invariant_coef": f(self.inv_coef),
            "spurious_coef": {d: f(c) for d, c in self.sp_coef.items()},
            "style_offset": {d: f(o) for d, o in self.style_offset.items()},
        }


@dataclass
class World:
    name: str
    domains: tuple[str, ...]
    dims: dict[str, int]
    truth: dict[str, ModalityTruth]
    embedding: np.ndarray  # (V, D_t) float32 token embeddings
    expression_noise: float
    dg: bool


def world_rng(seed: int, name: str, *purpose: int) -> np.random.Generator:
    key = (zlib.crc32(name.encode()),) + tuple(purpose)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def _unit_columns(g: np.ndarray) -> np.ndarray:
    return g / np.linalg.norm(g, axis=0, keepdims=True)


def build_world(name: str, domains: tuple[str, ...], dims: dict[str, int], max_lens: dict[str, int],
                seed: int) -> World:
    """The SCM's parameters for `dims` (feature dims) and `max_lens` (sequence lengths)."""
    rng = world_rng(seed, name, 0)
    dg = len(domains) > 1
    truth = {}
    for m in MODALITIES:
        dim = dims[m]
        gain = float(np.sqrt(REF_LEN[m] / max_lens[m]))
        n_inv, n_sp, n_sty = feature_counts(dim, len(domains))
        perm = rng.permutation(dim)
        inv = np.sort(perm[:n_inv])
        sp = np.sort(perm[n_inv : n_inv + n_sp])
        sty = np.sort(perm[n_inv + n_sp : n_inv + n_sp + n_sty])
        w = gain * (AMP_INV_DG if dg else AMP_INV)[m] * _unit_columns(rng.standard_normal((n_inv, 2)))
        amp_sp = gain * (AMP_SP_DG if dg else AMP_SP)[m]
        g = rng.standard_normal((n_sp, 2 * len(domains)))
        if n_sp >= 2 * len(domains):
            g = np.linalg.qr(g)[0]
        g = _unit_columns(g)
        strength = rng.uniform(0.8, 1.2, size=len(domains))
        sp_coef = {d: amp_sp * strength[i] * g[:, 2 * i : 2 * i + 2] for i, d in enumerate(domains)}
        offsets = {d: STYLE_SCALE * rng.standard_normal(n_sty) for d in domains}
        truth[m] = ModalityTruth(dim, inv, sp, sty, w, sp_coef, offsets)
    # token embeddings: sentiment words carry the invariant signal; every word has an identity
    t = truth["t"]
    emb = (WORD_IDENTITY * rng.standard_normal((len(st.VOCAB), dims["t"]))).astype(np.float32)
    emb[:, t.invariant] = (st.WORD_COORDS @ t.inv_coef.T).astype(np.float32)
    emb[:, t.spurious] = 0.0
    emb[:, t.style] = 0.0
    emb[st.SPECIAL_IDS["pad"]] = 0.0
    return World(name, domains, dict(dims), truth, emb,
                 EXPRESSION_NOISE_DG if dg else EXPRESSION_NOISE, dg)


def key_frames(text_key: np.ndarray, text_lengths: np.ndarray, lengths: np.ndarray,
               max_len: int, aligned: bool) -> np.ndarray:
    """(N, max_len) bool: the frames spoken during the sentiment words."""
    if aligned:
        return text_key[:, :max_len].copy()
    rows, pos = np.nonzero(text_key)
    ntok = text_lengths[rows]
    length = lengths[rows]
    start = (pos * length) // ntok
    end = np.maximum(start + 1, ((pos + 1) * length) // ntok)
    diff = np.zeros((len(text_key), max_len + 1), dtype=np.int32)
    np.add.at(diff, (rows, start), 1)
    np.add.at(diff, (rows, end), -1)
    return np.cumsum(diff, axis=1)[:, :max_len] > 0


def frame_lengths(text_lengths: np.ndarray, text_max: int, max_len: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Frames per utterance: proportional to its tokens, with jitter, within [2, max_len]."""
    rate = max_len / text_max
    jitter = np.exp(0.2 * rng.standard_normal(len(text_lengths)))
    return np.clip(np.round(text_lengths * rate * jitter), 2, max_len).astype(np.int64)


def _signal_layout(world: World, m: str, domain: str):
    t = world.truth[m]
    idx = np.concatenate([t.invariant, t.spurious, t.style])
    return t, idx


def fill_modality(out: np.ndarray, lengths: np.ndarray, m: str, world: World, domain: str,
                  z: np.ndarray, z_expr: np.ndarray, key: np.ndarray | None,
                  ids: np.ndarray | None, rng: np.random.Generator, pure_noise: bool) -> None:
    """Fill `out` (N, T, D) float32, zero-initialised, in place, one sample at a time.

    Only real positions are written (padding pages stay untouched zeros). For text, `ids` gives
    the tokens whose embeddings carry the invariant signal; for audio and vision, `key` marks
    the key frames that carry it.
    """
    n = len(lengths)
    if pure_noise:
        for i in range(n):
            rng.standard_normal(out=out[i, : lengths[i]], dtype=np.float32)
        return
    t, idx = _signal_layout(world, m, domain)
    n_inv, n_sp = len(t.invariant), len(t.spurious)
    sp = (z.astype(np.float64) @ t.sp_coef[domain].T).astype(np.float32)  # (N, n_sp)
    sty = t.style_offset[domain].astype(np.float32)
    if m == "t":
        side = np.concatenate([t.spurious, t.style])
        row = np.empty(len(side), dtype=np.float32)
        row[n_sp:] = sty
        emb = world.embedding
        for i in range(n):
            length = lengths[i]
            x = out[i, :length]
            rng.standard_normal(out=x, dtype=np.float32)
            x += emb[ids[i, :length]]
            row[:n_sp] = sp[i]
            x[:, side] += row
        return
    inv = (z_expr.astype(np.float64) @ t.inv_coef.T).astype(np.float32)  # (N, n_inv)
    block = np.empty((out.shape[1], len(idx)), dtype=np.float32)
    block[:, n_inv + n_sp :] = sty
    for i in range(n):
        length = lengths[i]
        x = out[i, :length]
        rng.standard_normal(out=x, dtype=np.float32)
        b = block[:length]
        np.multiply(key[i, :length, None], inv[i], out=b[:, :n_inv])
        b[:, n_inv : n_inv + n_sp] = sp[i]
        x[:, idx] += b
