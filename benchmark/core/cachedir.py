"""The msabench cache folder: `$MSABENCH_CACHE`, else `~/.cache/msabench` (synthetic suite, text encodings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("MSABENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "msabench"
