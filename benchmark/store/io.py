"""Low-level store I/O: atomic writes, deterministic npz, JSON, and the store's errors.

Every write goes to a temporary file in the destination folder, is fsynced, renamed over the
destination with `os.replace`, and the folder is fsynced: a reader sees the old file or the new one,
never a half-written one. An `OSError` on the way (ENOSPC, EROFS, EIO, ...) removes the temporary
file and raises `StoreWriteError`, a `UserError`, with one clean line. Torch-free.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import threading
import uuid
import zipfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from msabench.core.errors import UserError
from msabench.core.types import _json_default

T = TypeVar("T")
TMP_PREFIX = ".tmp-"  # temporary files: hidden, ignored by readers, removed on failure


class StoreError(UserError):
    """A problem with a results store that the user can fix (message names the fix)."""


class StoreWriteError(StoreError):
    """Writing to the store failed (no space, read-only file system, ...); nothing half-written is left."""


class StoreFileMissing(StoreError, FileNotFoundError):
    """A store file that should be there is not (also a FileNotFoundError)."""


class RunBusy(StoreError):
    """Another live worker holds the run's lock."""


class LockLost(StoreError):
    """This worker's lock was taken over (its heartbeat lapsed); it must stop writing."""


_ERRNO_HINTS = {
    errno.ENOSPC: "no space left on device: free space",
    errno.EDQUOT: "disk quota exceeded: free space",
    errno.EROFS: "read-only file system: point --out at a writable folder",
    errno.EACCES: "permission denied: point --out at a writable folder",
    errno.EPERM: "operation not permitted: point --out at a writable folder",
    errno.EIO: "I/O error: check the disk",
}


def write_error(path: Path | str, exc: OSError) -> StoreWriteError:
    hint = _ERRNO_HINTS.get(exc.errno or 0)
    what = hint or f"{exc.strerror or exc}: check the folder"
    return StoreWriteError(f"cannot write {path}: {what}, then try again")


def fsync_dir(folder: Path | str) -> None:
    """fsync a folder so a rename in it is durable; silently skipped where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 1 << 24])
        view = view[n:]


def tmp_path(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: Path | str, data: bytes,
                       fence: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
    """Write `data` to `path` atomically and durably; StoreWriteError on an OSError. `fence`: a
    context manager factory held around the rename that publishes the file (a run lock's ownership
    check: a worker whose lock was taken over publishes nothing)."""
    path = Path(path)
    tmp = tmp_path(path)
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        with fence() if fence is not None else contextlib.nullcontext():
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, StoreError) as exc:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, StoreError):
            raise
        raise write_error(path, exc) from exc


def atomic_write_stream(path: Path | str, fill: Callable[[IO[str]], T]) -> T:
    """Write a text file atomically by streaming: `fill(f)` writes into a temporary file beside
    `path`, which replaces `path` only when `fill` returned. Anything `fill` raises (a damaged run,
    Ctrl-C) leaves `path` as it was and no temporary file behind; OSError becomes StoreWriteError."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "x", encoding="utf-8", newline="", buffering=1 << 20) as f:
            result = fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return result
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise write_error(path, exc) from exc
        raise


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """JSON with numpy scalars and dataclasses handled; NaN allowed (metrics may be undefined)."""
    return json.dumps(obj, indent=indent, default=_json_default, allow_nan=True, ensure_ascii=False)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def read_json_file(path: Path | str) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StoreFileMissing(f"{path} does not exist (see `msabench status`)") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path} is corrupted (not valid JSON at line {exc.lineno}): run `msabench clean --incomplete` "
            f"or delete the run folder {path.parent}, then re-run") from exc


def mkdirs(folder: Path | str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc) from exc


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by np.load) with sorted members and fixed timestamps, so that the
    same arrays always give the same bytes (np.savez stamps the current time into the zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype == object:
                raise TypeError(f"array {key!r} has dtype object; store strings as a str array")
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def read_npz_file(path: Path | str) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise StoreFileMissing(f"{path} does not exist (see `msabench status`)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StoreError(
            f"{path} is corrupted ({exc}): run `msabench clean --incomplete` or delete the run folder "
            f"{path.parent}, then re-run") from exc
