"""The synthetic suite: layout, determinism, labels, text, atomic caching, and that the data mean
what they claim (informativeness of the ground-truth features; run with -s for the numbers)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from msabench.core.errors import UserError
from msabench.data import synth
from msabench.data.container import SPLITS, DatasetData

SMALL = 0.02


def folder_digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def small_root(tmp_path_factory):
    """Every preset and the DG suite at a small scale (generated once)."""
    root = tmp_path_factory.mktemp("synth-small")
    for name in ("synth-mosi", "synth-mosei", "synth-sims", "synth-meld", "synth-iemocap", "synth-dg"):
        synth.generate(name, dest=root, scale=SMALL)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def small(name, root):
    return synth.load_synth(name, dest=root, scale=SMALL)


@pytest.fixture(scope="session")
def mosi1(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-mosi1")
    yield synth.load_synth("synth-mosi", dest=root, scale=1.0)
    shutil.rmtree(root, ignore_errors=True)  # 0.8 GB: not left for pytest's tmp retention


@pytest.fixture(scope="session")
def dg(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-dg")
    yield {d: synth.load_synth(f"synth-dg/{d}", dest=root, scale=0.25) for d in synth.DG_DOMAINS}
    shutil.rmtree(root, ignore_errors=True)  # 3.6 GB


# --- names, options, errors ----------------------------------------------------------------------

def test_names():
    assert synth.synth_names() == ["synth-mosi", "synth-mosei", "synth-sims", "synth-meld", "synth-iemocap",
                                   "synth-dg", "synth-dg/mosi", "synth-dg/mosei", "synth-dg/meld"]
    assert synth.DG_DOMAINS == ("mosi", "mosei", "meld")
    assert set(synth.PRESETS) == {"synth-mosi", "synth-mosei", "synth-sims", "synth-meld", "synth-iemocap", "synth-dg"}
    assert synth.PRESETS["synth-sims"].family == "sims" and synth.PRESETS["synth-dg"].family is None


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"unknown synthetic dataset 'synth-mosii'.*synth-mosi"):
        synth.generate("synth-mosii", dest=tmp_path)
    with pytest.raises(UserError, match=r"synth-dg/meld"):
        synth.load_synth("synth-dg/meldd", dest=tmp_path)
    with pytest.raises(UserError, match="scale must be a positive number"):
        synth.generate("synth-mosi", dest=tmp_path, scale=0)
    with pytest.raises(UserError, match="seed"):
        synth.generate("synth-mosi", dest=tmp_path, seed=-1)
    with pytest.raises(UserError, match="noise modality 'x'"):
        synth.generate("synth-mosi", dest=tmp_path, noise_modality="x")
    with pytest.raises(UserError, match="suite of domains.*synth-dg/mosi"):
        synth.load_synth("synth-dg", dest=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written on bad input


# --- layout, shapes, sizes -----------------------------------------------------------------------

SCALE1 = {  # preset: sizes, (dim, max_len) for t, a, v
    "synth-mosi": ((1284, 229, 686), ((768, 50), (5, 375), (20, 500))),
    "synth-mosei": ((16326, 1871, 4659), ((768, 50), (74, 500), (35, 500))),
    "synth-sims": ((1368, 456, 457), ((768, 39), (33, 400), (709, 55))),
    "synth-meld": ((9989, 1109, 2610), ((768, 50), (74, 100), (35, 100))),
    "synth-iemocap": ((2717, 798, 938), ((768, 50), (74, 100), (35, 100))),
    "synth-dg/mosi": ((1284, 229, 686), ((768, 50), (74, 100), (35, 100))),
    "synth-dg/mosei": ((16326, 1871, 4659), ((768, 50), (74, 100), (35, 100))),
    "synth-dg/meld": ((9989, 1109, 2610), ((768, 50), (74, 100), (35, 100))),
}


@pytest.mark.parametrize("name", list(SCALE1))
def test_shapes_and_sizes(name, small_root):
    sizes1, dims = SCALE1[name]
    base, _, domain = name.partition("/")
    spec = synth.PRESETS[base].domains[domain or base.removeprefix("synth-")]
    assert spec.sizes == sizes1 and tuple(spec.dims[m] for m in "tav") == dims
    assert synth.scaled_sizes(spec.sizes, 1.0) == dict(zip(SPLITS, sizes1))
    d = small(name, small_root)
    assert isinstance(d, DatasetData) and d.synthetic and d.name == name
    assert d.family == (domain or base.removeprefix("synth-"))
    meta = json.loads((Path(d.source) / "meta.json").read_text())
    expect = {s: max(8, round(n * SMALL)) for s, n in zip(SPLITS, sizes1)}
    assert meta["sizes"] == expect and meta["hash"] == d.data_hash
    assert d.dims() == {m: dims[i][0] for i, m in enumerate("tav")}
    assert d.max_lens() == {m: dims[i][1] for i, m in enumerate("tav")}
    for split, n in expect.items():
        s = d.splits[split]
        assert len(s) == n and len(set(s.ids)) == n
        assert s.text_feats.shape == (n, dims[0][1], dims[0][0]) and s.text_feats.dtype == np.float32
        assert s.text_ids.shape == (n, dims[0][1]) and s.text_ids.dtype == np.int64
        assert s.audio.shape == (n, dims[1][1], dims[1][0]) and s.vision.shape == (n, dims[2][1], dims[2][0])
        assert isinstance(s.audio, np.memmap) and not s.audio.flags.writeable
        assert len(s.raw_text) == n
    all_ids = np.concatenate([d.splits[s].ids for s in SPLITS])
    assert len(set(all_ids)) == len(all_ids)


def test_scale_rounding(small_root):
    assert synth.scaled_sizes((1284, 229, 686), 0.02) == {"train": 26, "valid": 8, "test": 14}
    assert synth.scaled_sizes((1284, 229, 686), 0.5) == {"train": 642, "valid": 114, "test": 343}


def test_pickle_is_mmsa_layout_and_matches_arrays(small_root):
    from msabench.data.safe_pickle import ALLOWED_GLOBALS

    folder = synth.generate("synth-sims", dest=small_root, scale=SMALL)
    assert not (folder / "data.pkl").exists()  # one copy of the data unless MMSA's pickle is asked for
    assert synth.generate("synth-sims", dest=small_root, scale=SMALL, mmsa_pickle=True) == folder
    with open(folder / "data.pkl", "rb") as f:
        data = pickle.load(f)  # MMSA reads it with plain pickle.load

    class Restricted(pickle.Unpickler):  # only what real MMSA pickles need
        def find_class(self, module, name):
            assert (module, name) in ALLOWED_GLOBALS, (module, name)
            return super().find_class(module, name)

    with open(folder / "data.pkl", "rb") as f:
        Restricted(f).load()
    assert list(data) == ["train", "valid", "test"]
    keys = {"id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths",
            "regression_labels", "regression_labels_T", "regression_labels_A", "regression_labels_V"}
    for split, part in data.items():
        assert set(part) == keys
        n = len(part["id"])
        assert part["text_bert"].shape == (n, 3, 39) and part["regression_labels"].dtype == np.float32
        assert part["audio"].flags.writeable  # MMSA sets audio[audio == -inf] = 0 in place
        for key, value in part.items():
            if key == "text_bert":  # rebuilt from the token ids and lengths: (ids, mask, zero segments)
                ids = np.load(folder / "arrays" / f"{split}_text_ids.npy")
                lengths = np.load(folder / "arrays" / f"{split}_text_lengths.npy")
                np.testing.assert_array_equal(value[:, 0], ids)
                np.testing.assert_array_equal(value[:, 1].sum(1), lengths)
                assert not value[:, 2].any()
                continue
            np.testing.assert_array_equal(np.asarray(value), np.load(folder / "arrays" / f"{split}_{key}.npy"))
    for name in ("vocab.txt", "ground_truth.json", "meta.json"):
        assert (folder / name).is_file()
    assert "time" not in (folder / "meta.json").read_text()


def test_pickle_stream_roundtrip(tmp_path):
    from msabench.data.synth_io import PickleStream, save_npy

    arrays = [np.zeros(()), np.arange(5), np.ones((2, 3), np.float32), np.ones((1, 2, 1, 2), np.float32),
              np.array([True, False]), np.zeros((0, 3), np.float32), np.arange(4, dtype=np.uint8),
              np.arange(12, dtype=np.float32).reshape(3, 4).T, np.array([[2**40]])]
    with PickleStream(tmp_path / "x.pkl") as p:
        p.begin()
        p.begin("split")
        for i, a in enumerate(arrays):
            p.array(f"a{i}", a)
            save_npy(tmp_path / f"a{i}.npy", a)
        p.plain("ids", ["a", "b", "a"])
        p.end()
        p.end()
    with open(tmp_path / "x.pkl", "rb") as f:
        got = pickle.load(f)["split"]
    assert got["ids"] == ["a", "b", "a"]
    for i, a in enumerate(arrays):
        for b in (got[f"a{i}"], np.load(tmp_path / f"a{i}.npy")):
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_deterministic_bytes(tmp_path):
    a = synth.generate("synth-sims", dest=tmp_path / "a", scale=SMALL, seed=3)
    b = synth.generate("synth-sims", dest=tmp_path / "b", scale=SMALL, seed=3)
    assert a.name == b.name and folder_digest(a) == folder_digest(b)
    c = synth.generate("synth-sims", dest=tmp_path / "a", scale=SMALL, seed=4)
    assert c.name != a.name and folder_digest(c) != folder_digest(a)
    d = synth.generate("synth-sims", dest=tmp_path / "a", scale=SMALL, seed=3, aligned=True)
    assert len({a.name, c.name, d.name}) == 3
    assert synth.generate("synth-sims", dest=tmp_path / "a", scale=SMALL, seed=3) == a  # reused


# --- labels --------------------------------------------------------------------------------------

def sign_counts(y):
    y = np.asarray(y)
    return [int((y < 0).sum()), int((y == 0).sum()), int((y > 0).sum())]


def test_mosi_labels(mosi1, small_root):
    tr, te, va = (np.asarray(mosi1.splits[s].regression) for s in ("train", "test", "valid"))
    assert sign_counts(tr) == [552, 53, 679] and sign_counts(te) == [379, 30, 277]
    assert sign_counts(va) == [92, 13, 124]
    assert np.bincount(np.sign(np.round(te)).astype(int) + 1).tolist() == [347, 106, 233]  # `round` rule
    y = np.concatenate([tr, te, va])
    assert y.min() >= -3 and y.max() <= 3 and y.dtype == np.float32
    assert {-0.5, 0.5} <= set(y.tolist())
    thirds = np.isclose(y * 3, np.round(y * 3), atol=1e-4) & ~np.isclose(y * 5, np.round(y * 5), atol=1e-4)
    assert thirds.sum() >= 5
    fifths = np.isclose(y * 5, np.round(y * 5), atol=1e-4)
    assert 0.8 < fifths.mean() < 0.95  # mostly 0.2 steps, not only
    # other scales keep each split's proportions
    small_tr = np.asarray(small("synth-mosi", small_root).splits["train"].regression)
    assert sign_counts(small_tr) == [11, 1, 14]


def test_other_labels(small_root):
    mosei = np.asarray(small("synth-mosei", small_root).splits["train"].regression)
    assert np.allclose(mosei * 3, np.round(mosei * 3), atol=1e-4) and np.abs(mosei).max() <= 3
    sims = small("synth-sims", small_root).splits["train"]
    for y in (sims.regression, *sims.unimodal.values()):
        y = np.asarray(y)
        assert np.allclose(y * 5, np.round(y * 5), atol=1e-5) and np.abs(y).max() <= 1
    assert set(sims.unimodal) == {"t", "a", "v"}
    meld = small("synth-meld", small_root)
    assert meld.label_kind == "classification"
    y = np.asarray(meld.splits["train"].classification)
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [59, 94, 47]  # 2945/4710/2334 at 0.02
    iemo = small("synth-iemocap", small_root)
    y = np.asarray(iemo.splits["train"].multilabel)
    assert iemo.label_kind == "multilabel" and y.shape[1] == 4 and (y.sum(1) == 1).all()
    assert np.bincount(y.argmax(1)).tolist() == [14, 14, 13, 13]
    assert small("synth-dg/meld", small_root).label_kind == "classification"
    assert small("synth-dg/mosei", small_root).label_kind == "regression"


# --- text ----------------------------------------------------------------------------------------

def test_vocab_and_tokens(small_root):
    d = small("synth-dg/meld", small_root)
    v = d.vocab
    assert (v[0], v[100], v[101], v[102], v[103]) == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert d.special_ids == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    assert len(set(v)) == len(v) and all(re.fullmatch(r"[a-z]+", w) for w in v[104:])
    lookup = {w: i for i, w in enumerate(v)}
    folder = synth.generate("synth-dg/meld", dest=small_root, scale=SMALL, mmsa_pickle=True)
    with open(folder / "data.pkl", "rb") as f:
        bert = pickle.load(f)["train"]["text_bert"]
    s = d.splits["train"]
    for i, text in enumerate(s.raw_text):
        ids = [101] + [lookup[w] for w in text.split(" ")] + [102]  # whitespace + vocab lookup
        n = len(ids)
        assert n == s.text_lengths[i]
        assert bert[i, 0, :n].tolist() == ids and not bert[i, 0, n:].any()
        assert bert[i, 1].tolist() == [1] * n + [0] * (50 - n) and not bert[i, 2].any()
        assert s.text_ids[i].tolist() == bert[i, 0].tolist()


def test_padding_is_zero_and_real_positions_are_not(small_root):
    for name in ("synth-mosi", "synth-sims", "synth-dg/mosei"):
        s = small(name, small_root).splits["valid"]
        for x, lengths in ((s.text_feats, s.text_lengths), (s.audio, s.audio_lengths), (s.vision, s.vision_lengths)):
            pos = np.arange(x.shape[1])[None, :]
            pad = pos >= np.asarray(lengths)[:, None]
            assert not np.asarray(x)[pad].any()
            assert (np.abs(np.asarray(x)[~pad]).sum(-1) > 0).all()
            assert (np.asarray(lengths) >= 1).all() and (np.asarray(lengths) <= x.shape[1]).all()


# --- options -------------------------------------------------------------------------------------

def test_aligned(tmp_path):
    d = synth.load_synth("synth-mosei", dest=tmp_path, scale=0.005, aligned=True)
    assert d.max_lens() == {"t": 50, "a": 50, "v": 50}
    for s in d.splits.values():
        np.testing.assert_array_equal(s.audio_lengths, s.text_lengths)
        np.testing.assert_array_equal(s.vision_lengths, s.text_lengths)
    assert json.loads((next(tmp_path.glob("synth-mosei-*")) / "meta.json").read_text())["options"]["aligned"]


def test_noise_modality(tmp_path, small_root):
    clean = small("synth-mosi", small_root)
    noisy = synth.load_synth("synth-mosi", dest=tmp_path, scale=SMALL, noise_modality="v")
    assert noisy.data_hash != clean.data_hash
    gt = noisy.ground_truth
    assert gt["noise_modality"] == "v" and gt["modalities"]["v"]["pure_noise"]
    assert gt["modalities"]["v"]["invariant"] == [] and not gt["modalities"]["t"]["pure_noise"]
    for split in SPLITS:
        a, b = clean.splits[split], noisy.splits[split]
        np.testing.assert_array_equal(a.text_feats, b.text_feats)  # the other modalities are untouched
        np.testing.assert_array_equal(a.audio, b.audio)
        x = np.asarray(b.vision)[np.arange(b.vision.shape[1])[None, :] < np.asarray(b.vision_lengths)[:, None]]
        assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01  # standard normal
    t = synth.load_synth("synth-mosi", dest=tmp_path, scale=SMALL, noise_modality="t")
    assert t.ground_truth["modalities"]["t"]["pure_noise"]
    np.testing.assert_array_equal(t.splits["train"].audio, clean.splits["train"].audio)


def test_ground_truth(small_root):
    d = small("synth-dg/mosi", small_root)
    gt = d.ground_truth
    assert gt["generator_version"] == synth.GENERATOR_VERSION and gt["domain"] == "mosi"
    for m, dim in d.dims().items():
        g = gt["modalities"][m]
        inv, sp, sty = set(g["invariant"]), set(g["spurious"]), set(g["style"])
        assert inv and sp and sty and not (inv & sp or inv & sty or sp & sty)
        assert max(inv | sp | sty) < dim == g["dim"]
        assert set(g["spurious_coef"]) == set(synth.DG_DOMAINS) == set(g["style_offset"])
        coefs = [np.array(g["spurious_coef"][dom]) for dom in synth.DG_DOMAINS]
        assert all(c.shape == (len(sp), 2) for c in coefs)
        # the domains' spurious directions are mutually orthogonal: no transfer
        assert abs(float((coefs[0] * coefs[1]).sum())) < 1e-4
    top = json.loads((Path(d.source).parent / "meta.json").read_text())
    assert top["domains"] == list(synth.DG_DOMAINS)


# --- cache and atomicity -------------------------------------------------------------------------

def test_cache_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE", str(tmp_path / "cache"))
    folder = synth.generate("synth-iemocap", scale=0.005)
    assert folder.parent == tmp_path / "cache" / "synth" and folder.name.startswith("synth-iemocap-")
    assert re.fullmatch(r"synth-iemocap-[0-9a-f]{16}", folder.name)
    before = (folder / "arrays" / "train_text.npy").stat().st_mtime_ns
    assert synth.generate("synth-iemocap", scale=0.005) == folder
    assert (folder / "arrays" / "train_text.npy").stat().st_mtime_ns == before  # reused, not rewritten


def test_interrupted_generation_leaves_no_complete_folder(tmp_path, monkeypatch):
    from msabench.data import synth_scm

    calls = {"n": 0}
    real = synth_scm.fill_modality

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # an interruption halfway through
        return real(*args, **kwargs)

    monkeypatch.setattr(synth_scm, "fill_modality", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate("synth-mosi", dest=tmp_path, scale=SMALL)
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone, no final folder
    monkeypatch.setattr(synth_scm, "fill_modality", real)
    # a killed run's leftover temp (with files that look finished) is never taken as complete
    digest = synth.options_hash("synth-mosi", {"seed": 0, "scale": SMALL, "aligned": False, "noise_modality": None})
    final = f"synth-mosi-{digest}"
    other = tmp_path / f".{final}.tmp-otherhost-1-abcdef12"
    dead = tmp_path / f".{final}.tmp-{socket.gethostname()}-{2**22 + 7}-abcdef12"
    for leftover in (other, dead):
        leftover.mkdir()
        (leftover / "meta.json").write_text(json.dumps({"hash": digest, "generator_version": synth.GENERATOR_VERSION}))
    folder = synth.generate("synth-mosi", dest=tmp_path, scale=SMALL)
    assert folder.name == final and (folder / "arrays" / "train_text.npy").stat().st_size > 0
    assert other.exists() and not dead.exists()  # another host's temp is left alone; a dead pid's removed
    # a folder under the final name that is not complete is an error, never silently used
    opts1 = {"seed": 1, "scale": SMALL, "aligned": False, "noise_modality": None}
    broken = tmp_path / f"synth-mosi-{synth.options_hash('synth-mosi', opts1)}"
    broken.mkdir()
    with pytest.raises(UserError, match="not a complete synthetic dataset"):
        synth.generate("synth-mosi", dest=tmp_path, scale=SMALL, seed=1)


def test_container(small_root):
    d = small("synth-sims", small_root)
    assert d.label_kind == "regression" and d.family == "sims" and d.ground_truth["domain"] == "sims"
    s = d.splits["test"]
    assert s.regression.dtype == np.float32 and s.classification is None and s.multilabel is None
    assert s.text_lengths.dtype == np.int64 and s.audio_lengths.dtype == np.int64
    assert isinstance(s.raw_text, list) and isinstance(s.raw_text[0], str)
    assert set(s.unimodal) == {"t", "a", "v"}
    assert os.path.isdir(d.source)


# --- informativeness -----------------------------------------------------------------------------

_POOLED: dict = {}


def pooled(split, which, truth, mods="tav"):
    """Time-mean-pooled input features over real positions, optionally restricted by ground truth."""
    out = []
    for m in mods:
        key = (id(split), m)
        if key not in _POOLED:
            x = np.asarray(split.text_feats if m == "t" else split.audio if m == "a" else split.vision)
            lengths = np.asarray(split.modality(m)[1])
            real = (np.arange(x.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
            _POOLED[key] = (split, np.einsum("ntd,nt->nd", x, real) / lengths[:, None])
        p = _POOLED[key][1]
        out.append(p if which == "all" else p[:, truth["modalities"][m][which]])
    return np.concatenate(out, axis=1)


def ridge_acc2(d, which, mods="tav"):
    """Ridge regression on standardised pooled features, alpha chosen on the valid split (MSE);
    test Acc-2 (has0: true >= 0 vs pred >= 0)."""
    x = {s: pooled(d.splits[s], which, d.ground_truth, mods).astype(np.float64) for s in SPLITS}
    y = {s: np.asarray(d.splits[s].regression, dtype=np.float64) for s in SPLITS}
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-12
    x = {s: (v - mean) / std for s, v in x.items()}
    lam, vec = np.linalg.eigh(x["train"].T @ x["train"])
    proj = vec.T @ (x["train"].T @ (y["train"] - y["train"].mean()))
    best = None
    for alpha in np.logspace(-2, 4, 13) * len(y["train"]) / 100:
        w = vec @ (proj / (lam + alpha))
        mse = np.mean((x["valid"] @ w + y["train"].mean() - y["valid"]) ** 2)
        if best is None or mse < best[0]:
            best = (mse, w)
    pred = x["test"] @ best[1] + y["train"].mean()
    return float(np.mean((y["test"] >= 0) == (pred >= 0)))


def test_informativeness_mosi(mosi1):
    from threadpoolctl import threadpool_limits

    threads = threadpool_limits(1)  # BLAS threads oversubscribe a small shared machine
    true = np.asarray(mosi1.splits["test"].regression)
    majority = max(np.mean(true >= 0), np.mean(true < 0))
    acc = {(mods, which): ridge_acc2(mosi1, which, mods)
           for mods, which in [("tav", "all"), ("tav", "invariant"), ("tav", "spurious"),
                               ("t", "all"), ("a", "all"), ("v", "all")]}
    print(f"\nsynth-mosi scale 1, ridge on pooled features, test Acc-2 (has0): majority {majority:.3f}")
    for (mods, which), a in acc.items():
        print(f"  {mods:>3} {which:<9} {a:.3f}")
    threads.restore_original_limits()
    assert acc["tav", "all"] >= 0.8 * acc["tav", "invariant"]
    assert min(acc["tav", "all"], acc["tav", "invariant"]) >= majority + 0.15
    assert acc["t", "all"] >= acc["a", "all"] + 0.05
    assert acc["t", "all"] > acc["v", "all"] > acc["a", "all"]  # text most, audio least informative


def class3(split):
    if split.classification is not None:
        return np.asarray(split.classification)
    return (np.sign(np.round(np.asarray(split.regression))) + 1).astype(np.int64)  # `round` rule


@pytest.mark.slow
def test_dg_spurious_features_do_not_transfer_invariant_ones_do(dg):
    """Logistic regression on one domain's train split; source accuracy on its valid+test splits,
    target accuracy on the target's valid+test splits, next to the target's own in-domain model there
    (its label priors differ from the source's, which costs a noisy classifier some accuracy that has
    nothing to do with the features transferring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    threads = threadpool_limits(1)
    held_out = ("valid", "test")

    def acc(model, d, which):
        x = np.concatenate([pooled(d.splits[s], which, d.ground_truth) for s in held_out])
        y = np.concatenate([class3(d.splits[s]) for s in held_out])
        return float(np.mean(model.predict(x) == y))

    result, own = {}, {}
    print("\nsynth-dg scale 0.25, 3-class accuracy (rule `round`), logistic regression, t+a+v pooled: "
          "source / target (the target's in-domain model)")
    for which in ("spurious", "invariant", "all"):
        models = {}
        for src, ds in dg.items():
            tr = ds.splits["train"]
            models[src] = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            models[src].fit(pooled(tr, which, ds.ground_truth), class3(tr))
            own[which, src] = acc(models[src], ds, which)
        for src in dg:
            for tgt, dt in dg.items():
                if tgt != src:
                    result[which, src, tgt] = (own[which, src], acc(models[src], dt, which))
        print(f"  {which:<9} " + "  ".join(f"{s}->{t} {a:.3f}/{b:.3f} ({own[which, t]:.3f})"
                                           for (w, s, t), (a, b) in result.items() if w == which))
    threads.restore_original_limits()
    for (which, src, tgt), (a, b) in result.items():
        if which == "spurious":
            assert a - b >= 0.10, (src, tgt, a, b)
            assert a > result["invariant", src, tgt][0]  # tempting: more predictive in-domain
        elif which == "invariant":  # transferred: near the target's own model. Not equal: the
            # domains keep their real label priors (neutral: MOSI 15%, MELD 47%), and since revision
            # 1 no modality separates the classes alone, so a source's priors cost up to ~7 points
            assert own[which, tgt] - b <= 0.08, (src, tgt, own[which, tgt], b)
        else:  # a model on all features leans on the spurious ones and transfers worse
            assert b < result["invariant", src, tgt][1]
