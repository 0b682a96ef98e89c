"""Evaluation metrics (docs/architecture.md §7, a contract).

Pure functions over numpy arrays. Values are fractions, never rounded or scaled to percent: the
report layer does that. The definitions follow MMSA's reference code
(`MMSA/utils/metricsTop.py`: `__eval_mosei_regression`, `__eval_sims_regression`), with F1 as
`f1_score(y_true, y_pred, average='weighted')`.

Accuracy and F1 are computed here with numpy, to the bit as sklearn's `accuracy_score` and
`f1_score(..., zero_division=0)` compute them (tests/test_metrics.py compares them on random
inputs): sklearn's input validation cost about 1 ms per call, a few per evaluated split and epoch,
which was the largest share of the loop's time outside the model (perf/bench_epoch.py), and
importing sklearn took seconds of every CLI command that reads records.

An undefined value (Pearson on a constant vector, a binary metric on an empty subset) is `nan`
with one `UndefinedMetricWarning`, never an exception: a diverged or constant model must still
produce a record.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from msabench.core.types import IEMOCAP_EMOTIONS

__all__ = [
    "METRIC_DIRECTIONS",
    "UndefinedMetricWarning",
    "auilc",
    "auilc_norm",
    "classification_metrics",
    "multilabel_metrics",
    "pearson",
    "regression_metrics",
    "selection_metric",
    "sims_metrics",
    "task_metrics",
]


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined on these inputs and was reported as nan."""


_REGRESSION_KEYS = ("mae", "corr", "acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0",
                    "f1_non0")
_SIMS_KEYS = ("mae", "corr", "acc2", "acc3", "acc5", "f1")
_CLASSIFICATION_KEYS = ("acc", "f1_weighted", "f1_macro")

# Multilabel keys depend on the emotion names; the IEMOCAP ones are listed so the common case
# resolves without a pattern. Every metric but the error is higher-is-better.
METRIC_DIRECTIONS: dict[str, str] = {
    **{key: "max" for key in (*_REGRESSION_KEYS, *_SIMS_KEYS, *_CLASSIFICATION_KEYS, "mean_f1")},
    **{f"{kind}_{emo}": "max" for emo in IEMOCAP_EMOTIONS for kind in ("acc", "f1")},
    "mae": "min",
}

# Right-closed bins of MMSA's SIMS evaluation, given by their inner edges: x in (e[i-1], e[i]].
_SIMS_EDGES_2 = (0.0,)
_SIMS_EDGES_3 = (-0.1, 0.1)
_SIMS_EDGES_5 = (-0.7, -0.1, 0.1, 0.7)


def _warn(message: str) -> None:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def _vectors(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float arrays of equal, non-zero length; floating dtypes are kept (see _bins)."""
    pred, true = np.asarray(pred).reshape(-1), np.asarray(true).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"pred has {pred.size} values but true has {true.size}")
    if pred.size == 0:
        raise ValueError("no samples to evaluate")
    return _floating(pred), _floating(true)


def _floating(x: np.ndarray) -> np.ndarray:
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def pearson(x, y) -> float:
    """Pearson's r in float64; nan with an `UndefinedMetricWarning` when it is undefined."""
    x, y = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        _warn("Pearson correlation needs at least 2 finite values; reporting nan")
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(dx, dx) * np.dot(dy, dy))
    if denom == 0.0:
        _warn("Pearson correlation is undefined for a constant input; reporting nan")
        return float("nan")
    return float(np.clip(np.dot(dx, dy) / denom, -1.0, 1.0))


def _mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - true.astype(np.float64))))


def _accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(true) == np.asarray(pred)))


def _f1(true, pred, average: str = "weighted") -> float:
    """F1 per label of the union of `true` and `pred` (sorted), averaged by support ("weighted") or
    plainly ("macro"); a label never predicted nor true scores 0 (sklearn's zero_division=0)."""
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    labels, codes = np.unique(np.concatenate([true, pred]), return_inverse=True)
    codes = codes.reshape(-1)
    t, p = codes[: true.size], codes[true.size:]
    k = labels.size
    tp = np.bincount(t[t == p], minlength=k).astype(np.float64)
    true_sum = np.bincount(t, minlength=k)
    denom = true_sum.astype(np.float64) + np.bincount(p, minlength=k).astype(np.float64)
    f1 = 2.0 * tp / np.where(denom == 0, 1.0, denom)
    f1[denom == 0] = 0.0
    if average == "macro":
        return float(np.mean(f1))
    if average != "weighted":
        raise ValueError(f"average must be 'weighted' or 'macro', got {average!r}")
    return float(np.average(f1, weights=true_sum)) if true_sum.sum() else float(np.mean(f1))


def _rounded_acc(pred: np.ndarray, true: np.ndarray, bound: float) -> float:
    """MMSA's multiclass accuracy: clip both to +-bound, np.round (half to even), compare."""
    return float(np.mean(np.round(np.clip(pred, -bound, bound))
                         == np.round(np.clip(true, -bound, bound))))


def _binary(true_pos: np.ndarray, pred_pos: np.ndarray) -> tuple[float, float]:
    return _accuracy(true_pos, pred_pos), _f1(true_pos, pred_pos)


def regression_metrics(pred, true) -> dict[str, float]:
    """MOSI/MOSEI metrics of docs/architecture.md §7 (MMSA `__eval_mosei_regression`)."""
    pred, true = _vectors(pred, true)
    acc2_has0, f1_has0 = _binary(true >= 0, pred >= 0)
    nonzero = true != 0
    if nonzero.any():
        acc2_non0, f1_non0 = _binary(true[nonzero] > 0, pred[nonzero] > 0)
    else:
        _warn("every label is 0, so acc2_non0 and f1_non0 are undefined; reporting nan")
        acc2_non0 = f1_non0 = float("nan")
    return {
        "mae": _mae(pred, true),
        "corr": pearson(pred, true),
        "acc7": _rounded_acc(pred, true, 3.0),
        "acc5": _rounded_acc(pred, true, 2.0),
        "acc3": _rounded_acc(pred, true, 1.0),
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
        "acc2_non0": acc2_non0,
        "f1_non0": f1_non0,
    }


def _bins(x: np.ndarray, inner_edges: Sequence[float]) -> np.ndarray:
    """Index of the right-closed bin (e[i-1], e[i]] holding each value.

    The edges are cast to the values' own dtype because MMSA compares float32 predictions with
    float32 edges: SIMS labels such as 0.1 sit exactly on an edge, and float32(0.1) > 0.1 in
    float64 would move them to the next bin.
    """
    edges = np.asarray(inner_edges, dtype=x.dtype)
    return np.searchsorted(edges, x, side="left")


def sims_metrics(pred, true) -> dict[str, float]:
    """CH-SIMS metrics of docs/architecture.md §7 (MMSA `__eval_sims_regression`): clipped to [-1, 1]."""
    pred, true = _vectors(pred, true)
    pred, true = np.clip(pred, -1.0, 1.0), np.clip(true, -1.0, 1.0)
    # Bins in float32 whatever the input dtype (MMSA's tensors are float32): a float64 copy of a
    # float32 label such as 0.1 is 0.10000000149 and would otherwise land in the next bin.
    pred32, true32 = pred.astype(np.float32), true.astype(np.float32)
    pred2, true2 = _bins(pred32, _SIMS_EDGES_2), _bins(true32, _SIMS_EDGES_2)
    return {
        "mae": _mae(pred, true),
        "corr": pearson(pred, true),
        "acc2": float(np.mean(pred2 == true2)),
        "acc3": float(np.mean(_bins(pred32, _SIMS_EDGES_3) == _bins(true32, _SIMS_EDGES_3))),
        "acc5": float(np.mean(_bins(pred32, _SIMS_EDGES_5) == _bins(true32, _SIMS_EDGES_5))),
        "f1": _f1(true2, pred2),
    }


def _labels(logits_or_labels) -> np.ndarray:
    x = np.asarray(logits_or_labels)
    if x.ndim == 2:
        return np.argmax(x, axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected (N, C) logits or (N,) labels, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer) and not np.all(x == np.round(x)):
        raise ValueError("1-D predictions must be integer class labels; pass (N, C) logits")
    return x.astype(np.int64)


def classification_metrics(logits_or_labels, true) -> dict[str, float]:
    """Accuracy and F1 (weighted and macro over the classes present in true or pred)."""
    pred, true = _labels(logits_or_labels), _labels(true)
    if pred.shape != true.shape:
        raise ValueError(f"pred has {pred.size} samples but true has {true.size}")
    if pred.size == 0:
        raise ValueError("no samples to evaluate")
    return {
        "acc": _accuracy(true, pred),
        "f1_weighted": _f1(true, pred, "weighted"),
        "f1_macro": _f1(true, pred, "macro"),
    }


def multilabel_metrics(logits, true, names: Sequence[str]) -> dict[str, float]:
    """Per emotion accuracy and weighted F1 of the binary decision logit > 0, as MulT and MICA
    report them for IEMOCAP; `mean_f1` (their mean) is the selection metric."""
    logits, true = np.asarray(logits), np.asarray(true)
    if logits.ndim != 2 or logits.shape != true.shape:
        raise ValueError(f"expected logits and labels of one (N, E) shape, got {logits.shape} "
                         f"and {true.shape}")
    if logits.shape[1] != len(names):
        raise ValueError(f"{logits.shape[1]} label columns but {len(names)} names")
    if logits.shape[0] == 0:
        raise ValueError("no samples to evaluate")
    out: dict[str, float] = {}
    for column, name in enumerate(names):
        pred_pos, true_pos = logits[:, column] > 0, true[:, column] > 0.5
        out[f"acc_{name}"], out[f"f1_{name}"] = _binary(true_pos, pred_pos)
    out["mean_f1"] = float(np.mean([out[f"f1_{name}"] for name in names]))
    return out


def task_metrics(task: str, pred, true, family: str | None = None,
                 names: Sequence[str] | None = None) -> dict[str, float]:
    """The metrics of one task: SIMS regression uses its own bins, multilabel defaults to the
    IEMOCAP emotion names."""
    if task == "regression":
        return (sims_metrics if family == "sims" else regression_metrics)(pred, true)
    if task == "classification":
        return classification_metrics(pred, true)
    if task == "multilabel":
        return multilabel_metrics(pred, true, IEMOCAP_EMOTIONS if names is None else names)
    raise ValueError(f"unknown task {task!r}; expected regression, classification or multilabel")


# A regression run is degenerate when its predictions spread less than this share of the labels' std.
DEGENERATE_SPREAD = 0.01


def degenerate_predictions(task: str, pred, true) -> str:
    """Why predictions are degenerate ('' when they are not): (near) constant scores, a single class,
    or every emotion decided the same way for all samples. Such a run's means are not results."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape[0] < 2:
        return ""
    if task == "regression":
        spread, scale = float(np.std(pred)), float(np.std(true))
        if spread <= DEGENERATE_SPREAD * max(scale, 1e-12):
            return f"near-constant predictions (std {spread:.3g} vs the labels' {scale:.3g})"
        return ""
    if task == "classification":
        classes = np.unique(np.argmax(pred, axis=1) if pred.ndim == 2 else pred)
        return f"a single predicted class ({int(classes[0])})" if classes.size == 1 else ""
    if task == "multilabel":
        decisions = pred > 0
        if np.all(decisions == decisions[:1]):
            return "the same decision for every sample on every emotion"
        return ""
    raise ValueError(f"unknown task {task!r}")


_SELECTION: dict[str, tuple[str, str]] = {
    "regression": ("mae", "min"),
    "classification": ("acc", "max"),
    "multilabel": ("mean_f1", "max"),
}


def selection_metric(task: str) -> tuple[str, str]:
    """(metric name, "min" | "max") that validation-based selection optimises for a task."""
    if task not in _SELECTION:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(_SELECTION)}")
    return _SELECTION[task]


def _curve(rates, values) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if rates.shape != values.shape or rates.size < 2:
        raise ValueError("auilc needs at least 2 rates and one value per rate")
    if np.any(np.diff(rates) <= 0):
        raise ValueError("auilc needs strictly increasing rates")
    return rates, values


def auilc(rates, values) -> float:
    """Area under the indicator-rate curve (EMT-DLFR): the trapezoid rule over the given grid."""
    rates, values = _curve(rates, values)
    return float(np.sum((values[:-1] + values[1:]) / 2.0 * np.diff(rates)))


def auilc_norm(rates, values) -> float:
    """`auilc` divided by the grid width: the mean level of the curve, comparable across grids."""
    rates, values = _curve(rates, values)
    return auilc(rates, values) / float(rates[-1] - rates[0])

