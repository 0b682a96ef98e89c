"""msabench.stats on cases with known answers: hand-computed, textbook or scipy."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from msabench.metrics import UndefinedMetricWarning
from msabench.stats import (
    fisher_z,
    holm,
    independence_ratio,
    mcnemar,
    paired_bootstrap,
    paired_t,
    steiger_williams,
    wilcoxon,
)


def with_correlation(r: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x, y whose sample correlation is exactly r."""
    rng = np.random.default_rng(seed)
    x, e = rng.normal(size=n), rng.normal(size=n)
    x = (x - x.mean()) / np.linalg.norm(x - x.mean())
    e = e - e.mean()
    e = e - (e @ x) * x
    e /= np.linalg.norm(e)
    return x, r * x + math.sqrt(1 - r * r) * e


# --- Fisher z ------------------------------------------------------------------------------

def test_fisher_z_known_answer():
    x, y = with_correlation(0.5, 28)
    r, z, p = fisher_z(x, y)
    assert r == pytest.approx(0.5)
    assert z == pytest.approx(math.atanh(0.5) * 5)  # sqrt(28 - 0 - 3) = 5
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)))  # two-sided normal tail
    assert p == pytest.approx(0.00602, abs=1e-5)


def test_fisher_z_partial_correlation_matches_the_closed_form():
    rng = np.random.default_rng(2)
    g = rng.normal(size=60)
    x, y = g + rng.normal(size=60), 0.5 * g + rng.normal(size=60)
    r_xy, r_xg, r_yg = (sps.pearsonr(a, b).statistic for a, b in ((x, y), (x, g), (y, g)))
    expected = (r_xy - r_xg * r_yg) / math.sqrt((1 - r_xg**2) * (1 - r_yg**2))
    result = fisher_z(x, y, given=g)
    assert result.r == pytest.approx(expected)
    assert result.z == pytest.approx(math.atanh(expected) * math.sqrt(60 - 1 - 3))
    # the conditioning set may be (n, k); an intercept column is implied
    two = fisher_z(x, y, given=np.column_stack([g, rng.normal(size=60)]))
    assert two.z == pytest.approx(math.atanh(two.r) * math.sqrt(60 - 2 - 3))


def test_fisher_z_decision_uses_alpha():
    x, y = with_correlation(0.5, 28)  # p = 0.006
    assert not fisher_z(x, y).independent
    assert fisher_z(x, y, alpha=0.001).independent
    assert fisher_z(x, y, alpha=0.001).alpha == 0.001


def test_fisher_z_given_that_explains_x_is_undefined():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(30, 2))
    x = g @ np.array([1.0, -2.0]) + 3.0
    with pytest.warns(UndefinedMetricWarning):
        result = fisher_z(x, rng.normal(size=30), given=g)
    assert np.isnan(result.r) and np.isnan(result.p)
    assert result.independent  # no evidence of dependence


def test_fisher_z_rejects_too_few_samples_and_bad_shapes():
    with pytest.raises(ValueError, match="n > "):
        fisher_z(np.arange(5.0), np.arange(5.0) ** 2, given=np.ones((5, 2)))
    with pytest.raises(ValueError, match="y has 4"):
        fisher_z(np.arange(5.0), np.arange(4.0))
    with pytest.raises(ValueError, match="given has 4 rows"):
        fisher_z(np.arange(5.0), np.arange(5.0), given=np.ones(4))
    with pytest.raises(ValueError, match="given must be"):
        fisher_z(np.arange(5.0), np.arange(5.0), given=np.ones((5, 1, 1)))


# --- independence ratio --------------------------------------------------------------------

def test_independence_ratio_equals_pairwise_fisher_z():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(80, 6))
    features = base + 0.6 * base[:, [0]]  # every column shares column 0: some pairs dependent
    decisions = [fisher_z(features[:, i], features[:, j], alpha=0.01).independent
                 for i in range(6) for j in range(i + 1, 6)]
    assert independence_ratio(features, alpha=0.01) == pytest.approx(np.mean(decisions))
    other = rng.normal(size=(80, 3)) + 0.5 * base[:, [1]]
    cross = [fisher_z(features[:, i], other[:, j]).independent for i in range(6) for j in range(3)]
    assert independence_ratio(features, other=other) == pytest.approx(np.mean(cross))


def test_independence_ratio_extremes():
    rng = np.random.default_rng(6)
    x = rng.normal(size=100)
    assert independence_ratio(np.column_stack([x, 2 * x, -x + 1])) == 0.0
    # a constant column is independent of everything
    assert independence_ratio(np.column_stack([x, np.ones(100)])) == 1.0
    assert independence_ratio(x, other=np.ones(100)) == 1.0


def test_independence_ratio_rejects_bad_input():
    with pytest.raises(ValueError, match="2 feature columns"):
        independence_ratio(np.ones((10, 1)))
    with pytest.raises(ValueError, match="at least 4 samples"):
        independence_ratio(np.ones((3, 2)))
    with pytest.raises(ValueError, match="other has 9"):
        independence_ratio(np.ones((10, 2)), other=np.ones((9, 2)))
    with pytest.raises(ValueError, match="features must be"):
        independence_ratio(np.ones((10, 2, 2)))


# --- seeds: paired t and Wilcoxon ----------------------------------------------------------

SEEDS_A = [0.812, 0.805, 0.820, 0.798, 0.815]
SEEDS_B = [0.801, 0.799, 0.806, 0.800, 0.804]


def test_paired_t_matches_scipy():
    expected = sps.ttest_rel(SEEDS_A, SEEDS_B)
    assert paired_t(SEEDS_A, SEEDS_B) == pytest.approx((expected.statistic, expected.pvalue))


def test_wilcoxon_matches_scipy_and_the_exact_distribution():
    expected = sps.wilcoxon(SEEDS_A, SEEDS_B)
    assert wilcoxon(SEEDS_A, SEEDS_B) == pytest.approx((expected.statistic, expected.pvalue))
    # five positive differences: W = 0 and p = 2 / 2^5
    assert wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx((0.0, 0.0625))


def test_identical_seeds_give_no_evidence():
    assert paired_t(SEEDS_A, SEEDS_A) == (0.0, 1.0)
    assert wilcoxon(SEEDS_A, SEEDS_A) == (0.0, 1.0)


def test_paired_tests_reject_unmatched_seeds():
    with pytest.raises(ValueError, match="5 vs 4"):
        paired_t(SEEDS_A, SEEDS_B[:4])
    with pytest.raises(ValueError, match="5 vs 4"):
        wilcoxon(SEEDS_A, SEEDS_B[:4])


# --- paired bootstrap ----------------------------------------------------------------------

def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true)))


def test_bootstrap_of_identical_systems():
    rng = np.random.default_rng(8)
    true, pred = rng.normal(size=50), rng.normal(size=50)
    assert paired_bootstrap(pred, pred, true, mae, n_boot=200) == (0.0, 1.0)


def test_bootstrap_of_a_uniformly_better_system_has_the_smallest_p():
    true = np.zeros(40)
    delta, p = paired_bootstrap(np.full(40, 2.0), np.full(40, 1.0), true, mae, n_boot=99)
    assert delta == 1.0
    assert p == pytest.approx(1 / 100)


def test_bootstrap_of_a_mean_metric_approaches_the_normal_test():
    # For a mean over items the bootstrap distribution of delta is ~ N(delta, sd(d)^2 / n).
    rng = np.random.default_rng(9)
    true = rng.normal(size=400)
    pred_a = true + rng.normal(0, 1.0, 400)
    pred_b = true + rng.normal(0, 0.9, 400)
    delta, p = paired_bootstrap(pred_a, pred_b, true, mae, n_boot=2000, seed=1)
    d = np.abs(pred_a - true) - np.abs(pred_b - true)
    assert delta == pytest.approx(d.mean())
    z = d.mean() / (d.std(ddof=0) / math.sqrt(len(d)))
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=0.02)
    assert paired_bootstrap(pred_a, pred_b, true, mae, n_boot=50, seed=3) == \
        paired_bootstrap(pred_a, pred_b, true, mae, n_boot=50, seed=3)


def test_bootstrap_rejects_unmatched_predictions():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(np.zeros(3), np.zeros(4), np.zeros(4), mae)


# --- McNemar -------------------------------------------------------------------------------

def correctness(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    other = [0] * b + [1] * c + [1] * both + [0] * neither
    return np.array(a, dtype=bool), np.array(other, dtype=bool)


def test_mcnemar_exact_is_the_binomial_tail():
    a, b = correctness(8, 2, both=30, neither=5)
    # 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert mcnemar(a, b) == pytest.approx((2.0, 112 / 1024))
    assert mcnemar(b, a) == pytest.approx((2.0, 112 / 1024))


def test_mcnemar_chi2_with_continuity_correction():
    a, b = correctness(8, 2, both=30, neither=5)
    statistic = (abs(8 - 2) - 1) ** 2 / 10  # 2.5
    p = math.erfc(math.sqrt(statistic / 2))  # chi2 with 1 dof = square of a standard normal
    assert mcnemar(a, b, exact=False) == pytest.approx((statistic, p))
    # equal discordant counts: the correction cannot make the statistic positive
    a, b = correctness(3, 3, both=4, neither=0)
    assert mcnemar(a, b, exact=False) == pytest.approx((0.0, 1.0))


def test_mcnemar_without_discordant_items():
    a, b = correctness(0, 0, both=10, neither=3)
    assert mcnemar(a, b) == (0.0, 1.0)
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar(a, b[:-1])


# --- Williams' t ---------------------------------------------------------------------------

def test_williams_textbook_example():
    # Howell, Statistical Methods for Psychology (6th ed., p. 262): t = 1.361, df 23, p = .187
    t, p = steiger_williams(0.80, 0.72, 0.89, 26)
    assert t == pytest.approx(1.361, abs=5e-4)
    assert p == pytest.approx(0.187, abs=5e-4)


def test_williams_hand_worked_case():
    # r_ab = 0: |R| = 1 - .36 - .04 = .6, mean r = .4;
    # t = .4 * sqrt(27 / (2 * 27/25 * .6 + .16)) = .4 * sqrt(27 / 1.456)
    t, p = steiger_williams(0.6, 0.2, 0.0, 28)
    assert t == pytest.approx(0.4 * math.sqrt(27 / 1.456))
    assert p == pytest.approx(2 * sps.t.sf(t, 25))


def test_williams_symmetry_and_limits():
    t, p = steiger_williams(0.5, 0.3, 0.4, 100)
    assert steiger_williams(0.3, 0.5, 0.4, 100) == pytest.approx((-t, p))
    assert steiger_williams(0.4, 0.4, 0.2, 50) == pytest.approx((0.0, 1.0))
    # more samples, more evidence, with t growing like sqrt(n)
    t_big, p_big = steiger_williams(0.5, 0.3, 0.4, 10_000)
    assert p_big < p
    assert t_big / t == pytest.approx(math.sqrt(10_000 / 100), rel=0.02)
    with pytest.raises(ValueError, match="n > 3"):
        steiger_williams(0.5, 0.3, 0.4, 3)


# --- Holm ----------------------------------------------------------------------------------

def test_holm_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_undefined_tests():
    adjusted = holm([0.7, np.nan, 0.6, 0.01])  # 3 * 0.01, 2 * 0.6 -> 1, 0.7 -> 1
    assert adjusted[[0, 2, 3]] == pytest.approx([1.0, 1.0, 0.03])  # three tests, not four
    assert np.isnan(adjusted[1])
    assert holm([]).shape == (0,)


def test_holm_is_monotone_in_the_raw_order():
    rng = np.random.default_rng(10)
    p = rng.uniform(0, 0.2, 30)
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)


# --- layering ------------------------------------------------------------------------------

def test_stats_and_metrics_do_not_import_torch():
    code = "import sys, msabench.stats, msabench.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
