"""A third-party plugin installed through the `msabench.models` entry-point group runs by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.time_limit(300)

PLUGIN = '''
"""`thirdparty_mean`: a third-party test plugin (the mean of pooled audio through one linear layer).

Deviations: none (a test fixture, not a paper's model).
"""
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from msabench.api import MODELS, ModelOutput, MSAModel, masked_mean


@dataclass(frozen=True)
class Cfg:
    scale: float = 1.0


@MODELS.register()
class ThirdPartyMean(MSAModel):
    name: ClassVar[str] = "thirdparty_mean"
    config_cls: ClassVar[type] = Cfg
    SUPPORTED_MODALITIES: ClassVar[tuple] = ("a",)
    TRAIN_DEFAULTS: ClassVar[dict] = {"train.lr": 1e-2, "train.batch_size": 32, "train.epochs": 2,
                                      "train.patience": 8}

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.out = nn.Linear(spec.dims["a"], spec.n_outputs)

    def forward(self, batch):
        pred = self.out(masked_mean(batch.audio.float(), batch.audio_mask))  # (B, C)
        return ModelOutput(pred=pred.squeeze(-1) if self.spec.task == "regression" else pred)
'''


def install_plugin(site) -> None:
    """Install a tiny distribution the way pip lays it out: a module and its .dist-info."""
    (site / "msabench_thirdparty_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "msabench_thirdparty_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: msabench-thirdparty-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[msabench.models]\nthirdparty_mean = msabench_thirdparty_plugin\n")
    (info / "RECORD").write_text("")


def _msabench(args, site, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys; from msabench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)


def test_third_party_plugin_runs_by_name_from_the_cli(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    listed = _msabench(["models", "--json"], site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "thirdparty_mean" in json.loads(listed.stdout)
    out = tmp_path / "runs"
    done = _msabench(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--seeds", "1",
                      "--modalities", "a", "--model", "thirdparty_mean", "--no-mlflow", "--out", str(out)],
                     site, tmp_path)
    assert done.returncode == 0, done.stderr
    specs = [json.loads(p.read_text()) for p in out.glob("runs/*/spec.json")]
    assert [s["model"] for s in specs] == ["thirdparty_mean"]
    assert all((p.parent / "done").exists() for p in out.glob("runs/*/spec.json"))


def test_a_broken_plugin_is_reported_and_skipped(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[msabench.models]\nbroken = no_such_module_anywhere\n")
    listed = _msabench(["models"], site, tmp_path)
    assert listed.returncode == 0
    assert "model plugin 'broken'" in listed.stderr and "failed to load" in listed.stderr
    assert "tfn" in listed.stdout
