"""Feature analysis (msabench.evaluation.feature_analysis): the pure statistics on features with a known structure.

Runs of the `feature-analysis` protocol (training, features.npz, analysis.json, --from-run) are in
tests/test_protocols_feature_analysis.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from msabench.evaluation.feature_analysis import (
    analyse_features,
    cross_independence,
    features_arrays,
    intra_independence,
    l1_selection,
    label_dependent,
    modality_of,
    read_features,
)
from msabench.stats import fisher_z, independence_ratio

DOMAINS = ("d0", "d1", "d2")
INVARIANT, SPURIOUS = [0, 1, 2], [3, 4, 5]


def _domain(i: int, n: int = 400, seed: int = 0):
    """12 features: 0-2 invariant (same coefficients everywhere), 3-5 spurious (feature 3+i carries
    the label in domain i only, with a sign that flips between domains), 6-11 noise."""
    rng = np.random.default_rng(seed + 10 * i)
    z = rng.standard_normal(n)
    y = np.digitize(z, [-0.5, 0.5])  # 3 classes
    x = rng.standard_normal((n, 12))
    x[:, INVARIANT] += np.outer(z, [1.5, -1.2, 1.0])
    x[:, 3 + i] += (2.0 if i % 2 == 0 else -2.0) * z
    return x, y


def test_pairwise_helpers_agree_with_msabench_stats():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 5))
    x[:, 1] = x[:, 0] + 0.1 * rng.standard_normal(200)  # one dependent pair
    ratio, per = intra_independence(x)
    assert ratio == pytest.approx(independence_ratio(x))
    assert per[0] < 1.0 and per[1] < 1.0 and len(per) == 5
    y = rng.standard_normal((200, 3))
    cross, per_x = cross_independence(x, y)
    assert cross == pytest.approx(independence_ratio(x, other=y))
    assert len(per_x) == 5
    labels = (x[:, 0] > 0).astype(int)
    dep = label_dependent(x, labels)
    assert dep[0] == (fisher_z(x[:, 0], labels).p <= 0.05)
    assert dep[0] and dep[1]


def test_l1_selection_keeps_the_label_relevant_features():
    x, y = _domain(0)
    sel = l1_selection(x, y, c=0.05)
    assert set(INVARIANT) | {3} <= set(np.flatnonzero(sel))
    assert sel[6:].sum() <= 2
    assert not l1_selection(np.ones((50, 3)), np.arange(50) % 3).any()  # constant features: nothing


def test_selection_consistency_and_ground_truth_scoring():
    per_domain, labels = {}, {}
    for i, d in enumerate(DOMAINS):
        x, y = _domain(i)
        per_domain[d] = {"input/t": x}
        labels[d] = y
    gt = {"t": {"invariant": INVARIANT, "spurious": SPURIOUS}}
    columns = {"input/t": list(range(100, 112))}  # the block's columns are input features 100..111
    gt_shifted = {"t": {"invariant": [100, 101, 102], "spurious": [103, 104, 105]}}
    out = analyse_features(per_domain, labels, columns=columns, ground_truth=gt_shifted, l1_c=0.05)
    cons = out["consistency"]["input/t"]
    assert cons["selected_in_all"] == [100, 101, 102]
    assert len(cons["matrix"]) == 3 and len(cons["matrix"][0]) == 12
    assert 0 < cons["jaccard_mean"] < 1
    truth = out["ground_truth"]["input/t"]
    assert truth["precision"] == 1.0 and truth["recall"] == 1.0 and truth["spurious_selected"] == 0
    assert truth["precision_same_sign"] == 1.0
    dom = out["per_domain"]["d1"]["blocks"]["input/t"]
    assert 104 in dom["selected"] and dom["retained"] == pytest.approx(len(dom["selected"]) / 12)
    dep = dom["label_dependence"]
    assert dep["selected"] > dep["removed"]  # Fig. 8: selected features carry the label
    assert out["blocks"]["input/t"] == {"modality": "t", "dim": 12, "input_space": True, "selection": "l1"}
    # no ground truth without input-space columns
    assert analyse_features(per_domain, labels, ground_truth=gt)["ground_truth"] == {}


def test_model_masks_drive_the_selection_and_cross_modal_ratios():
    rng = np.random.default_rng(3)
    per_domain, labels, masks = {}, {}, {}
    for d in DOMAINS:
        n = 120
        t = rng.standard_normal((n, 6))
        v = rng.standard_normal((n, 4))
        v[:, 0] = t[:, 0] + 0.05 * rng.standard_normal(n)  # v0 depends on t0
        per_domain[d] = {"t": t, "v": v}
        labels[d] = rng.integers(0, 3, n)
        mask_t = np.zeros((n, 6))
        mask_t[:, :3] = 0.9
        masks[d] = {"t": mask_t, "v": np.ones((n, 4))}
    out = analyse_features(per_domain, labels, masks=masks)
    assert out["blocks"]["t"]["selection"] == "model-mask"
    assert out["consistency"]["t"]["selected_in_all"] == [0, 1, 2]
    assert out["consistency"]["v"]["selected_in_all"] == [0, 1, 2, 3]
    cross = out["per_domain"]["d0"]["cross_independence"]["t|v"]
    assert cross["per_feature_of_first"][0] == pytest.approx(0.75, abs=0.25)  # t0 vs v0 dependent
    assert len(cross["per_feature_of_first"]) == 3
    assert cross["ratio"] < 1.0


def test_modality_names():
    assert [modality_of(b) for b in ("input/t", "text", "vision", "v_pooled", "fusion", "input/a")] == \
        ["t", "t", "v", "v", "", "a"]


def test_features_npz_layout_round_trips():
    feats = {"synth-dg/mosi": {"input/t": np.ones((3, 2))}, "synth-dg/meld": {"input/t": np.zeros((2, 2))}}
    labels = {"synth-dg/mosi": np.array([0, 1, 2]), "synth-dg/meld": np.array([1, 1])}
    ids = {d: np.array([f"{d}-{i}" for i in range(len(labels[d]))]) for d in feats}
    preds = {d: np.zeros((len(labels[d]), 3)) for d in feats}
    arrays = features_arrays(feats, labels, ids, preds, {"input/t": [4, 7]}, {}, 5, "train-domain")
    back = read_features(arrays)
    assert back["domains"] == ["synth-dg/mosi", "synth-dg/meld"]
    assert back["columns"] == {"input/t": [4, 7]} and back["epoch"] == 5 and back["rule"] == "train-domain"
    np.testing.assert_array_equal(back["features"]["synth-dg/meld"]["input/t"], np.zeros((2, 2)))
    np.testing.assert_array_equal(back["labels"]["synth-dg/mosi"], [0, 1, 2])
