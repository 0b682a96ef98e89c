"""Issue 17, defect 9: a full disk with MLflow on (the default) is the one warning and the one exit-2
line, nothing more, and leaves neither a `.tmp-<pid>-mlflow.db` nor an empty `mlflow.db` behind
(nor after the resume). Faults are injected: copying the database (os.sendfile) and SQLite's open of
`mlflow.db` raise ENOSPC / "database or disk is full", and the store's lock write raises ENOSPC."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from fixtures.faults import DiskFault

from msabench.cli import main

RUN = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--threads", "1", "--device", "cpu",
       "--model", "linear_probe", "--seeds", "1,2"]


def _under(path, root: Path) -> bool:
    try:
        return os.path.realpath(os.fspath(path)).startswith(os.path.realpath(root) + os.sep)
    except TypeError:
        return False


def test_disk_full_with_mlflow_on_is_one_warning_and_one_error_and_leaves_no_database_debris(tmp_path, capsys,
                                                                                               monkeypatch):
    out = tmp_path / "out"
    real_sendfile, real_connect = os.sendfile, sqlite3.connect

    def full_sendfile(out_fd, in_fd, offset, count):
        if _under(os.readlink(f"/proc/self/fd/{out_fd}"), out):
            real_sendfile(out_fd, in_fd, offset, min(count, 4096))  # part of the copy lands, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_sendfile(out_fd, in_fd, offset, count)

    def full_connect(database, *args, **kwargs):
        if _under(database, out):
            Path(database).touch()  # SQLite creates the file, then cannot write its first page
            raise sqlite3.OperationalError("database or disk is full")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(os, "sendfile", full_sendfile)
    monkeypatch.setattr(sqlite3, "connect", full_connect)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", full_connect)  # what SQLAlchemy calls
    DiskFault(out / "runs", "write", errno.ENOSPC, after=1, only="lock").install(monkeypatch)
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith("warning: MLflow logging failed") and "database or disk is full" in lines[0]
    assert lines[1].startswith("msabench: error: cannot write") and "no space left on device" in lines[1]
    assert not list(out.glob(".tmp-*")), list(out.iterdir())
    assert not (out / "mlflow.db").exists()

    monkeypatch.undo()  # space freed: the resume logs both runs and leaves nothing behind
    assert main([*RUN, "--out", str(out)]) == 0
    assert not list(out.glob(".tmp-*")) and (out / "mlflow.db").stat().st_size > 0
    assert "MLflow: 2 runs logged" in capsys.readouterr().out


def test_a_temp_database_of_a_killed_sweep_is_removed_on_resume(tmp_path):
    from msabench.tracking import seed_embedded_db

    out = tmp_path / "out"
    out.mkdir()
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = out / f".tmp-{dead.pid}-mlflow.db"
    leftover.write_bytes(b"half a database")
    assert seed_embedded_db(out)
    assert not leftover.exists() and (out / "mlflow.db").stat().st_size > 0
