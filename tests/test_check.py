"""`msabench check` (docs/architecture.md §3 and §10): exit 0 when every baseline cell holds, 1 with one line per
regression, 2 on bad input; `--run` re-runs the baseline's specs in a fresh temporary store; the
repository's own baselines in results/ci/ hold on fresh CPU runs (so a change that moves numbers
fails here; regenerate them with results/ci/regenerate.sh in the change that moves them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fabricate import fabricate_views, write_store

from msabench.cli import main as _main
from msabench.evaluation.check import read_baseline, tolerance, write_baseline
from msabench.protocols.templates import TEMPLATES

CI = Path(__file__).resolve().parents[1] / "results" / "ci"
def main(args: list[str]) -> int:
    """msabench in-process; the exit code (check exits 1 through SystemExit)."""
    try:
        return _main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


CLI = [sys.executable, "-c", "import sys; from msabench.cli import main; sys.exit(main())"]


@pytest.fixture()
def store(tmp_path):
    out = tmp_path / "store"
    write_store(fabricate_views(TEMPLATES.get("mtmd-table1"), ["tfn", "lf_dnn"], seeds=(1, 2, 3)), str(out))
    return out


def _perturb(store: Path, dest: Path, model: str, metric: str, delta: float) -> Path:
    shutil.copytree(store, dest)
    for run in sorted((dest / "runs").iterdir()):
        spec = json.loads((run / "spec.json").read_text())
        if spec["model"] != model or spec["seed"] != 1:
            continue
        lines = []
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec["split"] == "test":
                rec["metrics"][metric] += delta
            lines.append(json.dumps(rec))
        (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def test_passes_on_the_stored_store_and_fails_on_a_perturbed_one(store, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--write-baseline", str(baseline), "--out", str(store), "--k", "2", "--floor", "0.005"]) == 0
    data = read_baseline(str(baseline))
    assert data["tolerance"]["k"] == 2.0 and data["tolerance"]["floor"] == 0.005 and len(data["specs"]) == 12
    capsys.readouterr()

    assert main(["check", "--baseline", str(baseline), "--out", str(store)]) == 0
    assert "holds" in capsys.readouterr().out

    moved = _perturb(store, tmp_path / "moved", "tfn", "acc2_has0", 0.3)
    assert main(["check", "--baseline", str(baseline), "--out", str(moved)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out and all("acc2_has0" in line and "tfn" in line and "moved +" in line for line in out)
    assert len(out) == 2  # synth-mosi and synth-mosei: one line per regressed cell

    tiny = _perturb(store, tmp_path / "tiny", "tfn", "acc2_has0", 1e-4)  # within the floor
    assert main(["check", "--baseline", str(baseline), "--out", str(tiny)]) == 0


def test_tolerance_is_max_of_k_std_and_floor():
    tol = {"k": 3.0, "floor": 0.01, "floors": {"mae": 0.05}}
    assert tolerance({"metric": "acc7", "std": 0.01}, tol) == pytest.approx(0.03)
    assert tolerance({"metric": "acc7", "std": 0.001}, tol) == pytest.approx(0.01)
    assert tolerance({"metric": "acc7", "std": None}, tol) == pytest.approx(0.01)
    assert tolerance({"metric": "mae", "std": 0.001}, tol) == pytest.approx(0.05)


def test_missing_runs_are_told_apart_from_regressions(store, tmp_path, capsys):
    baseline = tmp_path / "b.json"
    write_baseline(str(baseline), str(store))
    smaller = tmp_path / "smaller"
    shutil.copytree(store, smaller)
    for run in (smaller / "runs").iterdir():
        if json.loads((run / "spec.json").read_text())["model"] == "lf_dnn":
            shutil.rmtree(run)
    assert main(["check", "--baseline", str(baseline), "--out", str(smaller)]) == 1
    out, err = capsys.readouterr()
    (line,) = out.strip().splitlines()  # one line for the missing runs, no cell lines
    assert line.startswith("missing runs: 6 of the baseline's runs are not done") and "lf_dnn" in line
    assert "tfn" not in line and "check: 0 regression(s), 6 missing run(s)" in err
    # a regression beside missing runs: each said as what it is
    both = _perturb(smaller, tmp_path / "both", "tfn", "acc2_has0", 0.3)
    assert main(["check", "--baseline", str(baseline), "--out", str(both)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all("moved +" in x for x in lines[:2]) and lines[2].startswith("missing runs: 6")
    assert "check: 2 regression(s), 6 missing run(s)" in err


def test_bad_input_exits_2(store, tmp_path, capsys):
    good = tmp_path / "good.json"
    write_baseline(str(good), str(store))
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something-else"}))
    bad_tol = json.loads(good.read_text())
    bad_tol["tolerance"]["k"] = "three"
    (tmp_path / "badtol.json").write_text(json.dumps(bad_tol))
    cases = [
        ["check", "--baseline", str(tmp_path / "absent.json"), "--out", str(store)],
        ["check", "--baseline", str(tmp_path / "garbage.json"), "--out", str(store)],
        ["check", "--baseline", str(tmp_path / "other.json"), "--out", str(store)],
        ["check", "--baseline", str(tmp_path / "badtol.json"), "--out", str(store)],
        ["check", "--baseline", str(good), "--out", str(store), "--run"],
        ["check", "--out", str(store)],
        ["check", "--baseline", str(good), "--out", str(tmp_path / "no-store")],
        ["check", "--write-baseline", str(tmp_path / "x.json"), "--out", str(tmp_path / "no-store")],
        ["check", "--baseline", str(good), "--k", "2", "--out", str(store)],
    ]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "msabench: error:" in err and "Traceback" not in err, (args, err)


def test_the_zoo_baselines_cover_every_registered_model():
    """results/ci/zoo-*.json hold a tiny run of every registered model, so `check --run` in CI fails
    when a change moves any model's numbers (regenerate them with results/ci/regenerate.sh zoo)."""
    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS
    from msabench.core.config import parse_model_spec

    covered = {parse_model_spec(c["row"]).name for path in CI.glob("zoo-*.json")
               for c in json.loads(path.read_text())["cells"]}
    assert covered == set(MODELS.names())


@pytest.mark.slow
def test_ci_baselines_hold_on_fresh_runs_and_a_moved_number_fails(tmp_path):
    """`check --run` (the default without --out) re-runs each results/ci baseline's specs in a new
    temporary store; a baseline whose number was moved fails against the same fresh runs."""
    baselines = sorted(CI.glob("*.json"))
    assert {p.stem for p in baselines} >= {"standard-synth-mosi", "dg-multisource-synth-dg", "missing-rate-synth-mosi"}
    for path in baselines:
        args = CLI + ["check", "--baseline", str(path)] + (["--keep"] if path.stem == "standard-synth-mosi" else [])
        result = subprocess.run(args, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, (path.name, result.stdout, result.stderr)
        assert "holds" in result.stdout
        if path.stem == "standard-synth-mosi":
            kept = Path(re.search(r"kept the fresh store (\S+)", result.stderr).group(1))
    try:
        run_dirs = [p for p in (kept / "runs").iterdir() if p.is_dir()]  # runs/ also holds the takeover guard
        assert kept.is_dir() and kept.name.startswith("msabench-check-") and len(run_dirs) == 6
        moved = json.loads((CI / "standard-synth-mosi.json").read_text())
        cell = next(c for c in moved["cells"] if c["row"] == "linear_probe" and c["metric"] == "acc2_has0")
        cell["mean"] += 0.2
        (tmp_path / "moved.json").write_text(json.dumps(moved))
        result = subprocess.run(CLI + ["check", "--baseline", str(tmp_path / "moved.json"), "--out", str(kept)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr
        assert result.stdout.count("\n") == 1 and "linear_probe" in result.stdout and "acc2_has0" in result.stdout
    finally:
        shutil.rmtree(kept, ignore_errors=True)
