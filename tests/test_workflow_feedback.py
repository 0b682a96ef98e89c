"""Feedback during a run (issue: the researcher's workflow, item 8): `run -v` prints a line per epoch
(epoch, losses, the selection metric, seconds), `-vv` a line per split too; `--dry-run` estimates the
time from a quick calibration when the store has no timings."""

from __future__ import annotations

import re

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--model", "linear_probe", "--seeds", "1",
       "--tiny", "--no-mlflow"]
EPOCH_LINE = re.compile(r"^linear_probe synth-mosi seed=1 rate=0 epoch (\d)/3: "
                        r"train loss task [0-9.e-]+, total [0-9.e-]+; "
                        r"valid loss [0-9.e-]+; valid mae [0-9.e-]+ \(rule 'val', best epoch \d\); [0-9.]+s$")


def test_verbose_prints_a_line_per_epoch(tmp_path, capsys):
    from msabench.cli import main

    assert main([*RUN, "--out", str(tmp_path / "quiet")]) == 0
    assert " epoch 1/3:" not in capsys.readouterr().err  # the default: one line per run

    assert main([*RUN, "-v", "--out", str(tmp_path / "v")]) == 0
    err = capsys.readouterr().err.splitlines()
    epochs = [int(m.group(1)) for line in err if (m := EPOCH_LINE.match(line))]
    assert epochs == [1, 2, 3], err
    assert not any(line.startswith("  test ") for line in err)

    assert main([*RUN, "-vv", "--out", str(tmp_path / "vv")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("  test synth-mosi: loss ") and "mae " in line for line in err) == 3


def test_dry_run_calibrates_without_stored_timings(tmp_path, capsys):
    from msabench.cli import main

    out = str(tmp_path / "store")
    assert main([*RUN, "--seeds", "1,2", "--dry-run", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "estimated time: unknown" not in text
    line = next(x for x in text.splitlines() if x.startswith("estimated time: "))
    assert "a quick calibration for 2 of 2 runs (1 configuration:" in line, line

    assert main([*RUN, "--out", out]) == 0  # a done run: its timing now answers for the same config
    capsys.readouterr()
    assert main([*RUN, "--seeds", "1,2", "--dry-run", "--out", out]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("estimated time: "))
    assert "stored timings of done runs of the same model and dataset for 1 of 1 runs" in line, line
    assert "calibration" not in line


def test_calibration_scales_with_epochs():
    import dataclasses

    from msabench.engine.calibration import calibrate
    from msabench.engine.options import RunOptions
    from msabench.plan.planner import plan
    from msabench.plan.request import Request

    (spec,) = plan(Request(protocol="standard", models=("linear_probe",), seeds=(1,), tiny=True))
    short = calibrate(spec, RunOptions(device="cpu", threads=1))
    long = calibrate(dataclasses.replace(spec, config={**spec.config, "train.epochs": 300}),
                     RunOptions(device="cpu", threads=1))
    assert 0 < short < long


def test_calibration_stops_at_its_budget(tmp_path, monkeypatch):
    from msabench.plan import sweep
    from msabench.plan.planner import plan
    from msabench.plan.request import Request
    from msabench.store.runs import Store

    specs = plan(Request(protocol="standard", models=("constant", "linear_probe"), seeds=(1, 2), tiny=True))
    calls = []
    est = sweep.estimate(specs, Store(str(tmp_path / "s")), calibrate=lambda spec: calls.append(spec) or 2.0)
    assert (len(calls), est.calibrated, est.seconds, est.budget_spent) == (2, 4, 8.0, False)
    monkeypatch.setattr(sweep, "CALIBRATION_BUDGET_S", -1.0)
    est = sweep.estimate(specs, Store(str(tmp_path / "s")), calibrate=lambda spec: calls.append(spec) or 2.0)
    assert (len(calls), est.unknown, est.budget_spent) == (2, 4, True)
    assert "calibration stops after" in est.describe()
