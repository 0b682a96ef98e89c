"""Missing-modality drop masks with EMT-DLFR semantics (docs/architecture.md §5)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from msabench.core.errors import UserError
from msabench.data.container import SplitData
from msabench.data.masks import DEFAULT_MASK_SEEDS, apply_drop, drop_masks, mask_hash, mask_rng_seed, split_masks

LENGTHS = np.array([5, 1, 2, 8, 0, 3, 7, 8])
T = 8
KEY = dict(dataset="mosi", split="test")


def test_default_seeds():
    assert DEFAULT_MASK_SEEDS == {"t": 111, "a": 1111, "v": 11111}


def test_rate_zero_no_change():
    m = drop_masks(LENGTHS, T, 0.0, modality="a", mask_seed=1111, **KEY)
    assert m.shape == (8, 8) and m.dtype == bool and not m.any()
    x = np.random.default_rng(0).normal(size=(8, 8, 3)).astype(np.float32)
    assert np.array_equal(apply_drop(x, m), x)


def test_rate_one_drops_all_but_cls_sep():
    m = drop_masks(LENGTHS, T, 1.0, modality="t", mask_seed=111, **KEY)
    real = np.arange(T)[None, :] < LENGTHS[:, None]
    expect = real.copy()
    expect[:, 0] = False
    for i, n in enumerate(LENGTHS):
        if n > 0:
            expect[i, n - 1] = False
    assert np.array_equal(m, expect)
    # Audio/vision: every real frame dropped.
    assert np.array_equal(drop_masks(LENGTHS, T, 1.0, modality="v", mask_seed=11111, **KEY), real)
    # keep_ends can be forced either way.
    assert np.array_equal(drop_masks(LENGTHS, T, 1.0, modality="t", mask_seed=111, keep_ends=False, **KEY), real)


def test_padding_never_touched():
    lengths = np.random.default_rng(1).integers(0, 40, size=300)
    for rate in (0.3, 0.7, 1.0):
        m = drop_masks(lengths, 40, rate, modality="a", mask_seed=1111, **KEY)
        pad = np.arange(40)[None, :] >= lengths[:, None]
        assert not m[pad].any()


def test_same_seeds_same_masks_and_keys_matter():
    m1 = drop_masks(LENGTHS, T, 0.5, modality="v", mask_seed=11111, **KEY)
    m2 = drop_masks(LENGTHS, T, 0.5, modality="v", mask_seed=11111, **KEY)
    assert np.array_equal(m1, m2)
    # np.arange rates name the same rate as the literal.
    m3 = drop_masks(LENGTHS, T, np.arange(0, 1.01, 0.1)[5], modality="v", mask_seed=11111, **KEY)
    assert np.array_equal(m1, m3)
    big = np.full(200, 50)
    base = drop_masks(big, 50, 0.5, modality="v", mask_seed=11111, **KEY)
    others = [
        drop_masks(big, 50, 0.5, modality="v", mask_seed=11111, dataset="mosi", split="valid"),
        drop_masks(big, 50, 0.5, modality="v", mask_seed=11111, dataset="mosei", split="test"),
        drop_masks(big, 50, 0.5, modality="a", mask_seed=11111, **KEY),
        drop_masks(big, 50, 0.5, modality="v", mask_seed=11112, **KEY),
        drop_masks(big, 50, 0.6, modality="v", mask_seed=11111, **KEY),
    ]
    for o in others:
        assert not np.array_equal(base, o)
    assert mask_hash(base) != mask_hash(others[0])
    # Default seed = the modality's default.
    assert np.array_equal(drop_masks(big, 50, 0.5, modality="v", **KEY), base)


def test_stable_across_processes():
    code = (
        "import numpy as np; from msabench.data.masks import drop_masks, mask_hash;"
        "print(mask_hash(drop_masks(np.full(50, 20), 20, 0.4, dataset='mosi', split='train', modality='a', "
        "mask_seed=1111)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    here = mask_hash(drop_masks(np.full(50, 20), 20, 0.4, dataset="mosi", split="train", modality="a", mask_seed=1111))
    assert out == here


def test_hash_and_seed_recorded():
    m = drop_masks(LENGTHS, T, 0.5, modality="a", mask_seed=1111, **KEY)
    h = mask_hash(m)
    assert isinstance(h, str) and len(h) == 16 and h == mask_hash(m.copy())
    assert mask_hash({"a": m, "v": m}) == mask_hash({"v": m, "a": m})
    assert mask_hash(m[:, :4]) != h
    assert isinstance(mask_rng_seed("mosi", "test", "a", 0.5, 1111), int)


def test_empirical_rate():
    lengths = np.full(2000, 50)
    for rate in (0.1, 0.5, 0.9):
        m = drop_masks(lengths, 50, rate, modality="a", mask_seed=1111, **KEY)
        assert abs(m.mean() - rate) < 0.01
    # Text: the fraction among droppable positions (all but [CLS]/[SEP]).
    m = drop_masks(lengths, 50, 0.3, modality="t", mask_seed=111, **KEY)
    assert abs(m[:, 1:49].mean() - 0.3) < 0.01 and not m[:, [0, 49]].any()


def test_apply_drop_tokens_and_features():
    ids = np.array([[101, 5, 6, 102, 0], [101, 7, 102, 0, 0]])
    drop = np.array([[False, True, False, False, False], [False, True, False, False, False]])
    out = apply_drop(ids, drop, unk_id=100)
    assert out.tolist() == [[101, 100, 6, 102, 0], [101, 100, 102, 0, 0]]
    assert ids[0, 1] == 5  # input untouched
    with pytest.raises(ValueError):
        apply_drop(ids, drop)
    feats = np.ones((2, 5, 3), dtype=np.float32)
    out = apply_drop(feats, drop)
    assert out[:, 1].sum() == 0 and out.sum() == 2 * 4 * 3 and feats.sum() == 30
    torch = pytest.importorskip("torch")
    t_out = apply_drop(torch.tensor(ids), torch.tensor(drop), unk_id=100)
    assert t_out.tolist() == [[101, 100, 6, 102, 0], [101, 100, 102, 0, 0]]
    f_out = apply_drop(torch.ones(2, 5, 3), torch.tensor(drop))
    assert float(f_out.sum()) == 24.0


def test_split_masks_and_bad_rate():
    rng = np.random.default_rng(0)
    split = SplitData(ids=np.array(["a", "b"]), audio=rng.normal(size=(2, 6, 3)), audio_lengths=np.array([6, 2]),
                      text_ids=np.ones((2, 4), dtype=np.int64), text_lengths=np.array([4, 3]))
    masks = split_masks(split, 1.0, dataset="mosi", split="train")
    assert set(masks) == {"t", "a"}
    assert masks["t"].tolist() == [[False, True, True, False], [False, True, False, False]]
    assert masks["a"].sum() == 8
    with pytest.raises(UserError, match="outside"):
        drop_masks(LENGTHS, T, 1.5, modality="a", **KEY)
