"""The run lock (docs/architecture.md §9): one live worker per run folder, stale locks taken over safely.

Protocol
- Acquire: create `lock` with O_CREAT|O_EXCL and write {"host","pid","time","token",
  "heartbeat_interval","stale_after"} into it (fsynced). The kernel lets exactly one creator win.
- Heartbeat: a daemon thread touches the lock (mtime) every `heartbeat_interval` seconds after
  checking the token in it is still ours.
- Stale: the lock's mtime is older than its `stale_after` (default 3 x interval, recorded in the lock
  so every reader judges it alike), or its pid is dead and its host is this host. A lock file that
  cannot be parsed (a claimer died between create and write) is stale once its mtime is older than
  the default stale time.
- Takeover: under an flock'ed guard file (`<runs>/.takeover.lock`; flock is released by the kernel
  when a process dies, so the guard never goes stale), the claimer re-reads the lock, checks it is
  still the same stale lock (same token, still stale), writes its own lock to a temporary file and
  renames it over `lock` (os.replace). The lock path exists throughout, so no O_EXCL creator can win
  meanwhile, and the guard serialises takeovers: two claimers never both win.
- A holder never deletes a lock it may no longer own: it stops heart-beating and counts itself lost
  as soon as its own last beat is older than `max(stale_after - interval, stale_after / 2)` (before
  any reader can judge the lock stale), and it releases (unlinks) only a lock that carries its token.
  So a holder that stalled (suspended, swapped out) cannot remove the lock of the worker that took
  over, and its writes through the RunDir raise `LockLost`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from msabench.store.io import LockLost, RunBusy, StoreWriteError, _write_all, fsync_dir, tmp_path, write_error

DEFAULT_HEARTBEAT = 10.0
STALE_FACTOR = 3.0
GUARD_NAME = ".takeover.lock"

_HOST = socket.gethostname()


def hostname() -> str:
    return _HOST


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent died too stays a zombie until init reaps it (in a container whose
    init reaps late, for seconds): kill(pid, 0) still succeeds, but it writes nothing. Linux only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


def read_lock(path: Path) -> tuple[dict[str, Any] | None, float] | None:
    """(parsed content or None when unparseable, mtime) or None when there is no lock."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(raw)
        if not isinstance(info, dict):
            info = None
    except (ValueError, UnicodeDecodeError):
        info = None
    return info, st.st_mtime


def lock_is_stale(info: dict[str, Any] | None, mtime: float, *, now: float | None = None,
                  stale_after: float | None = None) -> bool:
    """Whether a lock (as read by `read_lock`) may be taken over. `stale_after` overrides the one
    recorded in the lock."""
    now = time.time() if now is None else now
    limit = stale_after
    if limit is None and info is not None:
        try:
            limit = float(info.get("stale_after"))
        except (TypeError, ValueError):
            limit = None
    if limit is None:
        limit = DEFAULT_HEARTBEAT * STALE_FACTOR
    if now - mtime > limit:
        return True
    if info is not None and info.get("host") == _HOST:
        try:
            pid = int(info.get("pid"))
        except (TypeError, ValueError):
            return False
        return not pid_alive(pid)
    return False


def lock_state(path: Path, stale_after: float | None = None) -> str:
    """'absent', 'live' or 'stale'."""
    read = read_lock(path)
    if read is None:
        return "absent"
    info, mtime = read
    return "stale" if lock_is_stale(info, mtime, stale_after=stale_after) else "live"


@contextlib.contextmanager
def _guard(folder: Path):
    """An exclusive flock on `<folder>/.takeover.lock` (the runs folder); a no-op where flock is
    unsupported."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(folder / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(folder / GUARD_NAME, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # pragma: no cover - file systems without flock
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # closing releases the flock


class RunLock:
    """A claimed run lock; a context manager that releases the lock (and stops its heartbeat)."""

    def __init__(self, path: Path | str, heartbeat_interval: float = DEFAULT_HEARTBEAT,
                 stale_after: float | None = None):
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be > 0")
        self.path = Path(path)
        self.heartbeat_interval = float(heartbeat_interval)
        self.stale_after = float(stale_after) if stale_after is not None else STALE_FACTOR * self.heartbeat_interval
        if self.stale_after <= self.heartbeat_interval:
            raise ValueError("stale_after must be longer than heartbeat_interval")
        self.token = uuid.uuid4().hex
        self.info: dict[str, Any] = {}
        self.took_over: dict[str, Any] | None = None  # the stale lock's content, after a takeover
        self._held = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0
        self._on_release: list[Any] = []

    # -- acquisition ----------------------------------------------------------------------------
    def _content(self) -> bytes:
        self.info = {"host": _HOST, "pid": os.getpid(), "time": time.time(), "token": self.token,
                     "heartbeat_interval": self.heartbeat_interval, "stale_after": self.stale_after}
        return (json.dumps(self.info) + "\n").encode()

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:  # the run folder was removed (clean) meanwhile: recreate it
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            except OSError as exc:
                raise write_error(self.path, exc) from exc
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        try:
            _write_all(fd, self._content())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise write_error(self.path, exc) from exc
        os.close(fd)
        fsync_dir(self.path.parent)
        return True

    def _take_over(self, seen: dict[str, Any] | None, seen_mtime: float) -> str:
        """'won', 'busy' or 'gone' (the lock vanished: try creating again)."""
        with _guard(self.path.parent.parent):
            read = read_lock(self.path)
            if read is None:
                return "gone"
            info, mtime = read
            if info is not None and seen is not None:
                same = info.get("token") == seen.get("token")
            else:  # unparseable: the same file if it is still unparseable and untouched
                same = info is None and seen is None and mtime == seen_mtime
            if not same or not lock_is_stale(info, mtime):
                return "busy"
            tmp = tmp_path(self.path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    _write_all(fd, self._content())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise write_error(self.path, exc) from exc
            fsync_dir(self.path.parent)
            self.took_over = info or {}
            return "won"

    def try_acquire(self) -> bool:
        """Claim the lock; False when a live worker holds it."""
        if self._held:
            raise RuntimeError("lock already held by this RunLock")
        for _ in range(100):
            if self._create_exclusive():
                break
            read = read_lock(self.path)
            if read is None:
                continue  # released meanwhile: try again
            info, mtime = read
            if not lock_is_stale(info, mtime):
                return False
            outcome = self._take_over(info, mtime)
            if outcome == "won":
                break
            if outcome == "busy":
                return False
        else:  # pragma: no cover - pathological churn
            return False
        self._held = True
        self._last_beat = time.time()
        return True

    def acquire(self) -> RunLock:
        if not self.try_acquire():
            holder = read_lock(self.path)
            who, after = "", DEFAULT_HEARTBEAT * STALE_FACTOR
            if holder is not None and holder[0] is not None:
                who = f" by {holder[0].get('host')}:{holder[0].get('pid')}"
                after = holder[0].get("stale_after", after)
            raise RunBusy(f"run {self.path.parent.name} is being run{who} (lock {self.path}); wait for it to "
                          f"finish, or, if that worker is gone, for its heartbeat to lapse ({after:g}s)")
        return self

    # -- heartbeat ------------------------------------------------------------------------------
    @property
    def _lapse_limit(self) -> float:
        return max(self.stale_after - self.heartbeat_interval, self.stale_after / 2)

    def _owned(self) -> bool:
        read = read_lock(self.path)
        return read is not None and read[0] is not None and read[0].get("token") == self.token

    def beat(self) -> bool:
        """Touch the lock once; False (and the lock counts as lost) when it is no longer ours."""
        if not self._held or self._lost.is_set():
            return False
        now = time.time()
        if now - self._last_beat > self._lapse_limit or not self._owned():
            self._lost.set()
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self._lost.set()
            return False
        except OSError:
            return True  # a transient failure; the next beat retries, lapse detection still applies
        self._last_beat = now
        return True

    def _run_heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            if not self.beat():
                return

    def start_heartbeat(self) -> None:
        if self._thread is None and self._held:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run_heartbeat, daemon=True,
                                            name=f"msabench-heartbeat-{self.path.parent.name}")
            self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    @property
    def held(self) -> bool:
        return self._held

    @property
    def lost(self) -> bool:
        if self._held and not self._lost.is_set() and time.time() - self._last_beat > self._lapse_limit:
            self._lost.set()
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LockLost when another worker may have taken the lock over."""
        if self._held and self.lost:
            raise LockLost(f"the lock on run {self.path.parent.name} lapsed and may have been taken over by "
                           f"another worker; this worker stopped writing to it")

    # -- release --------------------------------------------------------------------------------
    def release(self) -> None:
        if not self._held:
            return
        self.stop_heartbeat()
        try:
            if not self.lost and self._owned():
                os.unlink(self.path)
                fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreWriteError(f"cannot remove lock {self.path}: {exc.strerror or exc}") from exc
        finally:
            self._held = False
            for callback in self._on_release:
                callback(self)
            self._on_release.clear()

    def __bool__(self) -> bool:
        """True while held: `with rd.claim() as claimed: if not claimed: ...`."""
        return self._held

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
