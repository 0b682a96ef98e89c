"""Issue 17, defects 4 and 7: `msabench check` cannot be switched off by its baseline file, and
`--write-baseline` never leaves a cut file.

A NaN or infinite tolerance, or a NaN mean, made every cell hold whatever the store says; a malformed
cell crashed with a traceback and exit 1 (which CI reads as "regressions"). Every such baseline is
now bad input: one line, exit 2. A full disk while writing a baseline keeps the old one intact.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from fabricate import fabricate_views, write_store
from fixtures.faults import DiskFault, leftover_temp_files

from msabench.cli import main as _main
from msabench.protocols.templates import TEMPLATES


def main(args: list[str]) -> int:
    try:
        return _main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store, its baseline, and a copy of the store where one model regressed by 50 points."""
    root = tmp_path_factory.mktemp("check")
    good = root / "good"
    write_store(fabricate_views(TEMPLATES.get("mtmd-table1"), ["tfn", "lf_dnn"], seeds=(1, 2, 3)), str(good))
    baseline = root / "baseline.json"
    assert main(["check", "--write-baseline", str(baseline), "--out", str(good)]) == 0
    bad = root / "regressed"
    shutil.copytree(good, bad)
    for run in (bad / "runs").iterdir():
        lines = []
        for line in (run / "records.jsonl").read_text().splitlines():
            rec = json.loads(line)
            rec["metrics"] = {k: (v + 50.0 if isinstance(v, float) else v) for k, v in rec["metrics"].items()}
            lines.append(json.dumps(rec))
        (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    return good, bad, baseline


def _edited(baseline: Path, dest: Path, edit) -> Path:
    data = json.loads(baseline.read_text())
    edit(data)
    dest.write_text(json.dumps(data, allow_nan=True))
    return dest


def _cell(key, value):
    def edit(data):
        data["cells"][0][key] = value
    return edit


def _tol(key, value):
    def edit(data):
        data["tolerance"][key] = value
    return edit


def _floors(data):
    data["tolerance"]["floors"] = {"acc2": float("nan")}


BAD_BASELINES = {
    "k NaN": (_tol("k", float("nan")), "tolerance.k"),
    "k infinite": (_tol("k", float("inf")), "tolerance.k"),
    "floor infinite": (_tol("floor", float("inf")), "tolerance.floor"),
    "floor a string": (_tol("floor", "0.1"), "tolerance.floor"),
    "k true": (_tol("k", True), "tolerance.k"),
    "a floor NaN": (_floors, "tolerance.floors.acc2"),
    "mean NaN": (_cell("mean", float("nan")), "mean is NaN"),
    "mean infinite": (_cell("mean", float("-inf")), "mean is -Infinity"),
    "mean a string": (_cell("mean", "52.9"), "mean is"),
    "std NaN": (_cell("std", float("nan")), "std is"),
    "std a list": (_cell("std", [1]), "std is"),
    "n a float": (_cell("n", 2.5), "n is"),
    "row a number": (_cell("row", 3), "'row' must be"),
    "cell a list": (lambda d: d["cells"].__setitem__(0, [1, 2]), "not a cell object"),
    "no cells": (lambda d: d.__setitem__("cells", []), "lists no cells"),
    "specs of strings": (lambda d: d.__setitem__("specs", ["x"]), "'specs' must be a run spec"),
}


@pytest.mark.parametrize("case", sorted(BAD_BASELINES))
def test_a_bad_baseline_is_exit_2_never_a_pass_or_a_traceback(case, stores, tmp_path, capsys):
    good, bad, baseline = stores
    edit, words = BAD_BASELINES[case]
    path = _edited(baseline, tmp_path / "edited.json", edit)
    for store in (good, bad):  # a 50-point regression must never pass because of the file
        assert main(["check", "--baseline", str(path), "--out", str(store)]) == 2
        assert words in one_error_line(capsys.readouterr().err)


def test_the_untouched_baseline_still_tells_good_from_regressed(stores, capsys):
    good, bad, baseline = stores
    assert main(["check", "--baseline", str(baseline), "--out", str(good)]) == 0
    assert main(["check", "--baseline", str(baseline), "--out", str(bad)]) == 1


@pytest.mark.parametrize("call", ["write", "replace"])
def test_write_baseline_on_a_full_disk_keeps_the_old_one(call, stores, tmp_path, capsys, monkeypatch):
    good, _, baseline = stores
    target = tmp_path / "ci" / "baseline.json"
    target.parent.mkdir()
    shutil.copy(baseline, target)
    before = target.read_bytes()
    DiskFault(target.parent, call, errno.ENOSPC).install(monkeypatch)
    assert main(["check", "--write-baseline", str(target), "--out", str(good), "--k", "2"]) == 2
    assert "no space left on device" in one_error_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert target.read_bytes() == before and not leftover_temp_files(target.parent)


def test_write_baseline_refuses_a_non_finite_k(stores, tmp_path, capsys):
    good, _, _ = stores
    assert main(["check", "--write-baseline", str(tmp_path / "b.json"), "--out", str(good), "--k", "nan"]) == 2
    assert "finite" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "b.json").exists()
