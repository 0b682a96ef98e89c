"""Issue 17, defect 8: a read-only or full cache location (MSABENCH_CACHE, HOME, `data synth --dest`)
is one clean line naming the folder and the fix (exit 2), never a traceback, and leaves no
half-written dataset behind. Faults are injected into mkdir/open for paths under one folder."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import pytest

from msabench.cli import main

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
       "--device", "cpu", "--model", "linear_probe", "--seeds", "1"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


class FolderFault:
    """mkdir (EROFS: a read-only file system) or opening a file for writing (ENOSPC after `after`
    files: the disk fills) fails for paths under `root`."""

    def __init__(self, root: Path, code: int, after: int = 0):
        self.root, self.code, self.after, self.seen = os.path.realpath(root), code, after, 0

    def _under(self, path) -> bool:
        try:
            p = os.path.realpath(os.fspath(path))
        except TypeError:
            return False
        return p == self.root or p.startswith(self.root + os.sep)

    def install(self, monkeypatch) -> None:
        real_mkdir, real_open = os.mkdir, builtins.open

        def mkdir(path, *args, **kwargs):
            if self.code == errno.EROFS and self._under(path):
                raise OSError(self.code, os.strerror(self.code), os.fspath(path))
            return real_mkdir(path, *args, **kwargs)

        def open_(file, mode="r", *args, **kwargs):
            if self.code == errno.ENOSPC and any(c in mode for c in "wax") and self._under(file):
                self.seen += 1
                if self.seen > self.after:
                    raise OSError(self.code, os.strerror(self.code), os.fspath(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)


@pytest.mark.parametrize("code,words", [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left")])
@pytest.mark.parametrize("via", ["MSABENCH_CACHE", "HOME"])
def test_run_with_a_read_only_or_full_cache_is_one_line(tmp_path, capsys, monkeypatch, code, words, via):
    import msabench.plan.planner as planner

    # datasets an earlier test loaded in this process are reused without touching the cache: start empty
    monkeypatch.setattr(planner, "_LOADED", {})
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.delenv("MSABENCH_CACHE", raising=False)
    monkeypatch.setenv(via, str(cache))
    FolderFault(cache, code, after=3).install(monkeypatch)
    assert main([*RUN, "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot write the synthetic dataset" in line and words in line and "MSABENCH_CACHE" in line
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing half-written kept


def test_data_synth_dest_read_only_full_or_a_file(tmp_path, capsys, monkeypatch):
    dest = tmp_path / "dest"
    dest.mkdir()
    FolderFault(dest, errno.ENOSPC, after=2).install(monkeypatch)
    assert main(["data", "synth", "synth-mosi", "--dest", str(dest), "--scale", "0.05"]) == 2
    assert "--dest" in one_error_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert not [p for p in dest.rglob("*") if p.is_file()]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["data", "synth", "synth-mosi", "--dest", str(a_file), "--scale", "0.05"]) == 2
    assert "is a file, not a folder: point --dest at a folder" in one_error_line(capsys.readouterr().err)
    assert a_file.read_text() == "x"
