"""`msabench export`: one tidy row per run x epoch x split x domain x metric (docs/architecture.md §3, §9).

`write_fake_run` (a done run written through the store's API, no training) is shared with
test_tracking.py and test_sweep.py.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.report.export import COLUMNS, export, rows
from msabench.store.runs import Store, StoreError

SPLITS = ("train", "valid", "test")


def write_fake_run(out, seed: int = 1, model: str = "constant", datasets=("synth-mosi",), epochs: int = 3,
                   seconds: float = 0.5, rate: float = 0.0, extra_rates=()) -> RunSpec:
    """A done run with records, predictions, a checkpoint-free summary: what a real run leaves."""
    spec = RunSpec(protocol="standard", protocol_version="1", setting="", datasets=tuple(datasets),
                   data_hashes=tuple("d" * 16 for _ in datasets), model=model,
                   config={"train.epochs": epochs, "train.lr": 0.001, "model.hidden": 8, "data.scale": 0.05},
                   impl_version=1, seed=seed, rate=rate, eval_rates=tuple(extra_rates))
    rd = Store(out).run_dir(spec.run_id)
    with rd.claim() as claimed:
        assert claimed
        rd.write_spec(spec)
        rd.write_env({"device": "cpu", "threads": 1})
        preds = {}
        for epoch in range(epochs):
            recs = []
            for split in SPLITS:
                recs.append({"epoch": epoch, "split": split, "domain": datasets[0], "rate": rate,
                             "metrics": {"mae": 1.0 / (epoch + 1 + seed), "acc2_has0": 0.5 + 0.1 * epoch,
                                         "corr": None},
                             "loss": {"task": 0.3 - 0.01 * epoch}, "seconds": seconds / len(SPLITS)})
                preds[f"ids/{split}/{datasets[0]}"] = np.array(["a", "b"])
                preds[f"pred/{epoch}/{split}/{datasets[0]}"] = np.array([0.1, -0.2], np.float32)
            for r in extra_rates:
                recs.append({"epoch": epoch, "split": "test", "domain": datasets[0], "rate": r,
                             "metrics": {"mae": 2.0}, "loss": {}, "seconds": 0.0})
            rd.append_records(recs)
        rd.write_predictions(preds)
        rd.write_json("summary.json", {"epochs_run": epochs})
        rd.mark_done()
    return spec


@pytest.fixture()
def store(tmp_path):
    out = tmp_path / "store"
    write_fake_run(out, seed=1)
    write_fake_run(out, seed=2, model="tfn@frozen", extra_rates=(0.5,))
    return out


def test_rows_are_tidy_with_the_run_identity(store):
    table = list(rows(store))
    # per run: 3 epochs x 3 splits x (3 metrics + 1 loss); the second run adds 3 x (1 metric) at rate 0.5
    assert len(table) == 3 * 3 * 4 + (3 * 3 * 4 + 3)
    assert all(set(r) == set(COLUMNS) for r in table)
    first = next(r for r in table if r["model"] == "tfn@frozen" and r["metric"] == "mae" and r["eval_rate"] == 0.5)
    assert first["variant"] == "frozen" and first["seed"] == 2 and first["split"] == "test"
    assert first["protocol"] == "standard" and first["data"] == "synthetic" and first["rate"] == 0.0
    losses = [r for r in table if r["kind"] == "loss"]
    assert {r["metric"] for r in losses} == {"task"}
    corr = [r for r in table if r["metric"] == "corr"]
    assert corr and all(math.isnan(r["value"]) for r in corr)  # undefined, kept as NaN, never dropped silently
    keys = [(r["run_id"], r["epoch"], r["split"], r["domain"], r["eval_rate"], r["kind"], r["metric"]) for r in table]
    assert len(keys) == len(set(keys))


def test_csv_to_stdout_and_file(store, tmp_path, capsys):
    assert main(["export", "--out", str(store)]) == 0
    text = capsys.readouterr().out
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(list(rows(store)))
    assert tuple(parsed[0]) == COLUMNS
    target = tmp_path / "t.csv"
    assert main(["export", "--out", str(store), "--format", "csv", "-o", str(target)]) == 0
    assert target.read_text() == text


def test_parquet_round_trip(store, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "t.parquet"
    assert main(["export", "--out", str(store), "--format", "parquet", "-o", str(target)]) == 0
    table = pq.read_table(target)
    assert table.num_rows == len(list(rows(store)))
    assert table.column_names == list(COLUMNS)
    assert str(table.schema.field("value").type) == "double" and str(table.schema.field("epoch").type) == "int64"
    # no -o: a clear error, exit 2
    assert main(["export", "--out", str(store), "--format", "parquet"]) == 2
    assert "-o FILE.parquet" in capsys.readouterr().err


def test_only_done_runs_and_schema_checked(store, tmp_path, capsys):
    spec = write_fake_run(tmp_path / "other", seed=5)
    (Store(tmp_path / "other").run_dir(spec.run_id).path / "done").unlink()  # now incomplete
    assert list(rows(tmp_path / "other")) == []
    rd = next(Store(store).runs("done"))
    path = rd.path / "records.jsonl"
    path.write_text(path.read_text().replace('"schema":1', '"schema":99', 1))
    with pytest.raises(StoreError, match="schema"):
        list(rows(store))
    assert main(["export", "--out", str(store)]) == 2
    assert "schema" in capsys.readouterr().err
    with pytest.raises(UserError, match="no results store"):
        export(tmp_path / "nowhere")


def test_file_export_streams_and_a_damaged_run_loses_nothing(store, tmp_path, capsys):
    """-o streams into a temporary file; a damaged run found after rows were written leaves the old
    file as it was and no temporary file behind."""
    target = tmp_path / "t.csv"
    assert main(["export", "--out", str(store), "-o", str(target)]) == 0
    good = target.read_text()
    assert good.count("\n") == 1 + len(list(rows(store)))
    last = list(Store(store).runs("done"))[-1]  # the last run in export order: rows of the first are written
    path = last.path / "records.jsonl"
    path.write_text(path.read_text().replace('"schema":1', '"schema":99', 1))
    assert main(["export", "--out", str(store), "-o", str(target)]) == 2
    assert "schema" in capsys.readouterr().err
    assert target.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["store", "t.csv"])


def test_csv_lines_equal_csv_writer_on_awkward_names():
    """The export's CSV fast path writes what csv.writer writes, quoting included."""
    from msabench.report.export import _CsvCells, record_tuples, run_csv_lines

    spec = {"protocol": "standard", "protocol_version": "1", "setting": 'a "quoted", setting', "model": "tfn@x",
            "datasets": ["synth-mosi", "b,c"], "seed": 3, "rate": 0.25, "modalities": ["t", "a", "v"],
            "label_rule": "has0", "task": "regression", "config": {}}
    records = [{"epoch": 0, "split": "test", "domain": "b,c", "rate": 0.5,
                "metrics": {"mae": 0.1, "corr": None, "acc2": 1, "odd,name": 1e-300},
                "loss": {'multi\nline "loss"': 2.5, "task": float("inf")}},
               {"epoch": 1, "split": "valid", "domain": "synth-mosi", "metrics": {"mae": 1 / 3}, "loss": {}}]
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows(record_tuples("r1", spec, records))
    assert "".join(run_csv_lines(_CsvCells(), "r1", spec, records)) == expected.getvalue()
