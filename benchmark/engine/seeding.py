"""Seeds and determinism (docs/architecture.md §9): `seed_everything(seed_hash(...))`.

`seed_hash` is stable across processes, platforms and Python versions (sha256 of the canonical JSON
of its parts; never Python's salted `hash`). torch is imported lazily, so this module stays torch-free.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from typing import Any

import numpy as np

from msabench.core.types import canonical_json

CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def seed_hash(*parts: Any) -> int:
    """A 31-bit seed derived from `parts` (str, numbers, tuples, dicts, dataclasses): the first
    8 hex digits of sha256(canonical JSON of the parts), masked to 31 bits."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def seed_everything(seed: int, *, deterministic: bool = True) -> dict[str, Any]:
    """Seed Python's `random`, numpy's global generator and torch (CPU and every CUDA device), and,
    with `deterministic`, ask torch for deterministic algorithms (warn_only: an op without a
    deterministic implementation warns instead of failing the run), pin cuDNN to deterministic
    kernels without autotuning, and set CUBLAS_WORKSPACE_CONFIG (when not set already; it takes
    effect for cuBLAS handles created afterwards). Returns the flags it set, for env.json."""
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    flags: dict[str, Any] = {"seed": seed, "python_random": True, "numpy_global": True}
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; tolerate its absence here
        flags["torch"] = None
        return {**flags, **determinism_flags()}
    torch.manual_seed(seed)  # seeds the CPU and all CUDA generators
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    flags["torch_manual_seed"] = True
    return {**flags, **determinism_flags()}


def determinism_flags() -> dict[str, Any]:
    """The process's current determinism settings (torch's only when torch is already imported)."""
    flags: dict[str, Any] = {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                             "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED")}
    torch = sys.modules.get("torch")
    if torch is not None:
        flags.update({
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "deterministic_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        })
    return flags
