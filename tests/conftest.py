"""Test-wide settings: the synthetic-suite cache lives in the repository (git-ignored), not in ~."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MSABENCH_CACHE", str(Path(__file__).resolve().parents[1] / ".cache-msabench"))

import signal  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _time_limit(request):
    """`@pytest.mark.time_limit(S)`: the test fails once it has run S seconds (SIGALRM, main thread)."""
    marker = request.node.get_closest_marker("time_limit")
    if marker is None or not hasattr(signal, "SIGALRM"):
        yield
        return
    seconds = int(marker.args[0])

    def over(signum, frame):
        pytest.fail(f"{request.node.nodeid} ran over its time limit of {seconds} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, over)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
