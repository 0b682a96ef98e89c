"""How long the default conformance suite takes as the zoo grows: the registered models plus K dummy
plugins (installed through the `msabench.models` entry-point group into a temporary site folder),
side by side with the registered models alone, in one run.

    python perf/conformance_budget.py [--target 25] [--base lf_dnn]

Each dummy is the `--base` model under another name (same size, same checks), so the projection
to `--target` models is the measured per-model cost times the number of models. Prints both wall
times, the per-model cost, and the projected suite time for the target zoo size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_dummies(site: Path, base: str, count: int) -> None:
    lines = ["from msabench.api import MODELS", f"base = MODELS.get({base!r})"]
    for i in range(count):
        lines.append(f"MODELS.add('dummy_{i:02d}', type('Dummy{i:02d}', (base,), "
                     f"{{'name': 'dummy_{i:02d}', '__module__': base.__module__, '__doc__': base.__doc__}}))")
    (site / "msabench_dummy_zoo.py").write_text("\n".join(lines) + "\n")
    info = site / "msabench_dummy_zoo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: msabench-dummy-zoo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[msabench.models]\ndummy_zoo = msabench_dummy_zoo\n")


def timed_suite(pythonpath: str | None) -> tuple[float, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_conformance.py"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=25, help="zoo size to project to")
    parser.add_argument("--base", default="lf_dnn", help="the model each dummy copies")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from msabench.api import MODELS

    registered = len(MODELS.names())
    extra = max(1, args.target - registered)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        write_dummies(site, args.base, extra)
        base_s, base_line = timed_suite(None)
        grown_s, grown_line = timed_suite(str(site))
    per_model = (grown_s - base_s) / extra
    print(f"registered models: {registered}; suite: {base_s:.1f} s ({base_line})")
    print(f"with {extra} dummy copies of {args.base}: {grown_s:.1f} s ({grown_line})")
    print(f"marginal cost per model: {per_model:.1f} s; ratio grown/base: {grown_s / base_s:.2f}")
    projected = base_s + per_model * (args.target - registered)
    print(f"projected conformance time at {args.target} models: {projected:.0f} s")


if __name__ == "__main__":
    main()
