"""Model selection as pure functions over a run's records (torch-free).

The same functions choose checkpoints during training (on the records so far) and the reported
epoch post hoc in `report`, so what is trained and what is reported can never disagree.

Rules (design 8):
  val           best validation selection metric (MAE / accuracy / mean F1) over the training domains
  train-domain  best mean source-valid accuracy (DG; equal to `val` for class heads)
  oracle        best mean target-valid accuracy (labelled wherever shown)
  lodo          best mean held-out-source valid accuracy of the run's leave-one-domain-out helpers
  last          the last epoch
Ties go to the earliest epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from msabench.core.errors import UserError
from msabench.metrics import selection_metric

RULES = ("val", "train-domain", "oracle", "lodo", "last")


def _per_epoch_mean(records: Iterable[dict[str, Any]], split: str, domains: Sequence[str], metric: str,
                    rate: float | None) -> dict[int, float]:
    sums: dict[int, list[float]] = {}
    for r in records:
        if r["split"] != split or r["domain"] not in domains:
            continue
        if rate is not None and float(r.get("rate", 0.0)) != rate:
            continue
        value = r["metrics"].get(metric)
        if value is None:
            continue
        sums.setdefault(int(r["epoch"]), []).append(float(value))
    return {e: sum(v) / len(v) for e, v in sums.items() if len(v) == len(domains)}


def _best(scores: dict[int, float], direction: str) -> int | None:
    if not scores:
        return None
    sign = -1.0 if direction == "max" else 1.0
    finite = {e: s for e, s in scores.items() if s == s}  # drop NaN
    if not finite:
        return min(scores)
    return min(finite, key=lambda e: (sign * finite[e], e))


def select_epoch(
    records: Sequence[dict[str, Any]],
    rule: str,
    *,
    task: str,
    sources: Sequence[str],
    targets: Sequence[str] = (),
    train_rate: float = 0.0,
    lodo_records: Sequence[Sequence[dict[str, Any]]] = (),
) -> int | None:
    """The epoch `rule` picks, or None when the records cannot answer it (yet)."""
    if rule not in RULES:
        raise UserError(f"unknown selection rule {rule!r}; use one of {', '.join(RULES)}")
    if rule == "last":
        epochs = [int(r["epoch"]) for r in records]
        return max(epochs) if epochs else None
    if rule == "val":
        metric, direction = selection_metric(task)
        return _best(_per_epoch_mean(records, "valid", sources, metric, train_rate), direction)
    if rule == "train-domain":
        return _best(_per_epoch_mean(records, "valid", sources, "acc", train_rate), "max")
    if rule == "oracle":
        if not targets:
            raise UserError("selection 'oracle' needs target domains: it applies to the DG protocols only")
        return _best(_per_epoch_mean(records, "valid", targets, "acc", train_rate), "max")
    # lodo: each helper run was validated on its held-out source; average those per epoch.
    if not lodo_records:
        return None
    per_helper = []
    for helper in lodo_records:
        held_out = sorted({r["domain"] for r in helper if r["split"] == "valid"} & set(sources))
        per_helper.append(_per_epoch_mean(helper, "valid", held_out, "acc", train_rate))
    common = set.intersection(*(set(s) for s in per_helper)) if per_helper else set()
    mean = {e: sum(s[e] for s in per_helper) / len(per_helper) for e in common}
    best = _best(mean, "max")
    epochs = {int(r["epoch"]) for r in records}
    return min(best, max(epochs)) if best is not None and epochs else best


def metrics_at(records: Sequence[dict[str, Any]], epoch: int, split: str, domain: str,
               rate: float | None = None) -> dict[str, float] | None:
    for r in records:
        if int(r["epoch"]) == epoch and r["split"] == split and r["domain"] == domain:
            if rate is None or float(r.get("rate", 0.0)) == rate:
                return r["metrics"]
    return None
