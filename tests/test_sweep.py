"""Sweep files, the dry-run estimate from stored timings, progress (bar and plain lines), the end
summary, and a sweep without mlflow installed."""

from __future__ import annotations

import io

import pytest
from test_export import write_fake_run

from msabench import tracking
from msabench.cli import main
from msabench.core.errors import UserError
from msabench.execution.progress import Progress, fmt_duration, summary_lines
from msabench.plan.sweep import load_sweep

STUDY = """
name = "a study"
description = "two models, two seeds"
protocol = "standard"
models = ["constant", {name = "linear_probe", variants = [""], set = {model = {features = "all"}}}]
datasets = ["synth-mosi"]
seeds = [1, 2]
modalities = "t,a,v"
tiny = true

[set]
"train.lr" = 0.002
train.batch_size = 16
"""


def write(tmp_path, text: str, name: str = "study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sweep_file_is_read_into_requests(tmp_path):
    sweep = load_sweep(write(tmp_path, STUDY))
    (request,) = sweep.for_run(data_root="/data")
    assert sweep.name == "a study" and request.protocol == "standard"
    assert request.models == ("constant", "linear_probe:model.features=all")
    assert request.seeds == (1, 2) and request.modalities == ("t", "a", "v") and request.tiny
    assert request.user_set == {"train.lr": 0.002, "train.batch_size": 16}
    assert request.setting is None and request.data_root == "/data"
    multi = load_sweep(write(tmp_path, 'protocol = "dg-single"\nsettings = ["A", "B"]\nn_seeds = 2\n'
                                       'rates = [0, 0.5]\nmodels = [{name = "tfn", variants = ["", "x"]}]\n', "m.toml"))
    assert [r.setting for r in multi.for_run()] == ["A", "B"] and {r.seeds for r in multi.requests} == {(1, 2)}
    assert {(r.rates, r.models) for r in multi.requests} == {((0.0, 0.5), ("tfn", "tfn@x"))}


@pytest.mark.parametrize("text, match", [
    ('modells = ["tfn"]\n', "unknown key 'modells'. Did you mean: models"),
    ('seed = [1]\n', "Did you mean: seeds"),
    ('models = [{name = "tfn", variant = "a", variants = ["b"]}]\n', "variant or variants"),
    ('models = [{nam = "tfn"}]\n', "unknown key 'nam' in a models table"),
    ('seeds = [1]\nn_seeds = 3\n', "seeds or n_seeds"),
    ('seeds = [1, 1]\n', "distinct"),
    ('rates = [0.5, 0.1]\n', "increasing"),
    ('[set]\nlr = 0.1\n', "needs a namespace"),
    ('tiny = "yes"\n', "true or false"),
    ('models = ["tfn:"]\n', "bad model spec"),
    ('protocol = standard\n', "not valid TOML"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_sweep(write(tmp_path, text))


def test_cli_sweep_conflicts_missing_file_and_dry_run_estimate(tmp_path, capsys):
    path = write(tmp_path, STUDY)
    assert main(["run", "--sweep", str(path), "--model", "tfn", "--seeds", "1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "drop --model, --seeds" in err and "Traceback" not in err
    assert main(["run", "--sweep", str(tmp_path / "nope.toml"), "--dry-run"]) == 2
    assert "no such file" in capsys.readouterr().err
    store = tmp_path / "store"
    assert main(["run", "--sweep", str(path), "--out", str(store), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # no stored timings: each configuration is calibrated (the seeds share one)
    assert "4 runs" in out and "from a quick calibration for 4 of 4 runs (2 configurations:" in out
    for seed in (7, 8):  # done runs of constant on synth-mosi, 1.5 s each (records' seconds)
        write_fake_run(store, seed=seed, seconds=0.5)
    assert main(["run", "--sweep", str(path), "--out", str(store), "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert ("from stored timings of done runs of the same model and dataset for 2 of 4 runs; a quick calibration "
            "for 2 of 4 runs (1 configuration:") in out


def test_progress_lines_off_a_tty_and_a_bar_on_one():
    class Spec:
        model, label, datasets, seed, rate, setting = "tfn", "tfn", ("synth-mosi",), 1, 0.0, ""

    stream = io.StringIO()
    p = Progress(3, stream, tty=False, estimate_seconds=30.0)
    assert p.eta() == pytest.approx(30.0, abs=1.0)  # before any run ends: the stored timings
    p.update(Spec, "skipped")
    p.update(Spec, "done")
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/3] skipped  tfn synth-mosi seed=1 rate=0") and "ETA" in lines[1]
    assert "\r" not in stream.getvalue()
    bar = io.StringIO()
    p = Progress(2, bar, tty=True, tick=0.05)
    p.update(Spec, "done")
    p.message("warning: something")
    p.update(Spec, "failed")
    p.close()
    text = bar.getvalue()
    assert "\r\x1b[K[" in text and "2/2" in text and "failed 1" in text and "ETA 0s" in text
    assert "warning: something\n" in text and text.endswith("\n")
    assert "failed: tfn synth-mosi seed=1 rate=0 (`msabench status` says why)\n" in text
    assert fmt_duration(3725) == "1h02m" and fmt_duration(65) == "1m05s" and fmt_duration(None) == "?"


def test_summary_names_store_counts_and_report_command():
    class Outcome:
        done, failed, skipped = ["a", "b"], ["c"], []

    lines = summary_lines(Outcome, 3, 12.0, "my store", "MLflow: 2 runs logged")
    assert lines[0] == "done 2, failed 1, skipped 0 of 3 runs in 12s; store my store"
    assert lines[1] == "MLflow: 2 runs logged" and lines[2] == "failed (now) c" and "--retry-failed" in lines[3]
    assert lines[-1] == "report: msabench report --out 'my store'"


def test_a_sweep_without_mlflow_installed_runs_with_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tracking, "mlflow_installed", lambda: False)
    store = tmp_path / "store"
    code = main(["run", "--dataset", "synth-mosi", "--model", "constant", "--seeds", "1,2", "--tiny",
                 "--threads", "1", "--out", str(store)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.count("warning:") == 1 and "MLflow is not installed" in captured.err
    assert "done 2, failed 0, skipped 0 of 2 runs" in captured.out
    assert "MLflow: off (mlflow not installed)" in captured.out
    assert not (store / "mlflow.db").exists()
    assert main(["run", "--dataset", "synth-mosi", "--model", "constant", "--seeds", "1", "--tiny",
                 "--out", str(store), "--tracking-uri", "http://127.0.0.1:1"]) == 2
    assert "not installed" in capsys.readouterr().err
