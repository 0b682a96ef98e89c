"""Model selection as pure functions over a run's records (torch-free).

The same functions choose checkpoints during training (on the records so far) and the reported
epoch post hoc in `report`, so what is trained and what is reported can never disagree.

The rules (docs/architecture.md §8) are registered once, in `SELECTION_RULES` below, each with the
label the report prints and what it needs; protocols, the loop, the report and the CLI read them
from there. Ties go to the earliest epoch. No rule picks a `provisional` epoch: one before a staged
model's last stage, while the model is not yet the whole method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from msabench.core.errors import UserError
from msabench.core.registry import Registry
from msabench.metrics import selection_metric


@dataclass(frozen=True)
class SelectionRule:
    name: str
    label: str  # a short human-readable name (listings, help)
    description: str
    caption_note: str = ""  # said beside the rule in every table caption that uses it
    needs_targets: bool = False  # reads the target domains' valid splits (DG only)
    # Answered from other runs' records (the lodo helpers), so never during training: the loop
    # keeps no checkpoint for it and it cannot drive early stopping.
    needs_helper_runs: bool = False


SELECTION_RULES: Registry[SelectionRule] = Registry("selection rule", listing=None)
_IN_ORDER = (
    SelectionRule("val", "best validation metric",
                  "best validation selection metric (MAE / accuracy / mean F1) over the training domains"),
    SelectionRule("train-domain", "best source-domain validation accuracy",
                  "best mean source-valid accuracy (DG; equal to `val` for class heads)"),
    SelectionRule("oracle", "oracle (target validation accuracy)",
                  "best mean target-valid accuracy (labelled wherever shown)", needs_targets=True,
                  caption_note="oracle: selected on the target valid split"),
    SelectionRule("lodo", "leave-one-domain-out validation",
                  "best mean held-out-source valid accuracy of the run's leave-one-domain-out helper runs",
                  needs_helper_runs=True),
    SelectionRule("last", "last epoch", "the last epoch"),
)
for _rule in _IN_ORDER:
    SELECTION_RULES.add(_rule.name, _rule)
RULES = tuple(r.name for r in _IN_ORDER)


def check_rule(rule: str, option: str = "--selection") -> SelectionRule:
    """The registered rule named `rule`, or a UserError listing them."""
    if rule not in SELECTION_RULES:
        raise UserError(f"{option} {rule!r}: unknown selection rule; use one of {', '.join(RULES)}")
    return SELECTION_RULES.get(rule)


def caption_text(rule: str) -> str:
    """How a table caption names the rule: `selection rule 'oracle' (oracle: selected on ...)`."""
    note = SELECTION_RULES.get(rule).caption_note if rule in SELECTION_RULES else ""
    return f"selection rule '{rule}'" + (f" ({note})" if note else "")


def rules_during_training(rules: Sequence[str]) -> tuple[str, ...]:
    """The rules the loop can answer from the run's own records as it trains (checkpoints, stopping)."""
    return tuple(r for r in rules if not SELECTION_RULES.get(r).needs_helper_runs)


def rule_value(records: Sequence[dict[str, Any]], rule: str, *, task: str, sources: Sequence[str],
               targets: Sequence[str] = (), train_rate: float = 0.0) -> tuple[str, float | None]:
    """(metric, its mean over the domains) that `rule` compares, at the last epoch of `records`
    (progress lines); `last` and `lodo` show the `val` metric, which the records answer."""
    metric = selection_metric(task)[0] if rule in ("val", "last", "lodo") else "acc"
    domains = targets if rule == "oracle" else sources
    means = _per_epoch_mean(records, "valid", domains, metric, train_rate)
    return metric, means[max(means)] if means else None


def _per_epoch_mean(records: Iterable[dict[str, Any]], split: str, domains: Sequence[str], metric: str,
                    rate: float | None) -> dict[int, float]:
    sums: dict[int, list[float]] = {}
    for r in records:
        if r["split"] != split or r["domain"] not in domains or r.get("provisional"):
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
    check_rule(rule, "selection rule")
    if rule == "last":
        epochs = [int(r["epoch"]) for r in records if not r.get("provisional")]
        return max(epochs) if epochs else None
    scores, direction = rule_scores(records, rule, task=task, sources=sources, targets=targets,
                                    train_rate=train_rate, lodo_records=lodo_records)
    best = _best(scores, direction)
    if rule != "lodo":
        return best
    epochs = {int(r["epoch"]) for r in records}
    return min(best, max(epochs)) if best is not None and epochs else best


def rule_scores(records: Sequence[dict[str, Any]], rule: str, *, task: str, sources: Sequence[str],
                targets: Sequence[str] = (), train_rate: float = 0.0,
                lodo_records: Sequence[Sequence[dict[str, Any]]] = ()) -> tuple[dict[int, float], str]:
    """The validation score per epoch that `rule` optimises, and its direction ("min" | "max").
    `last` optimises nothing: it has no scores."""
    check_rule(rule, "selection rule")
    if rule == "last":
        raise UserError("selection rule 'last' picks the last epoch and has no validation score; "
                        "use val (or the protocol's validation rule) to compare configurations")
    if rule == "val":
        metric, direction = selection_metric(task)
        return _per_epoch_mean(records, "valid", sources, metric, train_rate), direction
    if rule == "train-domain":
        return _per_epoch_mean(records, "valid", sources, "acc", train_rate), "max"
    if rule == "oracle":
        if not targets:
            raise UserError("selection 'oracle' needs target domains: it applies to the DG protocols only")
        return _per_epoch_mean(records, "valid", targets, "acc", train_rate), "max"
    return _lodo_scores(lodo_records, sources, train_rate), "max"


def selection_score(records: Sequence[dict[str, Any]], rule: str, **kwargs: Any) -> tuple[float | None, str]:
    """The validation score of a run under `rule` (the best of `rule_scores`; None when it cannot be
    answered) and its direction: what a grid study compares configurations by. Never a test value."""
    scores, direction = rule_scores(records, rule, **kwargs)
    best = _best(scores, direction)
    return (None if best is None else scores[best]), direction


def lodo_clamp(records: Sequence[dict[str, Any]], *, sources: Sequence[str], train_rate: float = 0.0,
               lodo_records: Sequence[Sequence[dict[str, Any]]] = ()) -> tuple[int, int] | None:
    """(the helpers' best epoch, the run's last epoch) when `lodo` had to clamp its choice to the
    run's epochs (the helpers ran longer), else None."""
    best = _lodo_best(lodo_records, sources, train_rate)
    epochs = {int(r["epoch"]) for r in records}
    if best is None or not epochs or best <= max(epochs):
        return None
    return best, max(epochs)


def _lodo_best(lodo_records, sources, train_rate) -> int | None:
    return _best(_lodo_scores(lodo_records, sources, train_rate), "max")


def _lodo_scores(lodo_records, sources, train_rate) -> dict[int, float]:
    # lodo: each helper run was validated on its held-out source; average those per epoch.
    if not lodo_records:
        return {}
    per_helper = []
    for helper in lodo_records:
        held_out = sorted({r["domain"] for r in helper if r["split"] == "valid"} & set(sources))
        per_helper.append(_per_epoch_mean(helper, "valid", held_out, "acc", train_rate))
    common = set.intersection(*(set(s) for s in per_helper)) if per_helper else set()
    return {e: sum(s[e] for s in per_helper) / len(per_helper) for e in common}


def metrics_at(records: Sequence[dict[str, Any]], epoch: int, split: str, domain: str,
               rate: float | None = None) -> dict[str, float] | None:
    for r in records:
        if int(r["epoch"]) == epoch and r["split"] == split and r["domain"] == domain:
            if rate is None or float(r.get("rate", 0.0)) == rate:
                return r["metrics"]
    return None
