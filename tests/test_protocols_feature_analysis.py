"""`feature-analysis`: plans, a tiny run on synth-dg writing features.npz + analysis.json, and
`--from-run` on a stored DG run; the selection scored against the synthetic ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.evaluation.feature_analysis import read_features
from msabench.plan.request import Request
from msabench.protocols import PROTOCOLS

FA = PROTOCOLS.get("feature-analysis")


def test_plans_multisource_setting_a_by_default():
    runs = FA.plan(Request())
    assert len(runs) == 3 and {r.setting for r in runs} == {"A"}
    assert runs[0].source_domains == ("synth-dg/mosei", "synth-dg/meld")
    assert runs[0].target_domains == ("synth-dg/mosi",)
    assert runs[0].task == "classification" and runs[0].label_rule == "round"
    assert {r.setting for r in FA.plan(Request(setting="C", seeds=(1,)))} == {"C"}
    single = FA.plan(Request(datasets=("synth-mosi",), seeds=(1,)))
    assert single[0].datasets == ("synth-mosi",) and single[0].selection_rules == ("val", "last")
    with pytest.raises(UserError):
        FA.plan(Request(datasets=("synth-mosi",), setting="A"))
    assert FA.describe()["outputs"] == ["features.npz", "analysis.json"]


def _run_dir(out, protocol):
    from msabench.store.runs import Store

    (rd,) = [rd for rd in Store(out).runs() if rd.is_done() and rd.read_spec().protocol == protocol]
    return rd


@pytest.fixture(scope="module")
def fa_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa") / "store"
    assert main(["run", "--no-mlflow", "--protocol", "feature-analysis", "--seeds", "1", "--model", "linear_probe",
                 "--tiny",
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
    assert analysis["blocks"]["input/t"]["selection"] == "l1"


def test_from_run_analyses_a_stored_dg_run(tmp_path):
    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "dg-multisource", "--setting", "A", "--seeds", "1", "--tiny",
                 "--selection", "oracle",
                 "--model", "linear_probe:model.features=invariant", "--out", str(out), "--device", "cpu"]) == 0
    rd = _run_dir(out, "dg-multisource")
    assert not (rd.path / "analysis.json").exists()
    assert main(["run", "--no-mlflow", "--protocol", "feature-analysis", "--from-run", rd.run_id, "--out", str(out),
                 "--device", "cpu"]) == 0
    analysis = json.loads((rd.path / "analysis.json").read_text())
    assert analysis["from_run"] is True and analysis["run_id"] == rd.run_id
    for block in ("input/t", "input/v"):  # the probe reads invariant features only: all it selects is invariant
        truth = analysis["ground_truth"][block]
        assert set(truth["selected"]) <= set(truth["invariant"]) and truth["spurious_selected"] == 0
        assert truth["precision"] in (1.0, None)
    assert set(analysis["blocks"]) == {"input/t", "input/v"}
    assert main(["run", "--no-mlflow", "--protocol", "standard", "--from-run", rd.run_id, "--out", str(out)]) == 2
    assert main(["run", "--no-mlflow", "--protocol", "feature-analysis", "--from-run", "nosuchrun", "--out",
                 str(out)]) == 2


# -- a tiny masked model whose selection acts on input features: the ground truth's invariant set --------------


@pytest.fixture
def masked_model():
    """`gt_mask_probe`: a linear probe over all pooled inputs behind a fixed 0/1 mask that keeps the
    ground truth's invariant features; it returns the mask as `features["input:mask"]`."""
    from dataclasses import dataclass
    from typing import ClassVar

    import torch

    from msabench.api.model import MODELS, MSAModel, masked_mean
    from msabench.api.types import ModelOutput

    @dataclass(frozen=True)
    class Cfg:
        width: int = 1

    class GroundTruthMask(MSAModel):
        name: ClassVar[str] = "gt_mask_probe"
        config_cls: ClassVar[type] = Cfg
        TRAIN_DEFAULTS: ClassVar[dict] = {"train.lr": 0.03, "train.epochs": 3}
        TASKS: ClassVar[tuple] = ("classification",)

        def __init__(self, cfg, spec):
            super().__init__(cfg, spec)
            self.order = [m for m in ("t", "a", "v") if m in spec.modalities]
            mask = torch.cat([torch.isin(torch.arange(spec.dims[m]),
                                         torch.tensor(spec.feature_groups[m]["invariant"])).float()
                              for m in self.order])
            self.register_buffer("mask", mask)
            self.linear = torch.nn.Linear(len(mask), spec.n_outputs)

        def feature_layout(self):
            return {"input": [(m, i) for m in self.order for i in range(self.spec.dims[m])]}

        def forward(self, batch):
            x = torch.cat([masked_mean(*batch.modality(m)) for m in self.order], dim=1)
            mask = self.mask.expand_as(x)
            return ModelOutput(pred=self.linear(x * mask), features={"input": x, "input:mask": mask})

    MODELS.add("gt_mask_probe", GroundTruthMask)
    yield "gt_mask_probe"
    MODELS._items.pop("gt_mask_probe", None)


def test_a_model_mask_on_the_invariant_features_scores_precision_and_recall_one(tmp_path, masked_model):
    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "feature-analysis", "--seeds", "1", "--model", masked_model,
                 "--tiny",
                 "--out", str(out), "--device", "cpu"]) == 0
    rd = _run_dir(out, "feature-analysis")
    analysis = json.loads((rd.path / "analysis.json").read_text())
    for block in ("input/t", "input/v"):
        assert analysis["blocks"][block]["selection"] == "model-mask"
        truth = analysis["ground_truth"][block]
        assert truth["selected"] == truth["invariant"] and truth["invariant"]
        assert (truth["precision"], truth["recall"], truth["spurious_selected"]) == (1.0, 1.0, 0)
        assert analysis["consistency"][block]["jaccard_mean"] == 1.0
    feats = read_features(dict(np.load(rd.path / "features.npz", allow_pickle=False)))
    assert set(feats["masks"]["synth-dg/mosi"]) == {"input/t", "input/v"}
