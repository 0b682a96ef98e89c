"""Significance marks against a reference row (docs/architecture.md §10), Holm across a table.

`report --reference ROW --test T`: `t` (paired t-test, the default) and `wilcoxon` compare a cell's
per-seed values over the seeds both rows have; `bootstrap`, `mcnemar` and `williams` compare the two
rows' stored test predictions item by item at each run's selected epoch (the labels are stored
beside them). Each test comes from `msabench.stats`; every metric from `msabench.metrics`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from msabench.core.errors import UserError
from msabench.report.table import Column, Row, Table

ALPHA = 0.05
N_BOOT = 1000
NOT_TESTED = ("params",)  # descriptive columns (parameter counts) are not tested
SeedValues = dict[tuple[str, str, int], dict[int, float]]  # (row key, column key, part) -> {seed: value}
TESTS = {
    "t": "paired t-test over matched seeds",
    "wilcoxon": "Wilcoxon signed-rank test over matched seeds",
    "bootstrap": f"paired bootstrap over test items ({N_BOOT} resamples; the metric averaged over matched seeds)",
    "mcnemar": "McNemar's exact test on per-item correctness, discordant items summed over matched seeds; "
               "accuracy columns only",
    "williams": "Williams' t for two correlations with the labels sharing them, on the predictions averaged "
                "over matched seeds; Corr columns only",
}
ITEM_TESTS = ("bootstrap", "mcnemar", "williams")


@dataclass
class ItemRef:
    """Where a cell's value for one seed comes from: a run's test predictions at its selected epoch."""

    view: Any  # a RunView with its run folder (`path`)
    epoch: int
    domain: str
    rate: float
    metric: str


ItemRefs = dict[tuple[str, str, int], dict[int, ItemRef]]  # as SeedValues


def check_test(test: str) -> None:
    if test not in TESTS:
        raise UserError(f"--test {test!r}: use one of {', '.join(TESTS)}")


def mark_significance(table: Table, values: SeedValues, reference: str, alpha: float = ALPHA, *, test: str = "t",
                      items: ItemRefs | None = None) -> None:
    """Mark (`*`) the cells of `ours` rows that differ from the reference row by `test` (at least 2
    matched seeds for `t` and `wilcoxon`, 1 for the item-level tests), Holm-adjusted across every test
    in the table."""
    from msabench.stats import holm

    check_test(test)
    ours = [r for r in table.rows if r.kind == "ours"]
    ref = find_row(ours, reference, table.meta.get("row_models", {}))
    tests: list[tuple[Row, Column, int, float, int]] = []
    memo: dict[tuple, Any] = {}  # per report: the runs' test arrays; one bootstrap per row pair and domain
    for row in ours:
        if row is ref:
            continue
        for col in table.columns:
            if col.metric in NOT_TESTED:
                continue
            for part in range(max(1, len(col.parts))):
                where = (row.key, col.key, part), (ref.key, col.key, part)
                if test in ITEM_TESTS:
                    a, b = (items or {}).get(where[0], {}), (items or {}).get(where[1], {})
                else:
                    a, b = values.get(where[0], {}), values.get(where[1], {})
                seeds = sorted(set(a) & set(b))
                if len(seeds) < (1 if test in ITEM_TESTS else 2):
                    continue
                p = _p_value(test, [a[s] for s in seeds], [b[s] for s in seeds], memo)
                if p is not None:
                    tests.append((row, col, part, p, len(seeds)))
    adjusted = holm([t[3] for t in tests]) if tests else []
    results = []
    for (row, col, part, p, n), p_adj in zip(tests, adjusted):
        cell = row.cells.get(col.key)
        if cell is None:
            continue
        target = cell.parts[part] if cell.parts else cell
        if not math.isnan(p_adj) and p_adj < alpha:
            target.mark = "*"
        results.append({"row": row.key, "column": col.key, "part": part, "p": _round(p),
                        "p_holm": None if math.isnan(p_adj) else _round(float(p_adj)), "n_seeds": n})
    ref.note = "reference"
    table.meta["reference"] = {"row": ref.key, "label": ref.label, "test": test, "tests": results}
    table.caption += (f" *: differs from {ref.label} at p < {alpha:g} ({TESTS[test]}, "
                      f"Holm-adjusted across the table's {len(tests)} tests).")


def _p_value(test: str, a: list, b: list, memo: dict[tuple, Any]) -> float | None:
    """The two-sided p of `test` for one cell (None when the test does not apply to its metric)."""
    from msabench import stats

    if test == "t":
        return stats.paired_t(a, b)[1]
    if test == "wilcoxon":
        return stats.wilcoxon(a, b)[1]
    metric = a[0].metric
    (pred_a, true), (pred_b, true_b) = _stacked(a, memo), _stacked(b, memo)
    if true.shape != true_b.shape or not np.array_equal(true, true_b):
        raise UserError(f"--test {test}: {a[0].view.run_id} and {b[0].view.run_id} were tested on different "
                        f"items of {a[0].domain}; item-level tests need the same test split")
    task, family = _task(a[0].view), _family(a[0])
    if test == "bootstrap":
        key = ("bootstrap", *((r.view.run_id, r.epoch, r.domain, r.rate) for r in (*a, *b)))
        if key not in memo:
            names = sorted(_metrics(task, family, pred_a[:, 0], true))

            def mean_metrics(pred, y):  # every metric, averaged over the seeds
                per_seed = [_metrics(task, family, pred[:, s], y) for s in range(pred.shape[1])]
                return np.array([np.mean([m.get(n, np.nan) for m in per_seed]) for n in names], dtype=np.float64)

            _, p = stats.paired_bootstrap(pred_a, pred_b, true, mean_metrics, n_boot=N_BOOT)
            memo[key] = dict(zip(names, (float(x) for x in np.atleast_1d(p))))
        p = memo[key].get(metric)
        return None if p is None or math.isnan(p) else p
    if test == "mcnemar":
        if not metric.startswith("acc"):
            return None
        right_a = np.concatenate([_correct(task, family, pred_a[:, s], true, metric) for s in range(pred_a.shape[1])])
        right_b = np.concatenate([_correct(task, family, pred_b[:, s], true, metric) for s in range(pred_b.shape[1])])
        kept = ~(np.isnan(right_a) | np.isnan(right_b))  # items the metric leaves out (acc2_non0: label 0)
        return stats.mcnemar(right_a[kept] == 1, right_b[kept] == 1)[1]
    if metric != "corr":  # williams
        return None
    from msabench.metrics import pearson

    mean_a, mean_b = pred_a.mean(axis=1), pred_b.mean(axis=1)
    r_ja, r_jb = _metric(task, family, mean_a, true, "corr"), _metric(task, family, mean_b, true, "corr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r_ab = pearson(mean_a, mean_b)
    if any(math.isnan(r) for r in (r_ja, r_jb, r_ab)):
        return None
    return stats.steiger_williams(r_ja, r_jb, r_ab, len(true))[1]


def _task(view) -> str:
    return str(view.spec["task"])


def _family(ref: ItemRef) -> str:
    from msabench.data.names import family_of

    return family_of(ref.domain)


def _metrics(task: str, family: str, pred, true) -> dict[str, float]:
    from msabench.metrics import task_metrics

    with warnings.catch_warnings():  # an undefined metric (on a resample, one item) is nan
        warnings.simplefilter("ignore")
        values = task_metrics(task, pred, true, family=family)
    return {k: float("nan") if v is None else float(v) for k, v in values.items()}


def _metric(task: str, family: str, pred, true, metric: str) -> float:
    return _metrics(task, family, pred, true).get(metric, float("nan"))


def _correct(task: str, family: str, pred, true, metric: str) -> np.ndarray:
    """Per item, the accuracy metric on that item alone: 1 right, 0 wrong, nan left out by the metric."""
    return np.array([_metric(task, family, pred[i:i + 1], true[i:i + 1], metric) for i in range(len(true))])


def _stacked(refs: Sequence[ItemRef], memo: dict[tuple, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of the seeds side by side ((N, seeds) or (N, seeds, C)) and the labels."""
    preds, trues = [], []
    for ref in refs:
        pred, true = load_items(ref, memo)
        preds.append(pred)
        trues.append(true)
    if any(t.shape != trues[0].shape or not np.array_equal(t, trues[0]) for t in trues):
        raise UserError(f"the seeds of run {refs[0].view.run_id}'s row were tested on different items; item-level "
                        "tests need one test split")
    return np.stack(preds, axis=1), trues[0]


def load_items(ref: ItemRef, memo: dict[tuple, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The run's test predictions at the selected epoch and their labels, from its predictions.npz."""
    from pathlib import Path

    from msabench.store.format import Predictions
    from msabench.store.io import read_npz_file

    view = ref.view
    if not getattr(view, "path", ""):
        raise UserError(f"run {view.run_id} has no stored predictions here; item-level tests read a store's runs")
    path = Path(view.path) / "predictions.npz"
    key = ("items", str(path), ref.epoch, ref.domain, ref.rate)
    if key not in memo:  # the test split's arrays only: small, read once per report
        if not path.is_file():
            raise UserError(f"run {view.run_id} has no predictions.npz; item-level tests (--test bootstrap, mcnemar, "
                            "williams) need it: re-run the run, or use --test t or wilcoxon")
        predictions = Predictions(read_npz_file(path))
        true = predictions.y("test", ref.domain, ref.rate)
        if true is None:
            raise UserError(f"run {view.run_id} was recorded before msabench stored the test labels beside its "
                            "predictions, which item-level tests (--test bootstrap, mcnemar, williams) need: delete "
                            "its folder and re-run the sweep, or use --test t or wilcoxon")
        memo[key] = (np.asarray(predictions.pred(ref.epoch, "test", ref.domain, ref.rate)), np.asarray(true))
    return memo[key]


def _round(p: float) -> float | None:
    """p-values to 4 significant digits: stable across scipy versions (golden files)."""
    return None if p is None or math.isnan(p) else float(f"{p:.4g}")


def find_row(rows: Sequence[Row], reference: str, models: dict[str, str]) -> Row:
    """The row named by `reference`: its key or label, else the only row of that model spec/variant."""
    for row in rows:
        if reference in (row.key, row.label):
            return row
    by_model = [row for row in rows if models.get(row.key) == reference]
    if len(by_model) == 1:
        return by_model[0]
    if len(by_model) > 1:
        raise UserError(f"--reference {reference!r} names {len(by_model)} rows; give one of: "
                        f"{', '.join(r.label for r in by_model)}")
    known = sorted({models.get(r.key) or r.label for r in rows} | {r.label for r in rows})
    raise UserError(f"--reference {reference!r} names no row with runs in this table; use one of: "
                    f"{', '.join(known) or '(no rows with runs)'}")
