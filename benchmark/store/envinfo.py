"""The run environment recorded in env.json (docs/architecture.md §9).

`collect_env(device, threads, extra)` = static facts (cached per process: `git_sha`, `git_dirty`
(None when unknown) and `git_root` of the msabench source tree, versions, platform, installed
distributions as `pip freeze` lines read through importlib.metadata) + per-run facts (device, threads,
determinism flags) + `extra` (data and mask hashes). Nothing here raises on a missing git, a
non-checkout install or a missing torch.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msabench
from msabench.engine.seeding import determinism_flags

ENV_SCHEMA = 1


def source_root() -> Path:
    """The folder holding msabench's sources (benchmark/ in a checkout)."""
    return Path(msabench.__file__).resolve().parent


def _find_git_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _git(root: Path, *args: str) -> str | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        out = subprocess.run(["git", "-c", f"safe.directory={root}", "--no-optional-locks", *args],
                             cwd=root, capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _head_from_files(root: Path) -> str | None:
    """The HEAD sha read from .git without the git binary (plain checkouts and worktrees)."""
    try:
        git = root / ".git"
        if git.is_file():  # worktree or submodule: "gitdir: PATH"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        bases = [git]
        if (git / "commondir").exists():
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).exists():
                return (base / ref).read_text().strip() or None
            if (base / "packed-refs").exists():
                for line in (base / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


def git_info(start: Path | None = None) -> dict[str, Any]:
    """{"sha", "dirty", "root"} of the git checkout holding `start` (default: msabench's sources);
    all None when it is not a checkout. `dirty` counts tracked changes and untracked, not ignored
    files; None when git cannot tell."""
    root = _find_git_root(start or source_root())
    if root is None:
        return {"sha": None, "dirty": None, "root": None}
    sha = _git(root, "rev-parse", "HEAD")
    sha = sha.strip() if sha else _head_from_files(root)
    status = _git(root, "status", "--porcelain")
    return {"sha": sha or None, "dirty": None if status is None else bool(status.strip()), "root": str(root)}


def installed_packages() -> list[str]:
    """`pip freeze`-like "name==version" lines of the installed distributions, sorted."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except (KeyError, TypeError):
            continue
        if name and name.lower() not in found:
            found[name.lower()] = f"{name}=={dist.version}"
    return [found[k] for k in sorted(found)]


def _torch_versions() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": None, "cuda": None, "cudnn": None}
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install must not fail a run's bookkeeping
        cudnn = None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}


@functools.lru_cache(maxsize=1)
def static_env() -> dict[str, Any]:
    """The facts that do not change within a process (cached)."""
    import numpy

    git = git_info()
    return {
        "git_sha": git["sha"],
        "git_dirty": git["dirty"],
        "git_root": git["root"],
        "msabench": msabench.__version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **_torch_versions(),
        "numpy": numpy.__version__,
        "packages": installed_packages(),
    }


def _device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        try:
            import torch

            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            info["gpu"] = torch.cuda.get_device_name(index)
            info["gpu_capability"] = list(torch.cuda.get_device_capability(index))
        except Exception:  # noqa: BLE001
            pass
    return info


def collect_env(device: str, threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """env.json's content (without "schema", added by the store). `extra` (data and mask hashes,
    seed_everything's flags as "determinism", ...) is merged at the top level: a dict merges into a
    collected dict of the same key (extra's entries win), anything else replaces it."""
    env = copy.deepcopy(static_env())
    env.update(_device_info(str(device)))
    env["threads"] = int(threads)
    torch = sys.modules.get("torch")
    env["torch_threads"] = int(torch.get_num_threads()) if torch is not None else None
    env["determinism"] = determinism_flags()
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(env.get(key), dict):
            env[key] = {**env[key], **value}
        else:
            env[key] = value
    return env
