"""Test-wide settings: the synthetic-suite cache lives in the repository (git-ignored), not in ~;
and the counters some test modules keep (fuzz examples, injected faults, hostile files) are printed
at the end of the session: a test module that defines `counter_lines() -> list[str]` is asked for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_MODULES = pytest.StashKey[set]()


def pytest_collection_modifyitems(config, items):
    config.stash[_MODULES] = {item.module for item in items if getattr(item, "module", None) is not None}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = []
    for module in sorted(config.stash.get(_MODULES, set()), key=lambda m: m.__name__):
        counters = getattr(module, "counter_lines", None)
        if callable(counters) and counters.__module__ == module.__name__:
            lines.extend(counters())
    if lines:
        terminalreporter.section("msabench counters")
        for line in lines:
            terminalreporter.write_line(line)

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
