"""The frozen text-encoder cache: encoder outputs computed once, reused by every seed, model and worker.

Content-addressed: an entry's name is the sha256 of its `cache_key` parts (everything that changes
the numbers). Each entry is ``<key>.npy`` (memory-mapped on read) plus ``<key>.json``, a sidecar with
the parts, shape, dtype and the sha256 of the .npy bytes. Both are written to temporary files and
renamed into place, the sidecar last and under a per-key file lock, so an entry without a sidecar is
half-written; an entry whose bytes do not match the sidecar's checksum is corrupt. Either is
deleted and rebuilt, never read. Lives in ``$MSABENCH_CACHE/text`` (`msabench.core.cachedir`).

``MSABENCH_TEXT_CACHE=off`` turns the cache off: every run encodes its text afresh in memory and
nothing is read from or written to the cache (to measure what the cache saves, or to keep a read-only
cache folder untouched); the runs' numbers are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from msabench.core.cachedir import cache_dir

# Bump when the way entries are computed changes (the key holds it, so stale entries are never read).
TEXT_CACHE_VERSION = 1
KEY_PARTS = ("encoder", "fingerprint", "max_length", "pooling", "layer", "dtype", "dataset", "split", "mask",
             "code")
LOCK_TIMEOUT_S = 3600  # a first encoding of a large split can take a while; others wait for it

CACHE_SWITCH = "MSABENCH_TEXT_CACHE"
# Process-wide counts: "hits" (read from disk), "misses" (computed and written), "rebuilt" (corrupt),
# "off" (computed, the cache being off).
CACHE_STATS: Counter = Counter()
_VERIFIED: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) whose checksum matched


def cache_enabled() -> bool:
    """False when MSABENCH_TEXT_CACHE is off (also 0, false, no); any other value is an error."""
    value = os.environ.get(CACHE_SWITCH, "").strip().lower()
    if value in ("", "on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    from msabench.core.errors import UserError

    raise UserError(f"{CACHE_SWITCH}={os.environ[CACHE_SWITCH]!r}: use off to turn the text cache off, or on")


def text_cache_dir() -> Path:
    return cache_dir() / "text"


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every key part (each one must be present)."""
    missing = [p for p in KEY_PARTS if p not in parts]
    if missing:
        raise ValueError(f"cache key lacks {missing}")
    return hashlib.sha256(json.dumps({k: parts[k] for k in KEY_PARTS}, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid(npy: Path, sidecar: Path) -> bool:
    try:
        meta = json.loads(sidecar.read_text())
        stat = npy.stat()
    except (OSError, ValueError):
        return False
    if _VERIFIED.get(npy) == (stat.st_size, stat.st_mtime_ns):
        return True
    if meta.get("sha256") != _file_sha256(npy) or meta.get("bytes") != stat.st_size:
        return False
    _VERIFIED[npy] = (stat.st_size, stat.st_mtime_ns)
    return True


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_array(parts: dict[str, Any], compute: Callable[[], np.ndarray], root: Path | None = None) -> np.ndarray:
    """The entry for `parts`, memory-mapped read-only; `compute()` fills it on a miss (under the lock).
    With the cache off, `compute()`'s array itself, read-only like an entry."""
    from filelock import FileLock

    if not cache_enabled():
        CACHE_STATS["off"] += 1
        array = np.ascontiguousarray(compute())
        array.setflags(write=False)
        return array

    root = Path(root) if root is not None else text_cache_dir()
    key = cache_key(parts)
    npy, sidecar = root / f"{key}.npy", root / f"{key}.json"
    if _valid(npy, sidecar):
        CACHE_STATS["hits"] += 1
        return np.load(npy, mmap_mode="r")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock"), timeout=LOCK_TIMEOUT_S):
        if _valid(npy, sidecar):  # another worker wrote it while we waited
            CACHE_STATS["hits"] += 1
            return np.load(npy, mmap_mode="r")
        if npy.exists() or sidecar.exists():  # half-written or corrupt: never read, rebuilt
            CACHE_STATS["rebuilt"] += 1
            sidecar.unlink(missing_ok=True)
            npy.unlink(missing_ok=True)
        array = np.ascontiguousarray(compute())
        _atomic_write(npy, lambda f: np.save(f, array, allow_pickle=False))
        meta = {"parts": {k: parts[k] for k in KEY_PARTS}, "shape": list(array.shape), "dtype": str(array.dtype),
                "bytes": npy.stat().st_size, "sha256": _file_sha256(npy)}
        _atomic_write(sidecar, lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True).encode()))
        CACHE_STATS["misses"] += 1
    return np.load(npy, mmap_mode="r")


def list_entries(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete entry (its sidecar's parts, shape, size); half-written ones are listed as such."""
    root = Path(root) if root is not None else text_cache_dir()
    out = []
    for npy in sorted(root.glob("*.npy")) if root.is_dir() else []:
        sidecar = npy.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            meta = {"parts": {}, "incomplete": True}
        out.append({"key": npy.stem, "bytes": npy.stat().st_size, **meta})
    return out


def clear(root: Path | None = None) -> int:
    """Delete every entry (and stray temporary files); returns the number of entries deleted."""
    root = Path(root) if root is not None else text_cache_dir()
    if not root.is_dir():
        return 0
    n = 0
    for path in list(root.iterdir()):
        if path.suffix == ".npy" and not path.name.startswith("."):
            n += 1
        if path.is_file() and (path.suffix in (".npy", ".json", ".lock") or ".tmp-" in path.name):
            path.unlink(missing_ok=True)
    _VERIFIED.clear()
    return n
