"""Three-class label rules for regression scores (docs/architecture.md §5).

Class order is neg=0, neu=1, pos=2 everywhere.

- `sign`:  s < 0 -> neg, s == 0 -> neu, s > 0 -> pos.
- `round`: sign(np.round(s)), i.e. neutral iff -0.5 <= s <= 0.5 (np.round rounds half to even, so
  +-0.5 round to 0). S2LIF's MOSI test counts (347/106/233) imply this rule.
"""

from __future__ import annotations

import numpy as np

from msabench.core.errors import UserError, did_you_mean
from msabench.core.types import CLASS_NAMES

RULES = ("sign", "round")
N_CLASSES = 3


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise UserError(f"unknown label rule {rule!r}.{did_you_mean(str(rule), RULES)} Use one of: {', '.join(RULES)}.")
    return rule


def to_classes(scores: np.ndarray, rule: str) -> np.ndarray:
    """(N,) sentiment scores -> (N,) int64 classes under `rule` (neg=0, neu=1, pos=2)."""
    check_rule(rule)
    s = np.asarray(scores, dtype=np.float64)
    if rule == "round":
        s = np.round(s)
    return (np.sign(s) + 1).astype(np.int64)


def class_counts(classes: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """(n_classes,) int64 counts of each class."""
    return np.bincount(np.asarray(classes, dtype=np.int64).ravel(), minlength=n_classes)[:n_classes]


def class_distribution(classes: np.ndarray) -> dict[str, int]:
    """{"negative": n, "neutral": n, "positive": n}."""
    counts = class_counts(classes)
    return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}
