"""Issue 21 (protocol fidelity): one test per fix, each failing on the code before it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from msabench.errors import UserError


# -- fix 1: IEMOCAP label columns follow MulT's eval_iemocap (Neutral, Happy, Sad, Angry) ----------------
def test_iemocap_columns_are_mults_order(tmp_path):
    from msabench.data.readers import read_mult_pickle
    from msabench.metrics import multilabel_metrics
    from msabench.types import IEMOCAP_EMOTIONS

    assert IEMOCAP_EMOTIONS == ("neutral", "happy", "sad", "angry")
    rng = np.random.default_rng(0)
    obj = {}
    for split, n in {"train": 6, "valid": 4, "test": 4}.items():
        hot = np.zeros((n, 4), dtype=np.int64)
        hot[:, 1] = 1  # MulT's column 1: Happy
        obj[split] = {"text": rng.normal(size=(n, 3, 2)), "audio": rng.normal(size=(n, 4, 2)),
                      "vision": rng.normal(size=(n, 4, 2)), "labels": np.stack([1 - hot, hot], -1)}
    path = tmp_path / "iemocap_data_noalign.pkl"
    path.write_bytes(pickle.dumps(obj))
    y = read_mult_pickle(path).splits["test"].multilabel
    # a model that says "happy" for every sample is right on happy, and right on no other emotion's positives
    logits = np.where(np.arange(4) == IEMOCAP_EMOTIONS.index("happy"), 5.0, -5.0)[None].repeat(len(y), 0)
    m = multilabel_metrics(logits, y, IEMOCAP_EMOTIONS)
    assert m["acc_happy"] == 1.0 and m["acc_neutral"] == 1.0  # neutral: all negative, predicted negative
    y_neutral_first = y[:, [1, 0, 2, 3]]
    assert multilabel_metrics(logits, y_neutral_first, IEMOCAP_EMOTIONS)["acc_happy"] == 0.0


def test_synthetic_iemocap_corners_follow_the_names():
    from msabench.data.synth_labels import EMOTION_CORNERS, EMOTIONS
    from msabench.types import IEMOCAP_EMOTIONS

    assert EMOTIONS == IEMOCAP_EMOTIONS
    # neutral: no valence, low arousal; happy: positive valence
    assert tuple(EMOTION_CORNERS[EMOTIONS.index("neutral")]) == pytest.approx((0.0, -0.9))
    assert EMOTION_CORNERS[EMOTIONS.index("happy")][0] > 0
