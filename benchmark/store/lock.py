"""The run lock (docs/architecture.md §9): one live worker per run folder, stale locks taken over safely, and no
judgement that depends on any wall clock (shared stores across hosts have skewed clocks).

Protocol
- Acquire: write {"host","pid","token","beat":0,"heartbeat_interval","stale_after"} to a temporary
  file (fsynced) and hard-link it to `lock` (os.link fails when `lock` exists): exactly one creator
  wins, and a lock is never seen empty or half-written.
- Heartbeat: a daemon thread rewrites the lock every `heartbeat_interval` seconds with `beat` + 1,
  under the store's guard (below) and only after checking the token in it is still ours.
- Stale: a reader never compares a time in or on the lock with its own clock. A lock is stale when
  its pid is dead and its host is this host, or when this reader has watched it unchanged (same
  bytes, same inode: the beat did not advance) for longer than its `stale_after` (recorded in the
  lock so every reader judges it alike), measured on the reader's own monotonic clock. A reader that
  looks once (`msabench status`, `clean`) therefore counts a lock on another host as live.
- Takeover: under an flock'ed guard file (`<runs>/.takeover.lock`; flock is released by the kernel
  when a process dies, so the guard never goes stale), the claimer re-reads the lock, checks it is
  still the same stale lock (unchanged since it was judged), writes its own lock to a temporary file
  and renames it over `lock`. The guard serialises takeovers: two claimers never both win.
- Fencing: the holder publishes every file of the run (the rename of its temporary file, a
  deletion) under the same guard, after checking that the lock still carries its token. A holder
  that stalled (suspended, swapped out, its host's clock off) and was taken over finds another token
  and raises `LockLost` without writing; a holder that stalled and was not taken over just goes on.
  It releases (unlinks) only a lock that carries its token.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msabench.store.io import LockLost, RunBusy, StoreWriteError, _write_all, fsync_dir, tmp_path, write_error

DEFAULT_HEARTBEAT = 10.0
STALE_FACTOR = 3.0
GUARD_NAME = ".takeover.lock"

_HOST = socket.gethostname()

# What this process has seen of each lock: path -> (fingerprint, monotonic time it was first seen).
_WATCHED: dict[str, tuple[tuple, float]] = {}
_WATCHED_LOCK = threading.Lock()


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


def read_lock(path: Path) -> tuple[dict[str, Any] | None, tuple] | None:
    """(parsed content or None when unparseable, fingerprint) or None when there is no lock. The
    fingerprint changes whenever the lock is rewritten (a beat, a takeover); it holds no time that is
    ever compared with a clock."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(1 << 16)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None, ("dir",)
    try:
        info = json.loads(raw)
        if not isinstance(info, dict):
            info = None
    except (ValueError, UnicodeDecodeError):
        info = None
    return info, (hashlib.sha256(raw).hexdigest(), st.st_ino, st.st_mtime_ns)


def _limit(info: dict[str, Any] | None, stale_after: float | None) -> float:
    if stale_after is not None:
        return float(stale_after)
    if info is not None:
        try:
            value = float(info.get("stale_after"))
            if value == value and value > 0:  # NaN or <= 0 in a damaged lock: the default
                return value
        except (TypeError, ValueError):
            pass
    return DEFAULT_HEARTBEAT * STALE_FACTOR


def _dead_here(info: dict[str, Any] | None) -> bool:
    if info is None or info.get("host") != _HOST:
        return False
    try:
        return not pid_alive(int(info.get("pid")))
    except (TypeError, ValueError, OverflowError):
        return False


def lock_is_stale(path: Path, info: dict[str, Any] | None, fingerprint: tuple, *,
                  stale_after: float | None = None) -> bool:
    """Whether a lock (as read by `read_lock`) may be taken over: its holder is a dead process on this
    host, or this process has watched the lock unchanged for longer than `stale_after` (the lock's
    own, unless given) on its monotonic clock. The first look at a lock never finds it stale."""
    if _dead_here(info):
        return True
    key = os.path.abspath(path)
    now = time.monotonic()
    with _WATCHED_LOCK:
        seen = _WATCHED.get(key)
        if seen is None or seen[0] != fingerprint:
            _WATCHED[key] = (fingerprint, now)
            return False
        return now - seen[1] > _limit(info, stale_after)


def lock_state(path: Path, stale_after: float | None = None) -> str:
    """'absent', 'live' or 'stale'."""
    read = read_lock(path)
    if read is None:
        return "absent"
    info, fingerprint = read
    return "stale" if lock_is_stale(path, info, fingerprint, stale_after=stale_after) else "live"


@contextlib.contextmanager
def guard(folder: Path) -> Iterator[None]:
    """An exclusive flock on `<folder>/.takeover.lock` (the runs folder); a no-op where flock is
    unsupported."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:  # read-only is enough for flock, and works where creating would not (a read-only store)
        fd = os.open(folder / GUARD_NAME, os.O_RDONLY)
    except FileNotFoundError:
        try:
            fd = os.open(folder / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(folder / GUARD_NAME, exc) from exc
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


_guard = guard


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
        self.beats = 0
        self._held = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_release: list[Any] = []

    @property
    def _guard_folder(self) -> Path:
        return self.path.parent.parent

    # -- acquisition ----------------------------------------------------------------------------
    def _content(self) -> bytes:
        # "time" is for people reading the file; no reader compares it with a clock.
        self.info = {"host": _HOST, "pid": os.getpid(), "token": self.token, "beat": self.beats,
                     "time": time.time(), "heartbeat_interval": self.heartbeat_interval,
                     "stale_after": self.stale_after}
        return (json.dumps(self.info) + "\n").encode()

    def _write_tmp(self) -> Path:
        tmp = tmp_path(self.path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, self._content())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise write_error(self.path, exc) from exc
        return tmp

    def _create_exclusive(self) -> bool:
        try:
            tmp = self._write_tmp()
        except StoreWriteError:
            if self.path.parent.is_dir():
                raise
            try:  # the run folder was removed (clean) meanwhile: recreate it
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(self.path.parent, exc) from exc
            tmp = self._write_tmp()
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        fsync_dir(self.path.parent)
        return True

    def _take_over(self, seen: tuple) -> str:
        """'won', 'busy' or 'gone' (the lock vanished: try creating again)."""
        with guard(self._guard_folder):
            read = read_lock(self.path)
            if read is None:
                return "gone"
            info, fingerprint = read
            if fingerprint != seen or not lock_is_stale(self.path, info, fingerprint):
                return "busy"
            tmp = self._write_tmp()
            try:
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise write_error(self.path, exc) from exc
            fsync_dir(self.path.parent)
            self.took_over = info or {}
            return "won"

    def try_acquire(self) -> bool:
        """Claim the lock; False when a worker that may be live holds it."""
        if self._held:
            raise RuntimeError("lock already held by this RunLock")
        for _ in range(100):
            if self._create_exclusive():
                break
            read = read_lock(self.path)
            if read is None:
                continue  # released meanwhile: try again
            info, fingerprint = read
            if not lock_is_stale(self.path, info, fingerprint):
                return False
            outcome = self._take_over(fingerprint)
            if outcome == "won":
                break
            if outcome == "busy":
                return False
        else:  # pragma: no cover - pathological churn
            return False
        self._held = True
        return True

    def acquire(self) -> RunLock:
        if not self.try_acquire():
            holder = read_lock(self.path)
            who, after = "", DEFAULT_HEARTBEAT * STALE_FACTOR
            if holder is not None and holder[0] is not None:
                who = f" by {holder[0].get('host')}:{holder[0].get('pid')}"
                after = _limit(holder[0], None)
            raise RunBusy(f"run {self.path.parent.name} is being run{who} (lock {self.path}); wait for it to "
                          f"finish, or, if that worker is gone, re-run: a sweep takes a lock over once its "
                          f"heartbeat has stopped for {after:g}s")
        return self

    # -- ownership and fencing -------------------------------------------------------------------
    def _owned(self) -> bool:
        read = read_lock(self.path)
        return read is not None and read[0] is not None and read[0].get("token") == self.token

    @contextlib.contextmanager
    def fenced(self) -> Iterator[None]:
        """Hold the store's guard while the lock still carries this worker's token: what is done
        inside cannot interleave with a takeover. LockLost (nothing done) when it is not ours."""
        if not self._held:
            yield
            return
        with guard(self._guard_folder):
            if self._lost.is_set() or not self._owned():
                self._lost.set()
                raise LockLost(f"the lock on run {self.path.parent.name} was taken over by another worker "
                               f"(this one stalled past its heartbeat); this worker stopped writing to it")
            yield

    # -- heartbeat ------------------------------------------------------------------------------
    def beat(self) -> bool:
        """Advance the beat counter once; False (and the lock counts as lost) when it is no longer ours."""
        if not self._held or self._lost.is_set():
            return False
        try:
            with self.fenced():
                self.beats += 1
                tmp = self._write_tmp()
                try:
                    os.replace(tmp, self.path)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except LockLost:
            return False
        except (OSError, StoreWriteError):
            return True  # a transient failure (disk full, ...); the next beat retries
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
        """Whether another worker took the lock over (checked on disk, not by any clock)."""
        if self._held and not self._lost.is_set() and not self._owned():
            self._lost.set()
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LockLost when another worker took the lock over."""
        if self._held and self.lost:
            raise LockLost(f"the lock on run {self.path.parent.name} was taken over by another worker "
                           f"(this one stalled past its heartbeat); this worker stopped writing to it")

    # -- release --------------------------------------------------------------------------------
    def release(self) -> None:
        if not self._held:
            return
        self.stop_heartbeat()
        try:
            with guard(self._guard_folder):
                if not self._lost.is_set() and self._owned():
                    os.unlink(self.path)
                    fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass
        except StoreWriteError:
            pass  # the guard cannot be opened (read-only store): the lock, if ours, goes stale
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
