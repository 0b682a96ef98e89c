"""The vertical slice: determinism, recorded failures, resume after kill -9 (docs/architecture.md §9)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.faults import NanLoss, Raises
from store_compare import store_differences

from msabench.api.model import MODELS
from msabench.cli import main
from msabench.store.runs import Store

TINY = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1"]


def msabench(*args: str) -> int:
    return main(list(args))


def test_same_spec_twice_gives_equal_results(tmp_path):
    for out in ("a", "b"):
        assert msabench(*TINY, "--model", "tfn", "--model", "lf_dnn", "--seeds", "1", "--out", str(tmp_path / out)) == 0
    assert store_differences(str(tmp_path / "a"), str(tmp_path / "b")) == []
    assert len(list(Store(tmp_path / "a").runs())) == 2


def test_failures_are_recorded_and_the_others_complete(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS._items, "raises", Raises)
    monkeypatch.setitem(MODELS._items, "nan_loss", NanLoss)
    out = str(tmp_path / "store")
    args = [*TINY, "--model", "raises", "--model", "nan_loss", "--model", "linear_probe", "--seeds", "1",
            "--out", out]
    assert msabench(*args) == 3  # the failed runs reach the exit code (docs/architecture.md §3)
    store = Store(out)
    status = {rd.read_spec_dict()["model"]: rd.status() for rd in store.runs()}
    assert status == {"raises": "failed", "nan_loss": "failed", "linear_probe": "done"}
    reasons = {rd.read_spec_dict()["model"]: rd.read_failed()["reason"] for rd in store.runs(status="failed")}
    assert "injected failure" in reasons["raises"]
    assert "not finite" in reasons["nan_loss"]
    # A plain re-run leaves failed runs alone; --retry-failed reruns them (and they fail again).
    assert msabench(*args) == 3
    assert store.summary()["failed"] == 2
    assert msabench(*args, "--retry-failed") == 3
    assert store.summary()["failed"] == 2 and store.summary()["done"] == 1


@pytest.mark.slow
def test_kill_minus_nine_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    sweep = [*TINY, "--model", "linear_probe", "--model", "lf_dnn", "--seeds", "1,2,3,4,5"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    reference = str(tmp_path / "reference")
    subprocess.run([sys.executable, "-m", "msabench", *sweep, "--out", reference], check=True, env=env,
                   capture_output=True)
    interrupted = str(tmp_path / "interrupted")
    proc = subprocess.Popen([sys.executable, "-m", "msabench", *sweep, "--out", interrupted], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    runs_dir = Path(interrupted) / "runs"
    while time.time() < deadline and not (runs_dir.exists() and len(list(runs_dir.glob("*/done"))) >= 2):
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))  # short: tiny runs take well under a second each
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(runs_dir.glob("*/done")))
    assert 2 <= done_before < 10, "the kill should land mid-sweep"
    subprocess.run([sys.executable, "-m", "msabench", *sweep, "--out", interrupted], check=True, env=env,
                   capture_output=True)
    assert store_differences(reference, interrupted) == []
    assert len([p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 10
