"""Issue 17, defect 15 (the small ones): a `?` in --out, `mlflow.db` that is a folder, 1e300 values,
complex labels, Ctrl-C's message, and a newer-schema env.json."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import faults

from msabench.cli import main
from msabench.store.runs import Store

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--threads", "1", "--device", "cpu",
       "--model", "linear_probe", "--seeds", "1"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "store"
    assert main([*RUN, "--no-mlflow", "--out", str(out)]) == 0
    return out


def test_a_question_mark_in_out_never_sends_mlflow_outside_the_store(tmp_path, capsys):
    out = tmp_path / "a?b"
    assert main([*RUN, "--out", str(out)]) == 2
    assert "cannot hold '?' or '#'" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "a").exists() and not list(tmp_path.rglob("mlflow.db"))


def test_mlflow_db_that_is_a_folder_is_one_warning_at_once(tiny_store, tmp_path):
    from msabench.tracking import MlflowView

    out = tmp_path / "store"
    shutil.copytree(tiny_store, out)
    (out / "mlflow.db").mkdir()
    warnings: list[str] = []
    started = time.perf_counter()
    with MlflowView(out, warn=warnings.append) as view:
        rd = Store(out).run(Store(out).run_ids()[0])
        assert view.log_run(rd) == "off" and view.log_run(rd) == "off"
    assert time.perf_counter() - started < 20
    assert len(warnings) == 1 and "is not a file" in warnings[0]


def _mosi_with(tmp: Path, key: str, value) -> Path:
    data = faults.mmsa_data()
    data["train"][key] = value(data["train"][key])
    return faults.write_mosi(tmp / "root", data)


def test_values_beyond_float32_are_named_not_called_inf(tmp_path, capsys):
    def huge(v):
        v = np.asarray(v, dtype=np.float64).copy()
        v.flat[0] = 1e300
        return v
    path = _mosi_with(tmp_path, "vision", huge)
    assert main(["data", "check", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "1e+300" in line and "float32 range" in line and "inf" not in line.replace("information", "")


def test_complex_labels_are_refused_not_truncated(tmp_path, capsys):
    path = _mosi_with(tmp_path, "regression_labels", lambda v: np.asarray(v) + 1j)
    assert main(["data", "check", str(path)]) == 2
    assert "complex numbers" in one_error_line(capsys.readouterr().err)


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from msabench.execution import base as executors

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "run_one", interrupted)
    assert main([*RUN, "--no-mlflow", "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; re-run the same command to resume" in err


def test_a_newer_schema_env_json_is_named(tiny_store, tmp_path, capsys):
    out = tmp_path / "store"
    shutil.copytree(tiny_store, out)
    env = out / "runs" / Store(out).run_ids()[0] / "env.json"
    data = json.loads(env.read_text())
    data["schema"] = 2
    env.write_text(json.dumps(data))
    for command in (["status"], ["report"]):
        assert main([*command, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "env.json has schema version 2" in err.splitlines()[-1]
