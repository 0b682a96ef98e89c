"""The package layout of docs/architecture.md §1: one import name, sub-packages mapped from the repo folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msabench
import msabench.models
import msabench.protocols

REPO = Path(__file__).resolve().parents[1]


def test_subpackages_resolve_inside_the_repository():
    assert Path(msabench.__file__).resolve().parent == REPO / "benchmark"
    assert Path(msabench.models.__file__).resolve().parent == REPO / "models"
    assert Path(msabench.protocols.__file__).resolve().parent == REPO / "protocols"


def test_no_generic_top_level_packages_are_installed():
    import importlib.util

    for generic in ("benchmark", "models", "protocols"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or Path(spec.origin or "").resolve().parent.parent != REPO, generic


def test_version_cli():
    out = subprocess.run([sys.executable, "-m", "msabench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and msabench.__version__ in out.stdout


def test_protocols_and_report_layer_do_not_import_torch():
    code = ("import sys, msabench.protocols, msabench.report.build, msabench.evaluation.selection, msabench.stats;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
