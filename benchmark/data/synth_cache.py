"""The synthetic suite on disk: what a folder costs before it is written, the confirmation threshold,
and the cache's listing and clearing (`msabench cache list|clear`; docs/architecture.md §5).

A folder holds one copy of the data (`arrays/*.npy`, memory-mapped by the runs); MMSA's `data.pkl`
(a second copy) is written only on request (`msabench data synth PRESET --mmsa-pickle`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError

ENV_CONFIRM_GB = "MSABENCH_SYNTH_CONFIRM_GB"
DEFAULT_CONFIRM_GB = 4.0
GB = 1e9
_ID_CHARS, _CHARS_PER_TOKEN = 24, 8  # mean characters of an id and of a raw-text token (numpy 'U': 4 bytes each)


def confirm_threshold() -> float:
    """Bytes above which writing synthetic data needs a confirmation (env MSABENCH_SYNTH_CONFIRM_GB)."""
    raw = os.environ.get(ENV_CONFIRM_GB)
    if raw in (None, ""):
        return DEFAULT_CONFIRM_GB * GB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise UserError(f"{ENV_CONFIRM_GB}={raw!r}: give a number of GB (e.g. 20), or unset it for "
                        f"{DEFAULT_CONFIRM_GB:g} GB.")
    return value * GB


def split_bytes(n: int, dims: dict[str, tuple[int, int]], max_lens: dict[str, int]) -> tuple[int, int]:
    """(arrays, extra for data.pkl) bytes of one split of n samples: features float32, token ids and
    lengths int64, ids and raw text as numpy strings; the pickle adds text_bert (3 x the token ids)."""
    t_len = max_lens["t"]
    feats = sum(n * max_lens[m] * dims[m][0] * 4 for m in ("t", "a", "v"))
    ids = n * t_len * 8
    strings = n * 4 * (_ID_CHARS + t_len * _CHARS_PER_TOKEN)
    arrays = feats + ids + 3 * n * 8 + n * 16 + strings
    return arrays, feats + 3 * ids + 2 * n * 8 + n * 16 + strings // 2


def human(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB" if nbytes >= 0.1 * GB else f"{nbytes / 1e6:.1f} MB"


def check_room(root: Path, nbytes: int, what: str, confirmed: bool, how_to_confirm: str) -> None:
    """Refuse to write `nbytes` under `root` when the disk lacks the space, or, unless `confirmed`,
    when they exceed the confirmation threshold (the message says how to confirm)."""
    if nbytes <= 0:
        return
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = None
    if free is not None and nbytes > free:
        raise UserError(f"{what} needs about {human(nbytes)} under {root} but {human(free)} are free; free space, "
                        "point MSABENCH_CACHE (or --dest) at a larger disk, or use a smaller scale")
    limit = confirm_threshold()
    if not confirmed and nbytes > limit:
        raise UserError(f"{what} would write about {human(nbytes)} under {root}, more than the {human(limit)} "
                        f"written without asking; {how_to_confirm}, or set {ENV_CONFIRM_GB} higher, or use a "
                        "smaller scale")


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def list_synth(root: Path) -> list[dict[str, Any]]:
    """Every folder of the synthetic cache: name, options, bytes, whether it holds MMSA pickles;
    temporary folders of interrupted generations are listed as incomplete."""
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or folder.is_symlink():
            continue
        entry: dict[str, Any] = {"folder": folder.name, "bytes": folder_bytes(folder)}
        try:
            meta = json.loads((folder / "meta.json").read_text())
            entry.update(name=meta.get("name"), options=meta.get("options", {}),
                         mmsa_pickle=any(folder.rglob("data.pkl")))
        except (OSError, ValueError):
            entry["incomplete"] = True
        out.append(entry)
    return out


def clear_synth(root: Path) -> int:
    """Delete every folder of the synthetic cache (regenerated, identical, when needed); the count."""
    n = 0
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
            n += 1
    return n
