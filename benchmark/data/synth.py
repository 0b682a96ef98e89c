"""The synthetic suite (design section 5): presets, generation into a cache folder, loading.

Presets `synth-mosi`, `synth-mosei`, `synth-sims`, `synth-meld`, `synth-iemocap` and the
domain-generalisation suite `synth-dg` (domains `synth-dg/mosi`, `synth-dg/mosei`,
`synth-dg/meld`). Shapes and split sizes follow the real files at scale 1; labels follow the real
distributions (`synth_labels`); features come from a structural causal model (`synth_scm`), text
from a small WordPiece vocabulary (`synth_text`).

Folder: `<root>/<preset>-<hash>/` where root is `dest` when given, else
`$MSABENCH_CACHE/synth` (default `~/.cache/msabench/synth`), and the hash covers every generation
option and GENERATOR_VERSION. It holds `data.pkl` (MMSA layout), `arrays/<split>_<key>.npy`,
`vocab.txt`, `ground_truth.json`, `meta.json`; for `synth-dg` one such folder per domain
(`mosi/`, `mosei/`, `meld/`) plus a top-level `meta.json` and `ground_truth.json`.
Generation writes into a temporary folder beside the final one and renames it into place, so a
folder under the final name is always complete. Same options and version => identical bytes
(for the same numpy version: the draws are numpy's PCG64 and float32 normal sampler).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msabench.data import synth_labels as sl
from msabench.data import synth_scm as scm
from msabench.data import synth_text as st
from msabench.data.container import SPLITS, DatasetData, SplitData
from msabench.data.synth_io import PickleStream, save_npy
from msabench.errors import UserError, did_you_mean

GENERATOR_VERSION = 1
DG_DOMAINS = ("mosi", "mosei", "meld")
NOISE_MODALITIES = ("t", "a", "v")
LABEL_KINDS = {"mosi": "regression", "mosei": "regression", "sims": "regression",
               "meld": "classification", "iemocap": "multilabel"}
LABEL_KEYS = {"regression": "regression_labels", "classification": "classification_labels",
              "multilabel": "multilabel_labels"}
_SIZES = {"mosi": (1284, 229, 686), "mosei": (16326, 1871, 4659), "sims": (1368, 456, 457),
          "meld": (9989, 1109, 2610), "iemocap": (2717, 798, 938)}
# modality -> (feature dim, max length)
_MMSA_DIMS = {
    "mosi": {"t": (768, 50), "a": (5, 375), "v": (20, 500)},
    "mosei": {"t": (768, 50), "a": (74, 500), "v": (35, 500)},
    "sims": {"t": (768, 39), "a": (33, 400), "v": (709, 55)},
}
DG_DIMS = {"t": (768, 50), "a": (74, 100), "v": (35, 100)}


@dataclass(frozen=True)
class DomainSpec:
    family: str
    label_kind: str
    sizes: tuple[int, int, int]  # train, valid, test at scale 1
    dims: dict  # modality -> (dim, max_len)


@dataclass(frozen=True)
class Preset:
    name: str
    domains: dict  # domain name -> DomainSpec (one entry named after the family, or DG_DOMAINS)

    @property
    def dg(self) -> bool:
        return len(self.domains) > 1

    @property
    def family(self) -> str | None:
        return None if self.dg else next(iter(self.domains.values())).family


def _spec(family: str, dims: dict) -> DomainSpec:
    return DomainSpec(family, LABEL_KINDS[family], _SIZES[family], dims)


PRESETS: dict[str, Preset] = {
    **{f"synth-{f}": Preset(f"synth-{f}", {f: _spec(f, _MMSA_DIMS[f])}) for f in ("mosi", "mosei", "sims")},
    **{f"synth-{f}": Preset(f"synth-{f}", {f: _spec(f, DG_DIMS)}) for f in ("meld", "iemocap")},
    "synth-dg": Preset("synth-dg", {d: _spec(d, DG_DIMS) for d in DG_DOMAINS}),
}


def synth_names() -> list[str]:
    """Every synthetic name: the five presets, `synth-dg` and its domains `synth-dg/<domain>`."""
    names = [n for n in PRESETS if n != "synth-dg"] + ["synth-dg"]
    return names + [f"synth-dg/{d}" for d in DG_DOMAINS]


def scaled_sizes(sizes, scale: float) -> dict[str, int]:
    """Split sizes at `scale`: round(n * scale), at least 8 per split."""
    return {s: max(8, int(round(n * scale))) for s, n in zip(SPLITS, sizes)}


# --- options, hash, folders ---------------------------------------------------------------------

def _resolve(name) -> tuple[str, str | None]:
    if not isinstance(name, str) or name not in synth_names():
        raise UserError(f"unknown synthetic dataset {name!r}." + did_you_mean(str(name), synth_names()))
    base, _, domain = name.partition("/")
    return base, (domain or None)


def _options(seed, scale, aligned, noise_modality) -> dict:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise UserError(f"synthetic data: seed must be a non-negative integer, got {seed!r}.")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
        raise UserError(f"synthetic data: scale must be a positive number, got {scale!r}.")
    if not isinstance(aligned, (bool, np.bool_)):
        raise UserError(f"synthetic data: aligned must be true or false, got {aligned!r}.")
    if noise_modality is not None and noise_modality not in NOISE_MODALITIES:
        raise UserError(f"synthetic data: unknown noise modality {noise_modality!r}; use t, a or v."
                        + did_you_mean(str(noise_modality), NOISE_MODALITIES))
    return {"seed": int(seed), "scale": float(scale), "aligned": bool(aligned),
            "noise_modality": noise_modality}


def options_hash(preset: str, options: dict) -> str:
    """Hash of every generation option and the generator version (names the cache folder)."""
    key = {"preset": preset, "generator_version": GENERATOR_VERSION, **options}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_root(dest=None) -> Path:
    """Where synthetic folders go: `dest`, else `$MSABENCH_CACHE/synth` (~/.cache/msabench)."""
    if dest is not None:
        return Path(dest).expanduser()
    env = os.environ.get("MSABENCH_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "msabench"
    return base / "synth"


def _is_complete(folder: Path, digest: str) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("hash") == digest and meta.get("generator_version") == GENERATOR_VERSION


def _remove_stale_temps(root: Path, final_name: str) -> None:
    """Remove temp folders of this dataset left by dead processes on this host."""
    host = socket.gethostname()
    prefix = f".{final_name}.tmp-"
    for tmp in root.glob(prefix + "*"):
        parts = tmp.name[len(prefix):].rsplit("-", 2)  # host, pid, token
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def generate(preset: str, *, dest: str | Path | None = None, seed: int = 0, scale: float = 1.0,
             aligned: bool = False, noise_modality: str | None = None) -> Path:
    """Generate a synthetic dataset (or reuse the complete cached one); return its folder.

    `preset` may name a DG domain (`synth-dg/mosi`): the whole suite is generated and the
    domain's sub-folder returned.
    """
    base, domain = _resolve(preset)
    opts = _options(seed, scale, aligned, noise_modality)
    digest = options_hash(base, opts)
    root = cache_root(dest)
    folder = root / f"{base}-{digest}"
    if not _is_complete(folder, digest):
        if folder.exists():
            raise UserError(f"{folder} exists but is not a complete synthetic dataset for these "
                            "options; remove it and run again.")
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(root, folder.name)
        tmp = root / f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _build(tmp, PRESETS[base], opts, digest)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not _is_complete(folder, digest):  # not a concurrent winner: a real failure
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder / domain if domain else folder


# --- generation ---------------------------------------------------------------------------------

def _json_dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _build(folder: Path, preset: Preset, opts: dict, digest: str) -> None:
    first = next(iter(preset.domains.values()))  # the domains share dims and lengths
    dims = {m: d for m, (d, _) in first.dims.items()}
    world = scm.build_world(preset.name, tuple(preset.domains), dims,
                            _max_lens(first, opts["aligned"]), opts["seed"])
    for i, (domain, spec) in enumerate(preset.domains.items()):
        target = folder / domain if preset.dg else folder
        target.mkdir(exist_ok=True)
        _write_domain(target, preset, i, domain, spec, world, opts, digest)
    if preset.dg:
        _json_dump(folder / "ground_truth.json", _ground_truth(world, None, opts))
        _json_dump(folder / "meta.json", {
            "name": preset.name, "preset": preset.name, "domain": None, "domains": list(preset.domains),
            "generator_version": GENERATOR_VERSION, "hash": digest, "options": opts,
            "sizes": {d: scaled_sizes(s.sizes, opts["scale"]) for d, s in preset.domains.items()},
            "dims": dims, "max_lens": _max_lens(first, opts["aligned"]),
        })


def _max_lens(spec: DomainSpec, aligned: bool) -> dict[str, int]:
    t_len = spec.dims["t"][1]
    return {m: (t_len if aligned else spec.dims[m][1]) for m in scm.MODALITIES}


def _ground_truth(world: scm.World, domain: str | None, opts: dict) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "world": world.name,
        "domain": domain,
        "domains": list(world.domains),
        "noise_modality": opts["noise_modality"],
        "modalities": {m: world.truth[m].to_json(m == opts["noise_modality"]) for m in scm.MODALITIES},
        "latent": {
            "dims": ["valence", "intensity (arousal for iemocap)"],
            "from_label": ("round-rule class corners (neg, neu, pos) = "
                           f"{sl.CLASS3_CORNERS.tolist()} + 0.15 * (valence, |valence|)"
                           if world.dg else "regression: (s/3, |s|/3), sims (s, |s|) per modality's "
                           "unimodal score; classes: corners + noise"),
            "expression_noise": world.expression_noise,
        },
        "signal": {
            "invariant": "A_m * W_m @ (z + eta*noise) in key frames: the frames of sentiment words "
                         "(text: the sentiment tokens' embeddings); invariant_coef includes A_m",
            "spurious": "C_{m,d} @ z on every real frame; spurious_coef includes the strength",
            "style": "style_offset[d] on every real frame",
            "noise": "standard normal on every real frame; padding zero",
        },
        "sentiment_words": {w: list(c) for w, c in st.SENTIMENT_WORDS.items()},
    }


def _rng(opts: dict, world: scm.World, *purpose: int) -> np.random.Generator:
    return scm.world_rng(opts["seed"], world.name, *purpose)


def _write_domain(folder: Path, preset: Preset, dom_idx: int, domain: str, spec: DomainSpec,
                  world: scm.World, opts: dict, digest: str) -> None:
    arrays = folder / "arrays"
    arrays.mkdir()
    (folder / "vocab.txt").write_text("\n".join(st.VOCAB) + "\n")
    sizes = scaled_sizes(spec.sizes, opts["scale"])
    max_lens = _max_lens(spec, opts["aligned"])
    noise = opts["noise_modality"]

    def put(split: str, key: str, value, in_pickle: bool = True) -> None:
        if isinstance(value, list):
            if in_pickle:
                pkl.plain(key, value)
            save_npy(arrays / f"{split}_{key}.npy", np.array(value, dtype=str))
        else:
            if in_pickle:
                pkl.array(key, value)
            save_npy(arrays / f"{split}_{key}.npy", value)

    with PickleStream(folder / "data.pkl") as pkl:
        pkl.begin()
        for s_idx, split in enumerate(SPLITS):
            n = sizes[split]
            rng = _rng(opts, world, 1, dom_idx, s_idx, 0)
            labels = sl.draw_labels(spec.family, split, n, rng)
            shared = rng.standard_normal((n, 2)) * world.expression_noise
            if spec.family == "sims":  # each modality expresses its own (unimodal) score
                z = {m: sl.latent(spec.family, labels, world.dg, rng, m) for m in scm.MODALITIES}
            else:  # one latent per sample, shared by the modalities
                z = dict.fromkeys(scm.MODALITIES, sl.latent(spec.family, labels, world.dg, rng))
            z_expr = {m: (z[m] + shared).astype(np.float32) for m in scm.MODALITIES}
            utt = st.draw_utterances(z_expr["t"], max_lens["t"], spec.family,
                                     _rng(opts, world, 1, dom_idx, s_idx, 1), noise=noise == "t")
            ids, t_len = utt["ids"], utt["lengths"]
            pkl.begin(split)
            put(split, "id", [f"{domain}_{split}_{i // 8:05d}$_${i % 8 + 1}" for i in range(n)])
            put(split, "raw_text", st.raw_texts(ids, t_len))
            mask = (np.arange(max_lens["t"])[None, :] < t_len[:, None]).astype(np.int64)
            put(split, "text_bert", np.stack([ids, mask, np.zeros_like(ids)], axis=1))
            del mask
            put(split, "text_ids", ids, in_pickle=False)
            put(split, "text_lengths", t_len, in_pickle=False)
            feats = np.zeros((n, max_lens["t"], spec.dims["t"][0]), dtype=np.float32)
            scm.fill_modality(feats, t_len, "t", world, domain, z["t"], z_expr["t"], None, ids,
                              _rng(opts, world, 1, dom_idx, s_idx, 2), noise == "t")
            put(split, "text", feats)
            del feats
            for k, (m, key) in enumerate((("a", "audio"), ("v", "vision"))):
                r = _rng(opts, world, 1, dom_idx, s_idx, 3 + k)
                if opts["aligned"]:
                    lengths = t_len.copy()
                else:
                    lengths = scm.frame_lengths(t_len, max_lens["t"], max_lens[m], r)
                frames = scm.key_frames(utt["key"], t_len, lengths, max_lens[m], opts["aligned"])
                x = np.zeros((n, max_lens[m], spec.dims[m][0]), dtype=np.float32)
                scm.fill_modality(x, lengths, m, world, domain, z[m], z_expr[m], frames, None, r, noise == m)
                put(split, key, x)
                del x
                put(split, f"{key}_lengths", lengths)
            label_key = LABEL_KEYS[spec.label_kind]
            put(split, label_key, labels[spec.label_kind])
            for m, value in labels.get("unimodal", {}).items():
                put(split, f"regression_labels_{m.upper()}", value)
            pkl.end()
        pkl.end()
    _json_dump(folder / "ground_truth.json", _ground_truth(world, domain, opts))
    name = f"{preset.name}/{domain}" if preset.dg else preset.name
    _json_dump(folder / "meta.json", {
        "name": name, "preset": preset.name, "domain": domain if preset.dg else None,
        "family": spec.family, "label_kind": spec.label_kind, "generator_version": GENERATOR_VERSION,
        "hash": digest, "options": opts, "sizes": sizes,
        "dims": {m: spec.dims[m][0] for m in scm.MODALITIES}, "max_lens": max_lens,
        "vocab_size": len(st.VOCAB), "special_ids": st.SPECIAL_IDS,
        "aligned_layout": "aligned_50" if opts["aligned"] else "unaligned",
    })


# --- loading ------------------------------------------------------------------------------------

def load_synth(name: str, *, seed: int = 0, scale: float = 1.0, aligned: bool = False,
               noise_modality: str | None = None, dest=None) -> DatasetData:
    """Generate if needed and load one synthetic dataset (arrays memory-mapped, read-only)."""
    base, domain = _resolve(name)
    if PRESETS[base].dg and domain is None:
        raise UserError(f"{name} is a suite of domains; load one of: "
                        + ", ".join(f"{name}/{d}" for d in DG_DOMAINS) + ".")
    folder = generate(name, dest=dest, seed=seed, scale=scale, aligned=aligned,
                      noise_modality=noise_modality)
    meta = json.loads((folder / "meta.json").read_text())
    truth = json.loads((folder / "ground_truth.json").read_text())
    vocab = (folder / "vocab.txt").read_text().split("\n")[:-1]
    arrays = folder / "arrays"
    kind = meta["label_kind"]

    def arr(split: str, key: str, mmap: bool = True):
        path = arrays / f"{split}_{key}.npy"
        if not path.exists():
            return None
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    splits = {}
    for split in SPLITS:
        uni = {m: arr(split, f"regression_labels_{m.upper()}") for m in "tav"}
        labels = {k: arr(split, LABEL_KEYS[k]) for k in LABEL_KEYS}
        splits[split] = SplitData(
            ids=arr(split, "id", mmap=False),
            regression=labels["regression"],
            classification=labels["classification"],
            multilabel=labels["multilabel"],
            text_ids=arr(split, "text_ids"),
            text_feats=arr(split, "text"),
            text_lengths=arr(split, "text_lengths"),
            audio=arr(split, "audio"),
            audio_lengths=arr(split, "audio_lengths"),
            vision=arr(split, "vision"),
            vision_lengths=arr(split, "vision_lengths"),
            raw_text=arr(split, "raw_text", mmap=False).tolist(),
            unimodal={m: v for m, v in uni.items() if v is not None},
        )
    return DatasetData(
        name=name, family=meta["family"], splits=splits, label_kind=kind, synthetic=True,
        data_hash=meta["hash"], vocab=vocab, special_ids=dict(st.SPECIAL_IDS), source=str(folder),
        ground_truth=truth,
    )
