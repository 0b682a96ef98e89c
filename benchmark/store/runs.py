"""The results store (docs/architecture.md §9): `<out>/runs/<run_id>/`, one folder per run. Torch-free at import.

Files of a run folder (schemas: spec 1, env 1, records 1, failed 1, done 1):
    spec.json        RunSpec.to_dict() (with "schema", msabench_version filled in) + "run_id", "written_by"
    env.json         collect_env(...) + "schema", "written_by"
    records.jsonl    one compact JSON object per line and epoch x split x domain (x rate):
                     {"schema":1,"run_id","epoch","split","domain","rate","metrics":{...},"loss":{...},
                      "seconds":...} (+ any extra keys the writer gives, after these); metrics and
                     loss keys sorted; non-finite numbers stored as null (strict JSON)
    predictions.npz  flat keys (domains may contain "/", e.g. synth-dg/mosi):
                       ids/<split>/<domain>[/rate<r>]           sample ids (str array)
                       y/<split>/<domain>[/rate<r>]             their labels (runs recorded before
                                                                these keys lack them)
                       pred/<epoch>/<split>/<domain>[/rate<r>]  float32 (N,) or (N, C) predictions
                     "/rate<r>" (r formatted with :g) only for an evaluation at a non-zero missing
                     rate, matching msabench.engine.loop; other keys are stored as given. Deterministic bytes.
    checkpoint-<rule>.safetensors   weights (cpu, contiguous) at the epoch the rule chose; metadata
                     run_id, rule, epoch; deterministic bytes for identical weights
    features.npz, analysis.json, ...   any other file, through write_json / write_bytes / write_npz
    lock             see msabench.store.lock
    failed.json      {"schema":1,"run_id","reason","traceback","time","host","pid","written_by"}
    done             {"schema":1,"run_id","time","written_by"}, written last

Use (the runner):
    rd = Store(out).run(spec)
    if should_run(rd.status(), retry_failed):
        with rd.claim() as claimed:   # falsy when another live worker holds the run
            if not claimed or not should_run(rd.status(ignore_own_lock=True), retry_failed):
                return                # someone else got there between the check and the claim
            rd.reset()                # remove what an earlier attempt left
            rd.write_spec(spec); rd.write_env(collect_env(device, threads, extra))
            ...                       # each epoch: rd.append_records(epoch_records)
            rd.write_predictions(preds); rd.write_checkpoint(rule, state_dict, epoch=e)
            rd.mark_done()            # or, in an except block: rd.mark_failed(reason)

records.jsonl is rewritten whole (temp file + fsync + rename) on every `append_records` rather than
appended to: a reader, or a crash or ENOSPC at any point, can never leave or show a half line, and
the cost (tens of KB per epoch, one fsync) is negligible beside an epoch of training.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import traceback as _traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msabench import __version__, major_minor
from msabench.core.types import RUNSPEC_SCHEMA, RunSpec
from msabench.store.format import (
    DONE_SCHEMA,
    ENV_SCHEMA,
    FAILED_SCHEMA,
    RECORD_SCHEMA,
    Predictions,
    PredKey,
    check_schema,
    check_spec_shape,
    ids_key,
    normalise_record,
    parse_key,
    parse_records,
    pred_key,
    record_line,
)
from msabench.store.io import (
    LockLost,
    RunBusy,
    StoreError,
    StoreFileMissing,
    StoreWriteError,
    atomic_write_bytes,
    atomic_write_text,
    dumps_json,
    fsync_dir,
    mkdirs,
    npz_bytes,
    read_json_file,
    read_npz_file,
    write_error,
)
from msabench.store.lock import DEFAULT_HEARTBEAT, RunLock, hostname, lock_state, read_lock

__all__ = ["Store", "RunDir", "RunLock", "Predictions", "PredKey", "should_run", "STATUSES", "ids_key",
           "pred_key", "parse_key", "RECORD_SCHEMA", "StoreError", "StoreWriteError", "StoreFileMissing",
           "RunBusy", "LockLost", "atomic_write_text"]

STATUSES = ("done", "failed", "running", "incomplete", "absent")

SPEC, ENV, RECORDS, PREDICTIONS = "spec.json", "env.json", "records.jsonl", "predictions.npz"
LOCK, FAILED, DONE = "lock", "failed.json", "done"
_RESERVED = {SPEC, ENV, RECORDS, PREDICTIONS, LOCK, FAILED, DONE}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# The folders the store makes: RunSpec.run_id, 20 hex digits. Anything else under runs/ is foreign
# (a user's folder, a link): listed, never read as a run, never deleted.
RUN_ID_RE = re.compile(r"[0-9a-f]{20}")


def should_run(status: str, retry_failed: bool = False) -> bool:
    """The re-run policy: skip done runs and runs another worker holds, redo incomplete/absent ones,
    retry failed ones only with --retry-failed."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    if status == "failed":
        return bool(retry_failed)
    return status in ("incomplete", "absent")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunDir:
    """One run folder. Cheap to create; nothing touches the disk until a method does."""

    def __init__(self, path: Path | str, *, stale_after: float | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        self.stale_after = stale_after  # overrides the one recorded in the lock, for status only
        self._lock: RunLock | None = None
        self._record_lines: list[str] | None = None
        self._parsed: tuple[tuple[int, int, int], list[tuple[str, dict[str, Any]]]] | None = None
        # spec.json and env.json as `verify(keep_records=True)` read them, for the one read that follows
        self._kept: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    # -- status ---------------------------------------------------------------------------------
    def status(self, ignore_own_lock: bool = False) -> str:
        """'done' | 'failed' | 'running' (a live lock) | 'incomplete' (started, neither done nor
        failed, no live lock) | 'absent'. With `ignore_own_lock`, the lock this RunDir holds does not
        count (the re-check after claiming)."""
        self._check_inside()
        if not self.path.is_dir():
            return "absent"
        if (self.path / DONE).exists():
            return "done"
        if lock_state(self.lock_path, self.stale_after) == "live" and not (
                ignore_own_lock and self._lock is not None and self._lock.held
                and (self.lock_info() or {}).get("token") == self._lock.token):
            return "running"
        if (self.path / FAILED).exists():
            return "failed"
        return "incomplete"

    def _check_inside(self) -> None:
        """A run folder that is a symbolic link would make the store read, reset and delete files
        elsewhere: refused, never followed."""
        if self.path.is_symlink():
            raise StoreError(f"run folder {self.path} is a symbolic link (to {os.readlink(self.path)}); the store "
                             f"never follows links out of itself: remove the link (rm {self.path}), then re-run")

    def lock_info(self) -> dict[str, Any] | None:
        read = read_lock(self.lock_path)
        return None if read is None else (read[0] or {})

    # -- claiming ---------------------------------------------------------------------------------
    def claim(self, heartbeat_interval: float = DEFAULT_HEARTBEAT, stale_after: float | None = None) -> RunLock:
        """Try to claim the run for this worker. Returns a `RunLock`, a context manager that releases
        it; it is truthy when held, falsy when another live worker holds the run (`lock.acquire()`
        raises RunBusy instead). A stale lock is taken over. While held, a heartbeat thread touches
        the lock every `heartbeat_interval` s (stale after `stale_after`, default 3 x interval), and
        this RunDir's writes raise LockLost once the lock has lapsed. Claiming neither checks nor
        clears what is in the folder: re-check `status(ignore_own_lock=True)`, then `reset()`."""
        if self._lock is not None and self._lock.held:
            raise RuntimeError(f"run {self.run_id} is already claimed by this RunDir")
        self._check_inside()
        mkdirs(self.path)
        lock = RunLock(self.lock_path, heartbeat_interval, stale_after)
        if not lock.try_acquire():
            return lock
        lock._on_release.append(self._released)
        self._lock = lock
        self._record_lines = []  # records in the folder are an earlier holder's: never merged into ours
        lock.start_heartbeat()
        return lock

    def release_stale_lock(self) -> bool:
        """Remove the lock a dead worker left on a finished run (killed between writing `done` or
        `failed.json` and releasing): taken over like any stale lock, then released. A live lock is
        never touched. Returns whether one was removed."""
        if not self.lock_path.exists() or lock_state(self.lock_path, self.stale_after) != "stale":
            return False
        lock = RunLock(self.lock_path, DEFAULT_HEARTBEAT, self.stale_after)
        try:
            if not lock.try_acquire():
                return False
        except StoreError:
            return False
        lock.release()
        return True

    def _released(self, lock: RunLock) -> None:
        if self._lock is lock:
            self._lock = None

    def _check_writable(self) -> None:
        if self._lock is not None:
            self._lock.check()

    def _fenced(self):
        """Held around anything that publishes or deletes a file of a claimed run (see msabench.store.lock)."""
        return self._lock.fenced() if self._lock is not None else contextlib.nullcontext()

    def reset(self) -> None:
        """Remove everything in the folder but the lock (`done` first): the outputs of an earlier
        attempt (records, predictions, checkpoints, failed.json, ...)."""
        self._check_writable()
        self._check_inside()
        self._record_lines = [] if self._lock is not None else None
        try:
            if not self.path.is_dir():
                return
            with self._fenced():
                self._remove_contents()
        except OSError as exc:
            raise write_error(self.path, exc) from exc

    def _remove_contents(self) -> None:
        (self.path / DONE).unlink(missing_ok=True)
        for entry in sorted(self.path.iterdir()):
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)  # a link is removed, never followed
        fsync_dir(self.path)

    # -- generic files ------------------------------------------------------------------------------
    def _user_file(self, name: str) -> Path:
        if not _NAME_RE.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"{name!r} is not a plain file name the store lets you write "
                             f"(reserved: {', '.join(sorted(_RESERVED))})")
        return self.path / name

    def _write(self, path: Path, data: bytes) -> None:
        self._check_writable()
        mkdirs(self.path)
        atomic_write_bytes(path, data, fence=self._fenced if self._lock is not None else None)

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self._user_file(name)
        self._write(path, bytes(data))
        return path

    def read_bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def write_json(self, name: str, obj: Any) -> Path:
        path = self._user_file(name)
        self._write(path, (dumps_json(obj) + "\n").encode())
        return path

    def read_json(self, name: str) -> Any:
        return read_json_file(self.path / name)

    def write_npz(self, name: str, arrays: Mapping[str, Any]) -> Path:
        path = self._user_file(name)
        self._write(path, npz_bytes({k: np.asarray(v) for k, v in arrays.items()}))
        return path

    def read_npz(self, name: str) -> dict[str, np.ndarray]:
        return read_npz_file(self.path / name)

    # -- spec and env -------------------------------------------------------------------------------
    def write_spec(self, spec: RunSpec | Mapping[str, Any]) -> None:
        if not isinstance(spec, RunSpec):
            spec = RunSpec.from_dict(dict(spec))
        if spec.run_id != self.run_id:
            raise ValueError(f"spec has run id {spec.run_id}, but this run folder is {self.run_id}")
        data = spec.to_dict()
        data["msabench_version"] = data.get("msabench_version") or major_minor()  # id-preserving
        data["run_id"] = self.run_id
        data["written_by"] = __version__
        self._write(self.path / SPEC, (dumps_json(data) + "\n").encode())

    def read_spec_dict(self) -> dict[str, Any]:
        if (kept := self._kept.pop(SPEC, None)) is not None:
            return kept
        path = self.path / SPEC
        data = read_json_file(path)
        check_schema(path, data, RUNSPEC_SCHEMA)
        check_spec_shape(path, data)
        return data

    def read_spec(self) -> RunSpec:
        return RunSpec.from_dict(self.read_spec_dict())

    def _written_by(self) -> str | None:
        try:
            data = json.loads((self.path / SPEC).read_text())
            return str(data.get("written_by")) if isinstance(data, dict) and data.get("written_by") else None
        except (OSError, ValueError):
            return None

    def write_env(self, env: Mapping[str, Any]) -> None:
        data = {"schema": ENV_SCHEMA, "written_by": __version__, **dict(env)}
        self._write(self.path / ENV, (dumps_json(data) + "\n").encode())

    def read_env(self) -> dict[str, Any]:
        if (kept := self._kept.pop(ENV, None)) is not None:
            return kept
        path = self.path / ENV
        data = read_json_file(path)
        check_schema(path, data, ENV_SCHEMA)
        return data

    # -- records ---------------------------------------------------------------------------------------
    def append_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Add records; records.jsonl is rewritten atomically with all of this run's records."""
        self._check_writable()
        lines = [record_line(normalise_record(r, self.run_id)) for r in records]
        if self._record_lines is None:
            self._record_lines = [line + "\n" for line, _ in self._read_record_lines()]
        new = self._record_lines + lines
        self._write(self.path / RECORDS, "".join(new).encode())
        self._record_lines = new

    def read_records(self) -> list[dict[str, Any]]:
        """All records, in the order written; StoreError on a corrupted line or unknown schema."""
        records = [rec for _, rec in self._read_record_lines()]
        self._parsed = None  # handed out once: a caller may change its records, the next read parses afresh
        return records

    def _read_record_lines(self) -> list[tuple[str, dict[str, Any]]]:
        """The parsed records, kept until `read_records` hands them out while the file stays the same
        (`status` and `report` verify a run's records and then read them: one parse, not two)."""
        path = self.path / RECORDS
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)  # records.jsonl is replaced whole, never edited
            if self._parsed is not None and self._parsed[0] == key:
                return self._parsed[1]
            text = path.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {path}: {exc}: run `msabench clean --incomplete` or delete the "
                             f"run folder {self.path}, then re-run") from exc
        parsed = parse_records(path, text, self._written_by())
        self._parsed = (key, parsed)
        return parsed

    # -- predictions -------------------------------------------------------------------------------------
    def write_predictions(self, predictions: Mapping[str, Any]) -> None:
        """Write predictions.npz from flat keys (module docstring); pred/* arrays become float32."""
        arrays: dict[str, np.ndarray] = {}
        for key, value in predictions.items():
            if not isinstance(key, str) or not key or key.startswith("/") or "//" in key:
                raise ValueError(f"bad predictions key {key!r}")
            arr = np.asarray(value)
            if key.startswith("pred/"):
                arr = arr.astype(np.float32, copy=False)
            elif arr.dtype.kind in "OS":
                arr = arr.astype(str)
            arrays[key] = arr
        self._write(self.path / PREDICTIONS, npz_bytes(arrays))

    def read_predictions(self) -> Predictions:
        return Predictions(read_npz_file(self.path / PREDICTIONS))

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint_path(self, rule: str) -> Path:
        if not _NAME_RE.fullmatch(rule):
            raise ValueError(f"bad selection rule name {rule!r}")
        return self.path / f"checkpoint-{rule}.safetensors"

    def checkpoint_rules(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name[len("checkpoint-"):-len(".safetensors")]
                      for p in self.path.glob("checkpoint-*.safetensors"))

    def write_checkpoint(self, rule: str, state_dict: Mapping[str, Any], *, epoch: int | None = None) -> Path:
        """Save `state_dict` (tensors made cpu and contiguous; tied tensors copied) as safetensors;
        identical weights give identical bytes."""
        from msabench.store.checkpoint import checkpoint_bytes

        path = self.checkpoint_path(rule)
        meta = {"run_id": self.run_id, "rule": rule}
        if epoch is not None:
            meta["epoch"] = str(int(epoch))
        self._write(path, checkpoint_bytes(state_dict, meta))
        return path

    def read_checkpoint(self, rule: str, device: str = "cpu") -> dict[str, Any]:
        from msabench.store.checkpoint import load_checkpoint

        path = self.checkpoint_path(rule)
        if not path.exists():
            have = ", ".join(self.checkpoint_rules()) or "none"
            raise StoreError(f"run {self.run_id} has no checkpoint for rule {rule!r} (it has: {have})")
        return load_checkpoint(path, device)

    def checkpoint_metadata(self, rule: str) -> dict[str, str]:
        from msabench.store.checkpoint import checkpoint_metadata

        return checkpoint_metadata(self.checkpoint_path(rule))

    # -- end states ---------------------------------------------------------------------------------------
    def mark_failed(self, reason: str, tb: str | BaseException | None = None, *,
                    traceback: str | None = None) -> None:
        """Write failed.json. `tb` (or `traceback`): a traceback string, an exception, or None (the
        exception being handled, if any)."""
        tb = traceback if tb is None else tb
        if isinstance(tb, BaseException):
            tb = "".join(_traceback.format_exception(tb))
        elif tb is None:
            tb = _traceback.format_exc() if sys.exc_info()[0] is not None else ""
        data = {"schema": FAILED_SCHEMA, "run_id": self.run_id, "reason": str(reason), "traceback": tb,
                "time": _now(), "host": hostname(), "pid": os.getpid(), "written_by": __version__}
        self._write(self.path / FAILED, (dumps_json(data) + "\n").encode())

    def read_failed(self) -> dict[str, Any] | None:
        """failed.json's content, or None when the run has not failed."""
        path = self.path / FAILED
        if not path.exists():
            return None
        data = read_json_file(path)
        check_schema(path, data, FAILED_SCHEMA)
        return data

    read_failure = read_failed

    def mark_done(self) -> None:
        """Write `done` last (after removing failed.json of an earlier attempt). Needs spec.json."""
        self._check_writable()
        if not (self.path / SPEC).exists():
            raise StoreError(f"run {self.run_id} has no spec.json; write_spec before mark_done")
        try:
            with self._fenced():
                (self.path / FAILED).unlink(missing_ok=True)
        except OSError as exc:
            raise write_error(self.path / FAILED, exc) from exc
        data = {"schema": DONE_SCHEMA, "run_id": self.run_id, "time": _now(), "written_by": __version__}
        self._write(self.path / DONE, (dumps_json(data) + "\n").encode())

    def is_done(self) -> bool:
        return (self.path / DONE).exists()

    def verify(self, *, keep_records: bool = False) -> None:
        """Read what `status` and `report` rely on (spec.json and records.jsonl of a done run,
        failed.json of a failed one): StoreError naming the file and the fix when one is corrupted
        or has a schema version this msabench cannot read. `keep_records`: keep the parsed records,
        spec and env for the `read_records`, `read_spec_dict` and `read_env` that follow (else they
        are dropped: a caller verifying many runs before reading any would hold them all in memory)."""
        status = self.status()
        self._kept.clear()
        kept = {}
        if status == "done" or (status == "failed" and (self.path / SPEC).exists()):
            kept[SPEC] = self.read_spec_dict()
        if status in ("done", "failed") and (self.path / ENV).exists():
            kept[ENV] = self.read_env()  # a newer schema (or damage) is named, never read silently
        if status == "done":
            lines = self._read_record_lines()
            if not keep_records:
                self._parsed = None
            else:  # the spec and env just checked, too: a run's files are then parsed once, not twice
                self._kept = kept
            if not lines:  # a done run always has records: its mean would lose a seed
                path = self.path / RECORDS
                raise StoreError(f"{path} is {'empty' if path.exists() else 'missing'} although run {self.run_id} is "
                                 f"done (a damaged store): delete the run folder {self.path}, then re-run")
        elif status == "failed":
            self.read_failed()


class Store:
    """The results store rooted at `out_dir` (runs under `<out_dir>/runs/`)."""

    def __init__(self, out_dir: Path | str, *, must_exist: bool = False, stale_after: float | None = None):
        self.root = Path(out_dir)
        self.runs_dir = self.root / "runs"
        self.stale_after = stale_after
        if must_exist and not self.runs_dir.is_dir():
            raise StoreError(f"no results store at {self.root} (no runs/ folder): pass the --out of "
                             f"`msabench run`, or set MSABENCH_OUT")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def run(self, spec_or_id: RunSpec | str) -> RunDir:
        run_id = spec_or_id.run_id if isinstance(spec_or_id, RunSpec) else str(spec_or_id)
        if not _NAME_RE.fullmatch(run_id):
            raise StoreError(f"{run_id[:80]!r} is not a run id (run ids are 20 hex digits; `msabench status --out "
                             f"{self.root}` lists the store's runs)")
        return RunDir(self.runs_dir / run_id, stale_after=self.stale_after)

    run_dir = run

    def __contains__(self, spec_or_id: RunSpec | str) -> bool:
        return self.run(spec_or_id).path.is_dir()

    def _entries(self) -> list[os.DirEntry]:
        if not self.runs_dir.is_dir():
            return []
        try:
            with os.scandir(self.runs_dir) as it:
                return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            raise StoreError(f"cannot list {self.runs_dir}: {exc.strerror or exc}") from exc

    def run_ids(self) -> list[str]:
        """The run folders the store made (real folders named like a run id); see `foreign`."""
        return [e.name for e in self._entries() if RUN_ID_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]

    def foreign(self) -> list[str]:
        """Entries of runs/ the store did not make (other names, files, symbolic links): left alone."""
        return [e.name for e in self._entries()
                if not (RUN_ID_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False))]

    def foreign_note(self) -> str | None:
        names = self.foreign()
        if not names:
            return None
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"note: {len(names)} entr{'y' if len(names) == 1 else 'ies'} in {self.runs_dir} the store did not "
                f"make (left alone): {shown}")

    def runs(self, status: str | None = None) -> Iterator[RunDir]:
        for run_id in self.run_ids():
            rd = self.run(run_id)
            if status is None or rd.status() == status:
                yield rd

    def statuses(self) -> dict[str, str]:
        return {rd.run_id: rd.status() for rd in self.runs()}

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES[:-1], 0)
        for status in self.statuses().values():
            counts[status] += 1
        return counts

    def clean_incomplete(self) -> list[str]:
        """Remove run folders that are neither done, failed nor running; returns their ids. Each one
        is claimed first (so a worker starting it meanwhile wins or loses cleanly), then renamed to a
        hidden name and deleted."""
        removed = []
        if self.runs_dir.is_dir():  # leftovers of an interrupted clean
            for trash in self.runs_dir.glob(".trash-*"):
                shutil.rmtree(trash, ignore_errors=True)
        for rd in self.runs("incomplete"):
            lock = RunLock(rd.lock_path, DEFAULT_HEARTBEAT, self.stale_after)
            try:
                if not lock.try_acquire():
                    continue
            except StoreError:
                continue
            try:
                if (rd.path / DONE).exists() or (rd.path / FAILED).exists():
                    continue
                trash = self.runs_dir / f".trash-{rd.run_id}-{uuid.uuid4().hex[:8]}"
                try:
                    os.replace(rd.path, trash)
                    shutil.rmtree(trash)
                except OSError as exc:
                    raise write_error(rd.path, exc) from exc
                removed.append(rd.run_id)
            finally:
                lock.release()
        return removed
