"""msabench.metrics against hand-computed vectors, MMSA's definitions and sklearn/scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from msabench.metrics import (
    METRIC_DIRECTIONS,
    UndefinedMetricWarning,
    auilc,
    auilc_norm,
    classification_metrics,
    multilabel_metrics,
    pearson,
    regression_metrics,
    selection_metric,
    sims_metrics,
    task_metrics,
)


def ours(record) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, UndefinedMetricWarning)]


# --- regression (MOSI/MOSEI) ---------------------------------------------------------------

def test_zero_labels_split_has0_from_non0():
    true = np.array([0.0, 0.0, 1.0, -1.0, 2.0])
    pred = np.array([0.5, -0.5, 1.2, -0.3, -1.0])
    m = regression_metrics(pred, true)
    # has0: true>=0 [1,1,1,0,1] vs pred>=0 [1,0,1,0,0]
    assert m["acc2_has0"] == pytest.approx(3 / 5)
    # F1 class 1: P=1, R=1/2 -> 2/3 (support 4); class 0: P=1/3, R=1 -> 1/2 (support 1)
    assert m["f1_has0"] == pytest.approx((4 * 2 / 3 + 1 / 2) / 5)
    # non0 keeps the last three: true>0 [1,0,1] vs pred>0 [1,0,0]; both classes have F1 2/3
    assert m["acc2_non0"] == pytest.approx(2 / 3)
    assert m["f1_non0"] == pytest.approx(2 / 3)
    assert m["mae"] == pytest.approx(np.mean([0.5, 0.5, 0.2, 0.7, 3.0]))
    assert regression_metrics(pred, true.astype(int)) == m  # integer labels are accepted


def test_rounding_is_half_to_even():
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -2.5 -> -2; 3.5 is clipped to 3 first
    pred = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.5])
    m = regression_metrics(pred, np.array([0.0, 2.0, 2.0, 0.0, -2.0, 3.0]))
    assert m["acc7"] == 1.0
    # rounding half up would match these labels instead
    m = regression_metrics(np.array([0.5, 2.5]), np.array([1.0, 3.0]))
    assert m["acc7"] == 0.0


def test_coarser_accuracies_clip_before_rounding():
    pred = np.array([2.6, -2.6, 1.4, 0.4])
    true = np.array([3.0, -2.0, 0.6, -0.4])
    m = regression_metrics(pred, true)
    assert m["acc7"] == pytest.approx(3 / 4)  # pred 3, -3, 1, 0 vs true 3, -2, 1, -0
    assert m["acc5"] == 1.0  # pred 2, -2, 1, 0 vs true 2, -2, 1, -0
    assert m["acc3"] == 1.0  # pred 1, -1, 1, 0 vs true 1, -1, 1, -0


def test_all_positive_labels():
    true = np.array([1.0, 2.0, 0.5, 3.0])
    pred = np.array([1.0, -1.0, 0.2, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one class in the labels is no warning
        m = regression_metrics(pred, true)
    assert m["acc2_has0"] == m["acc2_non0"] == pytest.approx(3 / 4)
    # only the positive class has support: F1 = 2 * 1 * 0.75 / 1.75
    assert m["f1_has0"] == m["f1_non0"] == pytest.approx(6 / 7)


def test_constant_predictions_give_nan_corr_and_one_warning():
    true = np.array([-1.0, 0.0, 2.0, 1.5])
    with pytest.warns(UndefinedMetricWarning) as record:
        m = regression_metrics(np.full(4, 0.3), true)
    assert len(ours(record)) == 1
    assert np.isnan(m["corr"])
    assert m["mae"] == pytest.approx(np.mean(np.abs(0.3 - true)))
    assert m["acc2_has0"] == pytest.approx(3 / 4)


def test_all_zero_labels_give_nan_non0():
    with pytest.warns(UndefinedMetricWarning) as record:
        m = regression_metrics(np.array([0.1, -0.2, 0.3]), np.zeros(3))
    messages = [str(w.message) for w in ours(record)]
    assert len(messages) == 2  # constant labels (corr) and the empty non0 subset
    assert any("non0" in msg for msg in messages)
    assert np.isnan(m["acc2_non0"]) and np.isnan(m["f1_non0"]) and np.isnan(m["corr"])
    assert m["acc2_has0"] == pytest.approx(2 / 3)


def test_regression_matches_sklearn_and_scipy():
    rng = np.random.default_rng(7)
    true = np.round(rng.uniform(-3, 3, 500) * 3) / 3  # MOSEI-like thirds, zeros included
    pred = (true + rng.normal(0, 1.0, 500)).astype(np.float32)
    m = regression_metrics(pred, true)
    assert m["mae"] == pytest.approx(mean_absolute_error(true, pred), rel=1e-6)
    assert m["corr"] == pytest.approx(pearsonr(pred, true).statistic, rel=1e-6)
    assert m["acc2_has0"] == pytest.approx(accuracy_score(true >= 0, pred >= 0))
    assert m["f1_has0"] == pytest.approx(f1_score(true >= 0, pred >= 0, average="weighted"))
    nz = true != 0
    assert 0 < nz.sum() < len(true)
    assert m["acc2_non0"] == pytest.approx(accuracy_score(true[nz] > 0, pred[nz] > 0))
    assert m["f1_non0"] == pytest.approx(f1_score(true[nz] > 0, pred[nz] > 0, average="weighted"))
    pred7, true7 = (np.round(np.clip(x, -3, 3)).astype(int) for x in (pred, true))
    assert m["acc7"] == pytest.approx(accuracy_score(true7, pred7))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="true has 3"):
        regression_metrics(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="no samples"):
        regression_metrics(np.zeros(0), np.zeros(0))


def test_pearson_of_non_finite_values_is_nan():
    with pytest.warns(UndefinedMetricWarning, match="finite"):
        assert np.isnan(pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    with pytest.warns(UndefinedMetricWarning, match="finite"):
        assert np.isnan(pearson([1.0], [2.0]))


# --- SIMS ----------------------------------------------------------------------------------

def mmsa_sims_bins(x: np.ndarray, edges: list[float]) -> np.ndarray:
    """MMSA `__eval_sims_regression`'s loop, on the caller's dtype, as MMSA runs it."""
    out = x.copy()
    for i in range(len(edges) - 1):
        out[np.logical_and(x > edges[i], x <= edges[i + 1])] = i
    return out


def test_sims_matches_mmsa_reference_on_edge_values():
    rng = np.random.default_rng(3)
    true = (np.round(rng.uniform(-1, 1, 400) * 10) / 10).astype(np.float32)  # 0.1 steps: edges
    pred = np.concatenate([[0.1, -0.1, 0.7, -0.7, 0.0, 1.5, -2.0],
                           rng.uniform(-1.2, 1.2, 393)]).astype(np.float32)
    m = sims_metrics(pred, true)
    p, t = np.clip(pred, -1, 1), np.clip(true, -1, 1)
    a2 = mmsa_sims_bins(p, [-1.01, 0.0, 1.01]), mmsa_sims_bins(t, [-1.01, 0.0, 1.01])
    a3 = mmsa_sims_bins(p, [-1.01, -0.1, 0.1, 1.01]), mmsa_sims_bins(t, [-1.01, -0.1, 0.1, 1.01])
    a5 = (mmsa_sims_bins(p, [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]),
          mmsa_sims_bins(t, [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]))
    assert m["acc2"] == pytest.approx(np.mean(a2[0] == a2[1]))
    assert m["acc3"] == pytest.approx(np.mean(a3[0] == a3[1]))
    assert m["acc5"] == pytest.approx(np.mean(a5[0] == a5[1]))
    assert m["f1"] == pytest.approx(f1_score(a2[1], a2[0], average="weighted"))
    assert m["mae"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-6)
    assert m["corr"] == pytest.approx(pearsonr(p, t).statistic, rel=1e-5)


def test_sims_bins_are_right_closed():
    # Bins (a, b]: 0 is negative (2 classes), float32 0.1 is neutral, 0.7 is in (0.1, 0.7],
    # 1.5 clips to 1. Only the first item (pred 0 vs true -0.5) differs at 3 and 5 classes,
    # only the second (0.1 vs 0) at 2 classes.
    pred = np.array([0.0, 0.1, 0.7, 1.5], dtype=np.float32)
    m = sims_metrics(pred, np.array([-0.5, 0.0, 0.4, 0.9]))
    assert m["acc2"] == pytest.approx(3 / 4)
    assert m["acc3"] == pytest.approx(3 / 4)
    assert m["acc5"] == pytest.approx(3 / 4)
    assert m["mae"] == pytest.approx(np.mean([0.5, 0.1, 0.3, 0.1]), rel=1e-6)


# --- classification and multilabel ---------------------------------------------------------

def test_classification_from_logits_equals_from_labels_and_sklearn():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + np.eye(3)[true]
    labels = logits.argmax(axis=1)
    m = classification_metrics(logits, true)
    assert m == classification_metrics(labels, true.astype(np.float64))
    assert m["acc"] == pytest.approx(accuracy_score(true, labels))
    assert m["f1_weighted"] == pytest.approx(f1_score(true, labels, average="weighted"))
    assert m["f1_macro"] == pytest.approx(f1_score(true, labels, average="macro"))


def test_classification_hand_case():
    m = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    assert m["acc"] == 0.75
    # F1 per class: 1, 2/3, 2/3; supports 1, 2, 1
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((1 + 2 * 2 / 3 + 2 / 3) / 4)


def test_classification_rejects_bad_inputs():
    with pytest.raises(ValueError, match="integer class labels"):
        classification_metrics(np.array([0.2, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.zeros((2, 3, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match="samples"):
        classification_metrics(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_multilabel_per_emotion_weighted_f1():
    logits = np.array([[2.0, -1.0], [-0.5, 0.3], [1.0, 0.2], [-2.0, -0.1]])
    true = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    m = multilabel_metrics(logits, true, ["happy", "sad"])
    assert m["acc_happy"] == 0.75 and m["acc_sad"] == 1.0
    # happy: pred [1,0,1,0] vs true [1,0,0,0]: class 1 F1 2/3 (support 1), class 0 F1 4/5 (3)
    assert m["f1_happy"] == pytest.approx((2 / 3 + 3 * 4 / 5) / 4)
    assert m["f1_sad"] == 1.0  # pred [0,1,1,0] is exactly true
    assert m["mean_f1"] == pytest.approx((m["f1_happy"] + m["f1_sad"]) / 2)


def test_multilabel_rejects_bad_inputs():
    with pytest.raises(ValueError, match="names"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 2)), ["happy"])
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="no samples"):
        multilabel_metrics(np.zeros((0, 1)), np.zeros((0, 1)), ["a"])


# --- dispatch, directions, selection -------------------------------------------------------

def test_task_metrics_dispatch_and_directions_cover_every_key():
    rng = np.random.default_rng(0)
    reg_true, reg_pred = rng.uniform(-3, 3, 50), rng.uniform(-3, 3, 50)
    outputs = {
        "mosi": task_metrics("regression", reg_pred, reg_true),
        "sims": task_metrics("regression", reg_pred / 3, reg_true / 3, family="sims"),
        "meld": task_metrics("classification", rng.normal(size=(50, 3)), rng.integers(0, 3, 50)),
        "iemocap": task_metrics("multilabel", rng.normal(size=(50, 4)),
                                rng.integers(0, 2, (50, 4))),
    }
    assert outputs["mosi"] == regression_metrics(reg_pred, reg_true)
    assert outputs["sims"] == sims_metrics(reg_pred / 3, reg_true / 3)
    assert "f1_angry" in outputs["iemocap"]
    for metrics in outputs.values():
        assert set(metrics) <= set(METRIC_DIRECTIONS)
    assert METRIC_DIRECTIONS["mae"] == "min"
    assert {d for k, d in METRIC_DIRECTIONS.items() if k != "mae"} == {"max"}
    with pytest.raises(ValueError, match="unknown task"):
        task_metrics("ranking", reg_pred, reg_true)


def test_selection_metric():
    assert selection_metric("regression") == ("mae", "min")
    assert selection_metric("classification") == ("acc", "max")
    assert selection_metric("multilabel") == ("mean_f1", "max")
    with pytest.raises(ValueError, match="unknown task"):
        selection_metric("ranking")


# --- AUILC ---------------------------------------------------------------------------------

def test_auilc_reproduces_emt_dlfr_sims_acc2():
    rates = [0, 0.1, 0.2, 0.3, 0.4, 0.5]
    values = [80.1, 79.2, 77.0, 76.1, 75.0, 73.5]
    assert auilc(rates, values) == pytest.approx(38.41, abs=0.01)
    assert auilc_norm(rates, values) == pytest.approx(38.41 / 0.5, abs=0.02)


def test_auilc_of_a_constant_curve_is_its_level_times_the_width():
    assert auilc([0.1, 0.4, 1.0], [2.0, 2.0, 2.0]) == pytest.approx(1.8)
    assert auilc_norm([0.1, 0.4, 1.0], [2.0, 2.0, 2.0]) == pytest.approx(2.0)


def test_auilc_rejects_bad_grids():
    with pytest.raises(ValueError, match="increasing"):
        auilc([0.0, 0.2, 0.1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2"):
        auilc([0.0], [1.0])
    with pytest.raises(ValueError, match="one value per rate"):
        auilc_norm([0.0, 0.1], [1.0, 2.0, 3.0])


def test_accuracy_and_f1_equal_sklearn_to_the_bit():
    """The numpy accuracy and F1 reproduce sklearn's exactly (the CI baselines depend on it), also for
    a class never predicted, a class only predicted, one class only, and boolean decisions."""
    from msabench.metrics import _accuracy, _f1

    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, k, n), rng.integers(0, k, n)) for k in (2, 3, 7) for n in (1, 5, 37, 686)]
    cases += [(rng.random(50) > 0.3, rng.random(50) > 0.6), (np.zeros(9, bool), np.zeros(9, bool)),
              (np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])), (np.array([0, 0, 0]), np.array([0, 1, 2])),
              (np.array([2, 2, 5, 5, 5]), np.array([5, 2, 9, 5, 2]))]
    for true, pred in cases:
        assert _accuracy(true, pred) == accuracy_score(true, pred)
        for average in ("weighted", "macro"):
            assert _f1(true, pred, average) == f1_score(true, pred, average=average, zero_division=0), (true, pred)
