"""Three-class label rules (docs/architecture.md §5): `sign` and `round`, neg=0 neu=1 pos=2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from msabench.core.errors import UserError
from msabench.data.labels import RULES, class_counts, class_distribution, to_classes

REPO = Path(__file__).resolve().parents[1]
MOSI_CSV = REPO.parent / "shared" / "data" / "MOSI" / "label.csv"


def test_rules():
    assert RULES == ("sign", "round")


def test_sign_rule():
    s = np.array([-3.0, -0.2, -1e-6, 0.0, 1e-6, 0.4, 2.8])
    assert to_classes(s, "sign").tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert to_classes(s, "sign").dtype == np.int64


def test_round_rule_boundaries():
    s = np.array([-3.0, -1.5, -0.6, -0.5001, -0.5, -0.2, 0.0, 0.2, 0.5, 0.5001, 0.6, 1.5, 2.5])
    assert to_classes(s, "round").tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    # neutral iff -0.5 <= s <= 0.5
    grid = np.linspace(-3, 3, 6001)
    assert np.array_equal(to_classes(grid, "round") == 1, (grid >= -0.5) & (grid <= 0.5))
    assert to_classes([1 / 3, -2 / 3], "round").tolist() == [1, 0]


def test_unknown_rule():
    with pytest.raises(UserError, match="Did you mean: round"):
        to_classes(np.zeros(2), "rounds")


def test_counts():
    c = np.array([0, 2, 2, 1, 2])
    assert class_counts(c).tolist() == [1, 1, 3]
    assert class_distribution(c) == {"negative": 1, "neutral": 1, "positive": 3}
    assert class_counts(np.array([], dtype=np.int64)).tolist() == [0, 0, 0]


@pytest.mark.skipif(not MOSI_CSV.is_file(), reason="../shared/data is absent")
def test_real_mosi_test_counts():
    from msabench.data.readers import read_label_csv

    test = read_label_csv(MOSI_CSV).splits["test"].regression
    assert class_counts(to_classes(test, "sign")).tolist() == [379, 30, 277]
    assert class_counts(to_classes(test, "round")).tolist() == [347, 106, 233]
