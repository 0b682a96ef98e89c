"""The Python API (docs/python-api.md): a notebook's session, run through `msabench.sweeps` and read
through `msabench.results`, gives the same tables as `msabench export` and `msabench report --format csv`."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from msabench import results, sweeps
from msabench.cli import main
from msabench.core.errors import UserError
from msabench.report.export import COLUMNS

TEXT_COLUMNS = [c for c in COLUMNS if c not in ("seed", "epoch", "rate", "eval_rate", "value")]


@pytest.fixture(scope="module")
def notebook_store(tmp_path_factory):
    """What a notebook does: define a small study as a dict, run it, load the store."""
    out = tmp_path_factory.mktemp("api") / "store"
    study = sweeps.plan({"protocol": "standard", "models": ["constant", "linear_probe"], "datasets": ["synth-mosi"],
                         "seeds": [1, 2], "tiny": True, "set": {"train.epochs": 2}})
    assert [s.model for s in study.search] == ["constant", "linear_probe", "constant", "linear_probe"]
    outcome = sweeps.run(study, out, threads=1)
    assert outcome.ok and len(outcome.search.done) == 4 and outcome.final_run_ids == [s.run_id for s in study.search]
    return out


def test_records_equal_msabench_export(notebook_store, capsys):
    frame = results.load(notebook_store).records()
    assert main(["export", "--out", str(notebook_store)]) == 0
    exported = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={c: str for c in TEXT_COLUMNS},
                           keep_default_na=False, na_values={"value": ["nan"]})
    assert list(frame.columns) == list(COLUMNS) and len(frame) > 100
    pd.testing.assert_frame_equal(frame, exported)


def test_table_frames_equal_msabench_report_csv(notebook_store, capsys):
    frames = results.load(notebook_store).table_frames()
    assert main(["report", "--out", str(notebook_store), "--format", "csv"]) == 0
    reported = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False, na_values=[""],
                           dtype={"table": str, "row": str, "row_label": str, "row_caveat": str, "row_group": str,
                                  "row_kind": str,
                                  "column": str, "column_group": str, "column_subgroup": str, "column_label": str,
                                  "metric": str, "scale": str, "mark": str, "text": str})
    (frame,) = frames.values()
    frame = frame.astype(object).where(frame.notna(), np.nan)
    reported = reported.astype(object).where(reported.notna(), np.nan)
    for column in ("row_caveat", "row_group", "column_group", "column_subgroup", "mark", "text"):  # "" reads as NaN
        frame[column] = frame[column].replace("", np.nan)
    pd.testing.assert_frame_equal(frame, reported, check_dtype=False)
    assert set(frame["row_label"]) == {"constant", "linear_probe"} and set(frame["n_seeds"]) == {2}
    assert set(frame["row_caveat"]) == {"smoke run"}  # a --tiny study


def test_runs_and_selected_metrics(notebook_store):
    res = results.load(notebook_store)
    runs = res.runs()
    assert len(runs) == 4 and set(runs["status"]) == {"done"} and set(runs["seed"]) == {1, 2}
    assert set(runs["train.epochs"]) == {2} and "model.features" in runs.columns  # resolved config keys as columns
    selected = res.selected("val")
    records = res.records()
    for run_id, rows in selected.groupby("run_id"):
        (epoch,) = set(rows["epoch"])
        assert set(rows["selection"]) == {"val"}
        valid_mae = records[(records.run_id == run_id) & (records.split == "valid") & (records.metric == "mae")]
        best = valid_mae.loc[valid_mae["value"].idxmin(), "epoch"]  # val on regression: lowest valid MAE, earliest
        assert epoch == best
    assert set(res.selected(["val", "last"])["selection"]) == {"val", "last"}
    assert set(res.selected()["selection"]) == {"val"}  # the protocol's default rule
    with pytest.raises(UserError, match="unknown selection rule"):
        res.selected("best-test")
    tables = res.tables()
    assert [t.id for t in tables] == list(res.table_frames())


def test_the_api_modules_import_without_torch():
    """A notebook that only reads results never pays for torch (docs/architecture.md §1, layering)."""
    code = "import sys, msabench.results, msabench.sweeps; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
