"""Issue 17, defects 5 and 6: a store with stray and symlinked folders under runs/.

Stray folders (`has space`, `é-run`, a plausible `backup`) made every command fail with "bad run
id", and `clean --incomplete` deleted a plausible one; a run folder that is a symbolic link (run ids
are predictable from --dry-run) made `run` reset, i.e. delete, the files it points to. Now the store
reads only the folders it made (real folders named like a run id), lists the others, never deletes
them, and never follows a link out of itself: every command survives, and nothing outside changes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from msabench.cli import main
from msabench.store.runs import Store

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
       "--device", "cpu", "--model", "linear_probe"]


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def hostile_store(tmp_path):
    out = tmp_path / "store"
    assert main([*RUN, "--seeds", "1,2", "--out", str(out)]) == 0
    store = Store(out)
    first, second = store.run_ids()
    outside = tmp_path / "outside"
    # The second run's folder becomes a link to a folder outside the store that looks like an
    # interrupted run (so `run` would redo, i.e. reset, it) and holds a file someone cares about.
    linked = outside / "linked-run"
    linked.mkdir(parents=True)
    (linked / "spec.json").write_bytes((store.runs_dir / second / "spec.json").read_bytes())
    (linked / "precious.txt").write_text("do not delete")
    (linked / "sub").mkdir()
    (linked / "sub" / "also.txt").write_text("keep")
    for f in (store.runs_dir / second).iterdir():
        f.unlink()
    (store.runs_dir / second).rmdir()
    os.symlink(linked, store.runs_dir / second)
    (outside / "elsewhere").mkdir()
    (outside / "elsewhere" / "x.txt").write_text("x")
    os.symlink(outside / "elsewhere", store.runs_dir / "linked-folder")
    for name in ("has space", "é-run", "backup"):  # stray folders; `backup` looks like an incomplete run
        (store.runs_dir / name).mkdir()
        (store.runs_dir / name / "notes.txt").write_text(name)
    (store.runs_dir / "README").write_text("a stray file")
    return out, outside, first, second


def test_every_command_survives_stray_and_linked_folders_and_touches_nothing_outside(hostile_store, tmp_path, capsys):
    out, outside, first, second = hostile_store
    runs = out / "runs"
    before_outside = _tree(outside)
    stray_before = {n: _tree(runs / n) for n in ("has space", "é-run", "backup")}

    assert main(["status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "done 1" in text and "left alone" in text and "'has space'" in text and "'backup'" in text
    assert main(["report", "--out", str(out)]) == 0
    assert "linear_probe" in capsys.readouterr().out
    assert main(["export", "--out", str(out), "-o", str(tmp_path / "export.csv")]) == 0
    assert first in (tmp_path / "export.csv").read_text() and second not in (tmp_path / "export.csv").read_text()
    assert main(["clean", "--incomplete", "--out", str(out)]) == 0
    assert "removed 0 incomplete runs" in capsys.readouterr().out
    # The sweep that plans the linked run id refuses it by name, before training anything.
    assert main([*RUN, "--seeds", "1,2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and second in err and "Traceback" not in err
    assert main([*RUN, "--seeds", "1", "--out", str(out)]) == 0  # the other runs go on as usual

    assert _tree(outside) == before_outside
    assert {n: _tree(runs / n) for n in ("has space", "é-run", "backup")} == stray_before
    assert (runs / second).is_symlink() and (runs / "linked-folder").is_symlink()
    assert sorted(Store(out).foreign()) == sorted(["README", "backup", "has space", "linked-folder", "é-run", second])


def test_reset_and_claim_refuse_a_linked_run_folder(tmp_path):
    from msabench.store.runs import StoreError

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    store = Store(tmp_path / "store")
    store.runs_dir.mkdir(parents=True)
    run_id = "0123456789abcdef0123"
    os.symlink(outside, store.runs_dir / run_id)
    rd = store.run(run_id)
    for call in (rd.status, rd.claim, rd.reset):
        with pytest.raises(StoreError, match="symbolic link"):
            call()
    assert (outside / "precious.txt").read_text() == "keep" and not (outside / "lock").exists()
