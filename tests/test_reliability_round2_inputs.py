"""Issue 17, defects 13 and 14: bad input is one line and exit 2, never a traceback or a hang, and
bad values are refused before anything starts (no run folder, no training, no failed run with exit 0).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import time
from pathlib import Path

import pytest
from fixtures import faults

from msabench.cli import main

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
       "--device", "cpu", "--model", "linear_probe"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


def _no_runs(out: Path) -> bool:
    return not (out / "runs").is_dir() or not [p for p in (out / "runs").iterdir() if not p.name.startswith(".")]


def _sweep(tmp: Path, text: str) -> str:
    path = tmp / "sweep.toml"
    path.write_text(text)
    return str(path)


CASES = {
    # defect 13
    "lr null": (["--seeds", "1", "--set", "train.lr=null", "--dry-run"], "train.lr=null is not a value"),
    "epochs null": (["--seeds", "1", "--set", "train.epochs=null", "--dry-run"], "train.epochs=null is not a value"),
    "a billion seeds": (["--n-seeds", "1000000000", "--dry-run"], "must be at most 10000"),
    "data.scale 100000": (["--seeds", "1", "--set", "data.scale=100000", "--dry-run"], "use a scale of at most"),
    # defect 14: these used to start runs (failed runs and exit 0, or a run folder left behind)
    "lr NaN": (["--seeds", "1", "--set", "train.lr=NaN"], "train.lr=nan: must be a finite number"),
    "lr infinite": (["--seeds", "1", "--set", "train.lr=Infinity"], "must be a finite number"),
    "weight decay -1": (["--seeds", "1", "--set", "train.weight_decay=-1"], "train.weight_decay=-1.0 must be zero or"),
    "optimizer a path": (["--seeds", "1", "--set", "train.optimizer=../../x"], "unknown train.optimizer '../../x'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_run_options_are_one_line_and_start_nothing(case, tmp_path, capsys):
    args, words = CASES[case]
    out = tmp_path / "out"
    assert main([*RUN, *args, "--out", str(out)]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert _no_runs(out)


@pytest.mark.parametrize("text,words", [
    ('models = ["linear_probe"]\ndatasets = ["synth-mosi"]\nn_seeds = 1000000000\n', "from 1 to 10000"),
    ('models = ["linear_probe"]\ndatasets = ["synth-mosi"]\nseeds = [' + ",".join(map(str, range(10001))) + "]\n",
     "at most 10000"),
    ("models = " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
], ids=["n_seeds", "seeds", "nested"])
def test_bad_sweep_files_are_one_line(tmp_path, capsys, text, words):
    args = ["run", "--sweep", _sweep(tmp_path, text), "--out", str(tmp_path / "out"), "--dry-run", "--no-mlflow"]
    assert main(args) == 2
    assert words in one_error_line(capsys.readouterr().err)


def test_from_run_outside_the_store_is_one_line(tmp_path, capsys):
    for run_id in ("../../../etc", "..", "a/b"):
        assert main(["run", "--protocol", "feature-analysis", "--from-run", run_id, "--out", str(tmp_path / "out"),
                     "--no-mlflow"]) == 2
        assert "is not a run id" in one_error_line(capsys.readouterr().err)


def test_feature_analysis_of_a_model_without_features_fails_before_training(tmp_path, capsys, monkeypatch):
    from msabench.engine import runner

    trained = []
    real = runner.run_loop
    monkeypatch.setattr(runner, "run_loop", lambda *a, **k: trained.append(1) or real(*a, **k))
    out = tmp_path / "out"
    assert main(["run", "--protocol", "feature-analysis", "--dataset", "synth-mosi", "--model", "constant", "--tiny",
                 "--seeds", "1", "--no-mlflow", "--threads", "1", "--device", "cpu", "--out", str(out)]) == 2
    assert "returns no named features" in one_error_line(capsys.readouterr().err)
    assert trained == [] and _no_runs(out)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A fabricated missing-rate store: it has curves to plot."""
    from fabricate import fabricate_views, write_store

    from msabench.protocols.templates import TEMPLATES

    out = tmp_path_factory.mktemp("inputs") / "store"
    write_store(fabricate_views(TEMPLATES.get("emt-table6"), ["tfn"], seeds=(1, 2)), str(out))
    return out


def test_report_plots_onto_a_file_or_into_a_read_only_folder(tiny_store, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "plots.png"
    a_file.write_text("x")
    assert main(["report", "--out", str(tiny_store), "--plots", str(a_file)]) == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    assert a_file.read_text() == "x"
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):  # EROFS for files created under `folder`
        if any(c in mode for c in "wax") and os.fspath(file).startswith(str(folder)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr(io, "open", read_only)
    assert main(["report", "--out", str(tiny_store), "--plots", str(folder)]) == 2
    err = capsys.readouterr().err  # (a "git_dirty" warning may come first, when the checkout is dirty)
    assert "Traceback" not in err and err.splitlines()[-1].startswith("msabench: error: --plots")
    assert "Read-only file system" in err.splitlines()[-1]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_data_files_that_are_not_regular_files_are_refused_without_hanging(tmp_path, capsys, kind):
    root = tmp_path / "root"
    faults.write_mosi(root, faults.mmsa_data())
    if kind == "fifo":
        target = root / "MOSI" / "Processed" / "fifo.pkl"
        os.mkfifo(target)
        args = ["data", "check", str(target)]
    else:
        target = root / "MOSI" / "label.csv"
        os.symlink("/dev/zero", target)
        args = ["data", "check", str(target)]
    started = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - started < 10
    line = one_error_line(capsys.readouterr().err)
    assert ("is a FIFO" if kind == "fifo" else "is a device") in line
