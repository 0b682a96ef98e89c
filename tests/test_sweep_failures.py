"""Failed runs reach the sweep's exit code and summary (docs/architecture.md §3, "Exit codes").

A sweep with failed runs exits 3 and its summary names them; a re-run without --retry-failed lists
the runs that failed before as failed (not skipped) and still exits 3; the failure hints never tell
the user to change the config and then --retry-failed the old run (a new config is a new run id).
"""

from __future__ import annotations

import re

import pytest
from fixtures import faults

from msabench.api.model import MODELS
from msabench.cli import main
from msabench.cli.app import EXIT_FAILED_RUNS
from msabench.store.runs import Store

BASE = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
        "--set", "train.epochs=2", "--seeds", "1"]  # the fault models misbehave from epoch 1


@pytest.fixture()
def fault_models(monkeypatch):
    for name, cls in faults.FAULT_MODELS.items():
        monkeypatch.setitem(MODELS._items, name, cls)
    monkeypatch.setitem(faults.FAULTS, "on", True)


def _failed_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("failed (")]


def test_a_sweep_with_failed_runs_exits_3_and_its_summary_names_them(tmp_path, capsys, fault_models):
    out = tmp_path / "store"
    args = [*BASE, "--model", "raises", "--model", "constant", "--out", str(out)]
    assert EXIT_FAILED_RUNS == 3
    assert main(args) == 3
    stdout, err = capsys.readouterr()
    (failed,) = Store(out).runs("failed")
    assert "done 1, failed 1, skipped 0 of 2 runs" in stdout
    assert _failed_lines(stdout) == [f"failed (now) {failed.run_id} (raises synth-mosi seed 1): "
                                     "RuntimeError: injected failure in training"]
    assert "1 run(s) failed" in err and "exit 3" in err
    # a sweep without failures exits 0
    assert main([*BASE, "--model", "constant", "--out", str(tmp_path / "clean")]) == 0


def test_a_rerun_lists_earlier_failures_as_failed_not_skipped(tmp_path, capsys, fault_models):
    out = tmp_path / "store"
    args = [*BASE, "--model", "raises", "--model", "constant", "--out", str(out)]
    assert main(args) == 3
    capsys.readouterr()
    faults.FAULTS["on"] = False  # even once the cause is gone, a plain re-run does not retry
    assert main(args) == 3
    stdout, _ = capsys.readouterr()
    (failed,) = Store(out).runs("failed")
    assert "done 0, failed 1 (1 in an earlier sweep, not retried), skipped 1 of 2 runs" in stdout
    assert _failed_lines(stdout) == [f"failed (earlier, not retried) {failed.run_id} (raises synth-mosi seed 1): "
                                     "RuntimeError: injected failure in training"]
    # the progress line says it too (stderr, plain lines when not a terminal)
    assert main(args) == 3
    _, err = capsys.readouterr()
    assert re.search(r"\] failed +raises synth-mosi seed=1 rate=0 \(failed in an earlier sweep, not retried\)", err)
    # --retry-failed reruns it; now it completes and the sweep exits 0
    assert main([*args, "--retry-failed"]) == 0
    assert "done 1, failed 0, skipped 1 of 2 runs" in capsys.readouterr().out


def test_failure_hints_say_a_new_config_is_a_new_run(tmp_path, capsys, fault_models):
    out = tmp_path / "store"
    assert main([*BASE, "--model", "nan_loss", "--model", "host_oom", "--out", str(out)]) == 3
    reasons = {rd.read_spec_dict()["model"]: rd.read_failed()["reason"] for rd in Store(out).runs("failed")}
    assert set(reasons) == {"nan_loss", "host_oom"}
    # a config change makes a new run; --retry-failed is offered for the same config only
    assert re.search(r"a lower train\.lr or gradient clipping \(--set train\.clip=1\.0\) makes a new run \(a new "
                     r"config is a new run id; this one stays failed\), while --retry-failed reruns this same config",
                     reasons["nan_loss"]), reasons["nan_loss"]
    assert re.search(r"run fewer runs at once \(--workers, --runs-per-gpu\) and rerun it with --retry-failed, or "
                     r"lower train\.batch_size \(--set train\.batch_size=N\), which makes a new run",
                     reasons["host_oom"]), reasons["host_oom"]
    for reason in reasons.values():  # the old, contradictory advice is gone
        assert not re.search(r"lower train\.\w+[^;]*then rerun it with --retry-failed", reason), reason


def test_a_grid_study_with_a_failed_search_run_chooses_among_the_others_and_exits_3(tmp_path, capsys,
                                                                                     fault_models):
    study = tmp_path / "study.toml"
    study.write_text('protocol = "standard"\nmodels = ["raises"]\ndatasets = ["synth-mosi"]\nseeds = [1, 2]\n'
                     'tiny = true\n[set]\n"train.epochs" = 2\n[grid]\n"model.when" = [1, 5]\n[select]\nrule = "val"\n')
    out = tmp_path / "store"
    assert main(["run", "--sweep", str(study), "--out", str(out), "--no-mlflow", "--threads", "1"]) == 3
    stdout, err = capsys.readouterr()
    # model.when=1 fails in epoch 1; model.when=5 never misbehaves in 2 epochs: it is chosen and re-run
    assert "selected (val: mean validation score over the search seeds, lower is better): raises synth-mosi: " \
           "model.when=5" in stdout
    assert "done 1, failed 1, skipped 0 of 2 runs" in stdout and "done 1, failed 0, skipped 1 of 2 runs" in stdout
    assert "1 run(s) failed" in err
    # with every configuration failing there is nothing to choose: no final runs, exit 3, and it says why
    study.write_text(study.read_text().replace("[1, 5]", "[1, 0]"))
    assert main(["run", "--sweep", str(study), "--out", str(tmp_path / "other"), "--no-mlflow", "--threads", "1"]) == 3
    stdout, err = capsys.readouterr()
    assert "raises synth-mosi: none (no configuration has a score for every search seed" in stdout
    assert "chosen configurations over seeds 1,2: 0 runs" in stdout and "their final runs were not started" in err
