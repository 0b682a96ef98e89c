"""The missing-rate grid (11 rates x 3 seeds) for one model on synth-mosi: where the time goes.

    python perf/bench_missing_rate.py [--model lf_dnn] [--scale 0.25] [--epochs 5] [--workers 1] [--quick]

Full size: `--scale 1` (MOSI's 1284/229/686 samples) with the model's own epochs (`--epochs 0`).

Runs `msabench run --protocol missing-rate --dataset synth-mosi --model M --seeds 1,2,3` (the
protocol's 11-rate grid, 0 to 1) in a fresh process, store and MLflow database, then splits its wall
time using what the runs recorded:

* `training`: the records' per-epoch training seconds (forward, backward, step over the batches);
* `evaluation`: the records' per-epoch evaluation seconds (predict, metrics, records);
* `run setup and store`: each run's time from spec.json to `done` outside its loop (data, masks,
  tensors, env.json, predictions, checkpoints);
* `sweep`: the rest: interpreter start, imports, planning (data generation on the first use),
  MLflow logging, the summary.

The projection for real MOSI multiplies the loop's time by 1 / scale (the loop is linear in the
samples) and by the model's default epochs / `--epochs`, and keeps the other parts as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lf_dnn")
    parser.add_argument("--scale", type=float, default=0.25, help="synth-mosi data.scale (1 = MOSI sizes)")
    parser.add_argument("--epochs", type=int, default=5, help="0: the model's own (train.epochs)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: scale 0.02, 1 epoch, rates 0,1, 1 seed")
    args = parser.parse_args()
    rates = ["--rates", "0,1"] if args.quick else []
    if args.quick:
        args.scale, args.epochs, args.seeds = 0.02, 1, "1"
    with tempfile.TemporaryDirectory(prefix="bench-missing-rate-") as out:
        argv = [sys.executable, "-m", "msabench", "run", "--protocol", "missing-rate", "--dataset", "synth-mosi",
                "--model", args.model, "--seeds", args.seeds, "--workers", str(args.workers), "--threads", "1",
                "--out", out, "--set", f"data.scale={args.scale}", *rates,
                *(["--set", f"train.epochs={args.epochs}"] if args.epochs else []),
                *(["--no-mlflow"] if args.no_mlflow else [])]
        started = time.perf_counter()
        done = subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"sweep failed ({done.returncode}): {done.stderr[-2000:]}")
        train = evaluate = run_total = 0.0
        epochs, n_runs = 0, 0
        for run in (p for p in Path(out, "runs").iterdir() if (p / "done").is_file()):
            summary = json.loads((run / "summary.json").read_text())
            records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
            loop_train, loop_eval = _split_seconds(records)
            train, evaluate = train + loop_train, evaluate + loop_eval
            run_total += (run / "done").stat().st_mtime - (run / "spec.json").stat().st_mtime
            epochs += summary["epochs_run"]
            n_runs += 1
    loop = train + evaluate
    setup = max(run_total - loop, 0.0)
    rest = max(wall - run_total, 0.0) if args.workers == 1 else float("nan")
    print(f"{args.model}, missing-rate grid: {n_runs} runs ({args.seeds} seeds), synth-mosi scale {args.scale:g}, "
          f"{epochs / n_runs:.1f} epochs per run, {args.workers} worker(s) x 1 thread, "
          f"MLflow {'off' if args.no_mlflow else 'on'}")
    print(f"wall time            {wall:8.1f} s")
    for name, seconds in (("training", train), ("evaluation", evaluate), ("run setup and store", setup),
                          ("sweep (start, plan, MLflow)", rest)):
        print(f"{name:28} {seconds:8.1f} s  {seconds / wall:6.1%}")
    print("(with several workers the parts overlap: the shares are of the summed run times)" if args.workers > 1
          else "", end="")
    default_epochs = _default_epochs(args.model, args.scale)
    factor = (1 / args.scale) * (default_epochs / (epochs / n_runs))
    projected = loop * factor + setup + (rest if args.workers == 1 else 0.0)
    print(f"projection for real MOSI sizes ({default_epochs} epochs, no early stop): "
          f"{projected / 60:.1f} min on 1 worker x 1 thread ({loop * factor / 60:.1f} min in the loop)")


def _split_seconds(records: list[dict]) -> tuple[float, float]:
    """Training and evaluation seconds: each epoch's first record carries the epoch's training time
    plus its own evaluation; the others carry their evaluation only."""
    by_epoch: dict[int, list[float]] = {}
    for r in records:
        by_epoch.setdefault(r["epoch"], []).append(r["seconds"])
    train = evaluate = 0.0
    for seconds in by_epoch.values():
        others = seconds[1:]
        per_eval = sum(others) / len(others) if others else 0.0
        train += max(seconds[0] - per_eval, 0.0)  # the first record's own evaluation, estimated by the others'
        evaluate += per_eval + sum(others)
    return train, evaluate


def _default_epochs(model: str, scale: float) -> int:
    """The model's own train.epochs under the missing-rate protocol (as `msabench run` resolves it)."""
    from msabench.plan.planner import plan
    from msabench.plan.request import Request

    specs = plan(Request(protocol="missing-rate", models=(model,), datasets=("synth-mosi",), seeds=(1,),
                         rates=(0.0,), user_set={"data.scale": scale}))
    return int(specs[0].config["train.epochs"])


if __name__ == "__main__":
    main()
