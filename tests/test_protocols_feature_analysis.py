"""`feature-analysis`: plans, a tiny run on synth-dg writing features.npz + analysis.json, and
`--from-run` on a stored DG run; the selection scored against the synthetic ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msabench.analysis import read_features
from msabench.cli import main
from msabench.errors import UserError
from msabench.protocols import PROTOCOLS
from msabench.protocols.base import PlanRequest

FA = PROTOCOLS.get("feature-analysis")


def test_plans_multisource_setting_a_by_default():
    runs = FA.plan(PlanRequest())
    assert len(runs) == 3 and {r.setting for r in runs} == {"A"}
    assert runs[0].source_domains == ("synth-dg/mosei", "synth-dg/meld")
    assert runs[0].target_domains == ("synth-dg/mosi",)
    assert runs[0].task == "classification" and runs[0].label_rule == "round"
    assert {r.setting for r in FA.plan(PlanRequest(setting="C", seeds=(1,)))} == {"C"}
    single = FA.plan(PlanRequest(datasets=("synth-mosi",), seeds=(1,)))
    assert single[0].datasets == ("synth-mosi",) and single[0].selection_rules == ("val", "last")
    with pytest.raises(UserError):
        FA.plan(PlanRequest(datasets=("synth-mosi",), setting="A"))
    assert FA.describe()["outputs"] == ["features.npz", "analysis.json"]


def _run_dir(out, protocol):
    from msabench.store import Store

    (rd,) = [rd for rd in Store(out).runs() if rd.is_done() and rd.read_spec().protocol == protocol]
    return rd


@pytest.fixture(scope="module")
def fa_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa") / "store"
    assert main(["run", "--protocol", "feature-analysis", "--seeds", "1", "--model", "linear_probe", "--tiny",
                 "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_feature_analysis_run_writes_features_and_analysis(fa_store):
    rd = _run_dir(fa_store, "feature-analysis")
    analysis = json.loads((rd.path / "analysis.json").read_text())
    feats = read_features(dict(np.load(rd.path / "features.npz", allow_pickle=False)))
    domains = ["synth-dg/mosei", "synth-dg/meld", "synth-dg/mosi"]
    assert analysis["domains"] == domains and feats["domains"] == domains
    assert analysis["rule"] == "train-domain" and analysis["split"] == "test"
    # linear_probe's pooled inputs are split per modality, columns = input feature indices
    assert set(analysis["blocks"]) == {"input/t", "input/v"}
    assert feats["columns"]["input/t"] == list(range(768)) and feats["columns"]["input/v"] == list(range(35))
    assert feats["features"]["synth-dg/mosi"]["input/v"].shape[1] == 35
    assert len(feats["labels"]["synth-dg/mosi"]) == len(feats["ids"]["synth-dg/mosi"])
    for block in ("input/t", "input/v"):
        per = analysis["per_domain"]["synth-dg/mosi"]["blocks"][block]
        assert per["retained"] is not None and set(per["label_dependence"]) >= {"selected", "removed"}
        truth = analysis["ground_truth"][block]
        assert truth["invariant"] and truth["spurious"]
        for key in ("precision", "recall", "precision_same_sign", "recall_same_sign"):
            assert truth[key] is None or 0.0 <= truth[key] <= 1.0
    assert "input/t|input/v" in analysis["per_domain"]["synth-dg/mosi"]["cross_independence"]
    # the invariant features are label-dependent in every domain: most of them are selected everywhere
    assert analysis["ground_truth"]["input/t"]["recall"] >= 0.5


def test_from_run_analyses_a_stored_dg_run(tmp_path):
    out = tmp_path / "store"
    assert main(["run", "--protocol", "dg-multisource", "--setting", "A", "--seeds", "1", "--tiny",
                 "--model", "linear_probe:model.features=invariant", "--out", str(out), "--device", "cpu"]) == 0
    rd = _run_dir(out, "dg-multisource")
    assert not (rd.path / "analysis.json").exists()
    assert main(["run", "--protocol", "feature-analysis", "--from-run", rd.run_id, "--out", str(out),
                 "--device", "cpu"]) == 0
    analysis = json.loads((rd.path / "analysis.json").read_text())
    assert analysis["from_run"] is True and analysis["run_id"] == rd.run_id
    truth = analysis["ground_truth"]["input/t"]
    assert truth["precision"] == 1.0  # the probe reads invariant features only: whatever it selects is invariant
    assert set(analysis["blocks"]) == {"input/t", "input/v"}
    assert main(["run", "--protocol", "standard", "--from-run", rd.run_id, "--out", str(out)]) == 2
    assert main(["run", "--protocol", "feature-analysis", "--from-run", "nosuchrun", "--out", str(out)]) == 2
