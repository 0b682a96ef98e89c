"""The benchmark scripts of perf/ run at their smoke size (`--quick`) and print their figures.

Opt-in (`pytest -m perf_scripts`, about a minute): they time nothing here, they only show that the
scripts work against the current code. The GPU script exits 2 without a GPU, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[1] / "perf"
pytestmark = pytest.mark.perf_scripts


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(PERF / script), "--quick", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.parametrize("script, expected", [
    ("bench_epoch.py", ["lf_dnn   cpu", "lf_dnn   wall"]),
    ("bench_store.py", ["plain json", "status", "report", "export"]),
    ("bench_missing_rate.py", ["training", "evaluation", "projection for real MOSI"]),
])
def test_script_prints_its_figures(script, expected):
    done = _run(script)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in expected:
        assert text in done.stdout, done.stdout


def test_gpu_script_says_when_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the script would measure")
    done = _run("bench_gpu.py")
    assert done.returncode == 2 and "not measured" in done.stderr
