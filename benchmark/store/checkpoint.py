"""Checkpoint (de)serialisation for the store: safetensors, imported lazily (torch lives here only).

safetensors writes a JSON header (tensors ordered by dtype alignment, then name) and the raw bytes:
identical weights and metadata give identical files. Tensors are detached, moved to the CPU and made
contiguous; a tensor that shares storage with another (tied weights) or views a larger storage is
copied, since safetensors refuses shared or partial storages. The metadata is one key holding
canonical JSON: safetensors orders several metadata keys differently from process to process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msabench import __version__
from msabench.core.types import canonical_json

META_KEY = "msabench"  # safetensors metadata: {"msabench": canonical JSON of {version, run_id, rule, epoch}}


def checkpoint_bytes(state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"checkpoint entry {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if t.numel() and (ptr in seen or storage.nbytes() != t.numel() * t.element_size()
                          or t.data_ptr() != ptr):
            t = t.clone(memory_format=torch.contiguous_format)
            ptr = t.untyped_storage().data_ptr()
        if t.numel():
            seen.add(ptr)
        tensors[str(name)] = t
    meta = {"version": __version__, **{str(k): str(v) for k, v in (metadata or {}).items()}}
    # One metadata key: safetensors keeps metadata in a hash map whose order varies per process.
    return save(tensors, metadata={META_KEY: canonical_json(meta)})


def load_checkpoint(path: Path | str, device: str = "cpu") -> dict[str, Any]:
    """The tensors of a safetensors checkpoint (never a pickle: nothing in the file runs); StoreError
    when the file is not a readable safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as exc:
        raise _unreadable(path, exc) from None


def checkpoint_metadata(path: Path | str) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        if META_KEY in meta:
            meta.update(json.loads(meta.pop(META_KEY)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return meta


def _unreadable(path: Path | str, exc: BaseException):
    from msabench.store.io import StoreError, StoreFileMissing

    if isinstance(exc, FileNotFoundError):
        return StoreFileMissing(f"{path} does not exist (see `msabench status`)")
    return StoreError(f"{path} is not a readable safetensors checkpoint ({exc}); it is corrupted or was replaced: "
                      f"delete the run folder {Path(path).parent}, then re-run")
