"""Statistical tests for reports and feature analyses (docs/architecture.md §8).

Significance across a table: paired t and Wilcoxon over matched seeds, a paired bootstrap over
test items, McNemar on per-item correctness, Williams' t for two dependent correlations, Holm's
adjustment. Feature analyses (S2LIF Figs. 4-8): Fisher's z-test of (partial) correlation and the
independence ratio built on it. Torch-free: the report layer imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from msabench.metrics import pearson

__all__ = [
    "FisherZ",
    "fisher_z",
    "holm",
    "independence_ratio",
    "mcnemar",
    "paired_bootstrap",
    "paired_t",
    "steiger_williams",
    "wilcoxon",
]


@dataclass(frozen=True)
class FisherZ:
    """Result of `fisher_z`; unpacks as `r, z, p`, and `independent` decides at level `alpha`."""

    r: float
    z: float
    p: float
    alpha: float

    @property
    def independent(self) -> bool:
        """Independence is kept unless the test rejects it (an undefined p rejects nothing)."""
        return not self.p <= self.alpha

    def __iter__(self) -> Iterator[float]:
        return iter((self.r, self.z, self.p))


def _residuals(x: np.ndarray, given: np.ndarray) -> np.ndarray:
    """x minus its least-squares fit on `given` with an intercept."""
    design = np.column_stack([np.ones(len(x)), given])
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    residuals = x - design @ coef
    # x fully explained by `given` leaves rounding noise, whose correlation would be arbitrary:
    # make it exactly constant, so the partial correlation is reported as undefined.
    if np.linalg.norm(residuals) <= 1e-10 * np.linalg.norm(x):
        return np.zeros_like(x)
    return residuals


def _z_and_p(r: np.ndarray | float, dof: int) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore"):  # |r| == 1 gives an infinite z and p = 0, as it should
        z = np.arctanh(r) * np.sqrt(dof)
    return z, 2.0 * sps.norm.sf(np.abs(z))


def fisher_z(x, y, given=None, alpha: float = 0.05) -> FisherZ:
    """Fisher's z-test of the (partial) correlation of x and y given the columns of `given`.

    z = atanh(r) * sqrt(n - |S| - 3) with a two-sided normal p; the partial correlation is the
    Pearson correlation of x and y after regressing `given` ((n, k) or (n,)) out of both.
    `alpha` only sets the level of the result's `independent` decision.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x has {x.size} values but y has {y.size}")
    k = 0
    if given is not None:
        given = _matrix(given, "given")
        if given.shape[0] != len(x):
            raise ValueError(f"given has {given.shape[0]} rows but x has {len(x)} values")
        k = given.shape[1]
        x, y = _residuals(x, given), _residuals(y, given)
    dof = len(x) - k - 3
    if dof < 1:
        raise ValueError(f"the Fisher z-test needs n > |S| + 3; got n={len(x)}, |S|={k}")
    r = pearson(x, y)
    z, p = _z_and_p(r, dof)
    return FisherZ(r=r, z=float(z), p=float(p), alpha=alpha)


def _matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n, d) or (n,); got shape {x.shape}")
    return x


def _standardised(features: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm; constant columns become all-nan."""
    centred = features - features.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.where(norms > 0, norms, np.nan)


def independence_ratio(features, alpha: float = 0.05, other=None) -> float:
    """Fraction of feature pairs that `fisher_z` (no conditioning set) judges independent.

    Pairs are the distinct columns of `features` (n, d) (intra-modal), or every column of
    `features` against every column of `other` (n, d2) when given (cross-modal). A constant
    column gives no evidence of dependence, so its pairs count as independent.
    """
    a = _standardised(_matrix(features, "features"))
    n = a.shape[0]
    if n < 4:
        raise ValueError(f"the Fisher z-test needs at least 4 samples; got {n}")
    if other is None:
        if a.shape[1] < 2:
            raise ValueError("independence_ratio needs at least 2 feature columns")
        r = (a.T @ a)[np.triu_indices(a.shape[1], k=1)]
    else:
        b = _standardised(_matrix(other, "other"))
        if b.shape[0] != n:
            raise ValueError(f"features have {n} rows but other has {b.shape[0]}")
        r = (a.T @ b).reshape(-1)
    _, p = _z_and_p(np.clip(r, -1.0, 1.0), n - 3)
    return float(np.mean(~(p <= alpha)))


def _differences(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    return a - b


def paired_t(a, b) -> tuple[float, float]:
    """Paired t-test over matched seeds: (t, two-sided p); identical samples give (0, 1)."""
    diff = _differences(a, b)
    if not diff.any():
        return 0.0, 1.0
    result = sps.ttest_1samp(diff, 0.0)  # the paired t-test on the differences
    return float(result.statistic), float(result.pvalue)


def wilcoxon(a, b) -> tuple[float, float]:
    """Wilcoxon signed-rank test over matched seeds: (W, two-sided p); identical gives (0, 1)."""
    diff = _differences(a, b)
    if not diff.any():
        return 0.0, 1.0
    result = sps.wilcoxon(diff)
    return float(result.statistic), float(result.pvalue)


def paired_bootstrap(pred_a, pred_b, true, metric_fn: Callable[[np.ndarray, np.ndarray], float],
                     n_boot: int = 1000, seed: int = 0):
    """Paired bootstrap over test items: (metric(a) - metric(b), two-sided p).

    Both systems are scored on the same resampled items. The p-value is the share of resampled
    differences at least |delta| away from delta, i.e. the bootstrap distribution shifted to the
    null of no difference, with the +1 correction so that p is never 0.
    `metric_fn` may return an array of metrics (one resampling then serves them all): delta and p
    are arrays of that shape. A metric undefined on the items (nan) gets p nan; resamples where it
    is undefined are left out of its p.
    """
    pred_a, pred_b, true = np.asarray(pred_a), np.asarray(pred_b), np.asarray(true)
    n = len(true)
    if len(pred_a) != n or len(pred_b) != n:
        raise ValueError(f"predictions and labels differ in length: {len(pred_a)}, "
                         f"{len(pred_b)}, {n}")
    delta = np.asarray(metric_fn(pred_a, true), dtype=np.float64) - np.asarray(metric_fn(pred_b, true),
                                                                                 dtype=np.float64)
    rng = np.random.default_rng(seed)
    deltas = np.empty((n_boot, *delta.shape))
    for i in range(n_boot):
        idx = rng.integers(0, n, size=n)
        deltas[i] = np.asarray(metric_fn(pred_a[idx], true[idx])) - np.asarray(metric_fn(pred_b[idx], true[idx]))
    defined = ~np.isnan(deltas)
    with np.errstate(invalid="ignore"):
        extreme = np.sum(defined & (np.abs(deltas - delta) >= np.abs(delta)), axis=0)
    p = (extreme + 1) / (defined.sum(axis=0) + 1)
    p = np.where(np.isnan(delta), np.nan, p)
    if delta.ndim == 0:
        return float(delta), float(p)
    return delta, p


def mcnemar(correct_a, correct_b, exact: bool = True) -> tuple[float, float]:
    """McNemar's test on per-item correctness of two systems: (statistic, two-sided p).

    exact: statistic = min(b, c), binomial p; otherwise the continuity-corrected chi-square
    (|b - c| - 1)^2 / (b + c) with one degree of freedom; b, c are the discordant counts.
    """
    correct_a = np.asarray(correct_a, dtype=bool).reshape(-1)
    correct_b = np.asarray(correct_b, dtype=bool).reshape(-1)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"correctness vectors differ in length: {correct_a.size} vs "
                         f"{correct_b.size}")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return 0.0, 1.0
    if exact:
        return float(min(b, c)), float(sps.binomtest(min(b, c), b + c, 0.5).pvalue)
    statistic = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    return float(statistic), float(sps.chi2.sf(statistic, 1))


def steiger_williams(r_ja: float, r_jb: float, r_ab: float, n: int) -> tuple[float, float]:
    """Williams' t for H0: r_ja == r_jb, two correlations sharing variable j (Steiger 1980,
    eq. 7, the test it recommends): (t, two-sided p) with n - 3 degrees of freedom."""
    if n <= 3:
        raise ValueError(f"Williams' test needs n > 3; got {n}")
    det = 1 - r_ja**2 - r_jb**2 - r_ab**2 + 2 * r_ja * r_jb * r_ab
    mean_r = (r_ja + r_jb) / 2
    denom = 2 * (n - 1) / (n - 3) * det + mean_r**2 * (1 - r_ab) ** 3
    t = (r_ja - r_jb) * np.sqrt((n - 1) * (1 + r_ab) / denom)
    return float(t), float(2 * sps.t.sf(abs(t), n - 3))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order: monotone, capped at 1.

    nan entries (an undefined test) stay nan and do not count among the hypotheses.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
