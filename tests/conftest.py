"""Test-wide settings: the synthetic-suite cache lives in the repository (git-ignored), not in ~."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MSABENCH_CACHE", str(Path(__file__).resolve().parents[1] / ".cache-msabench"))
