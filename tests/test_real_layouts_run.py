"""`standard` end to end on fabricated files in the real layouts (MMSA, MulT, MELD + features.npz)."""

from __future__ import annotations

import json

import pytest
from fixtures.realdata import write_meld, write_mmsa, write_mult_iemocap

from msabench.cli import main
from msabench.store.runs import Store

RUN = ["run", "--protocol", "standard", "--tiny", "--no-mlflow", "--seeds", "1", "--model", "linear_probe"]


@pytest.fixture()
def root(tmp_path):
    write_mmsa(tmp_path, "MOSI", "unaligned_50.pkl")
    write_mmsa(tmp_path, "SIMS", "unaligned_39.pkl", score_range=1.0)
    write_mult_iemocap(tmp_path)
    write_meld(tmp_path)
    return tmp_path


@pytest.mark.parametrize("dataset,task,metric", [
    ("mosi", "regression", "acc2_has0"), ("sims", "regression", "acc2"),
    ("iemocap", "multilabel", "mean_f1"), ("meld", "classification", "acc"),
])
def test_standard_runs_on_each_real_layout(root, tmp_path, capsys, dataset, task, metric):
    modalities = ["--modalities", "t"] if dataset == "meld" else []
    out = tmp_path / "store"
    assert main([*RUN, "--dataset", dataset, "--data-root", str(root), "--out", str(out), *modalities]) == 0
    (run,) = list(Store(out).runs())
    spec = run.read_spec_dict()
    assert run.status() == "done" and spec["task"] == task and spec["datasets"] == [dataset]
    test_records = [r for r in run.read_records() if r["split"] == "test"]
    assert test_records and metric in test_records[0]["metrics"]
    capsys.readouterr()
    assert main(["report", "--out", str(out), "--format", "json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert tables[0]["meta"]["synthetic"] is False
    assert "synthetic data" not in tables[0]["caption"]


def test_real_name_without_data_root_is_a_clean_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSABENCH_DATA_ROOT", raising=False)
    assert main([*RUN, "--dataset", "mosi", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "Traceback" not in err
