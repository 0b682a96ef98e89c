"""`msabench report`, `status` and `export` over a large store against reading its files with plain `json`.

    python perf/bench_store.py [--runs 10000] [--epochs 10] [--repeats 2] [--store DIR] [--quick]

Fabricates a store of `--runs` finished runs (once; `--store DIR` keeps it for reruns) through the
store's own API (without its fsyncs): spec.json, env.json, records.jsonl and done, like runs of `msabench run`. Half are
`standard` runs on synth-mosi (20 models x seeds), half `missing-rate` runs (20 models x 11 rates x
seeds); each has `--epochs` epochs of train, valid and test records with MOSI's nine metrics (a
30-epoch run has 90 records; early stopping usually ends runs sooner).

Then, alternating `--repeats` times, each in a fresh Python process (interpreter start and imports
included on both sides):

* `plain json`: for every run folder, `json.load` spec.json and env.json, `json.loads` every line of
  records.jsonl and stat `done`, keeping everything in lists (what any reader of the store must do);
* `msabench status --out S`, `msabench report --out S --format csv` (every generic table),
  `msabench export --out S -o FILE` (the tidy CSV: one row per run x epoch x split x metric).

Printed: median wall time of each, its ratio to plain json (target 6: <= 2x), and the peak resident
memory of each process (its ru_maxrss; target: <= 1 GB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_JSON = r"""
import json, os, sys
root = os.path.join(sys.argv[1], "runs")
runs = []
for name in sorted(os.listdir(root)):
    folder = os.path.join(root, name)
    with open(os.path.join(folder, "spec.json")) as f:
        spec = json.load(f)
    with open(os.path.join(folder, "env.json")) as f:
        env = json.load(f)
    with open(os.path.join(folder, "records.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    runs.append((spec, env, records, os.path.exists(os.path.join(folder, "done"))))
print(len(runs), "runs", sum(len(r[2]) for r in runs), "records", file=sys.stderr)
"""

MODELS = ("tfn", "lmf", "lf_dnn", "mult", "misa", "mfn", "graph_mfn", "ef_lstm", "lf_lstm", "mctn", "mfm",
          "self_mm", "mmim", "tfr_net", "emt_dlfr", "almt", "mag_bert", "linear_probe", "constant", "mica")
RATES = tuple(round(0.1 * i, 1) for i in range(11))
REGRESSION = ("mae", "corr", "acc7", "acc5", "acc3", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0")


def _records(run_id: str, epochs: int, rate: float, base: float) -> list[dict]:
    records = []
    for epoch in range(epochs):
        for i, split in enumerate(("train", "valid", "test")):
            q = base + 0.01 * epoch - 0.02 * i - 0.3 * rate
            metrics = {m: round(0.4 + 0.5 * q + 0.001 * k, 6) for k, m in enumerate(REGRESSION)}
            loss = {"task": round(1.2 - q, 6)}
            if split == "train":
                loss.update(train_task=round(1.1 - q, 6), train_total=round(1.1 - q, 6))
            records.append({"schema": 1, "run_id": run_id, "epoch": epoch, "split": split, "domain": "synth-mosi",
                            "rate": rate, "metrics": metrics, "loss": loss, "seconds": 1.234})
    return records


def fabricate(out: Path, n_runs: int, epochs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from msabench.store.runs import Store

    store = Store(out)
    # The files' bytes are the store's own; their durability is not what this benchmark measures, and
    # an fsync per file made fabricating 10,000 runs take about 20 minutes on this machine.
    real_fsync, os.fsync = os.fsync, lambda fd: None
    try:
        _fabricate(store, n_runs, epochs)
    finally:
        os.fsync = real_fsync


def _fabricate(store, n_runs: int, epochs: int) -> None:
    from fabricate import _view

    from msabench.core.types import RunSpec

    half = n_runs // 2
    seeds_std = -(-half // len(MODELS))
    seeds_rate = -(-(n_runs - half) // (len(MODELS) * len(RATES)))
    jobs = [("standard", m, s, 0.0) for s in range(1, seeds_std + 1) for m in MODELS][:half]
    jobs += [("missing-rate", m, s, r) for s in range(1, seeds_rate + 1) for m in MODELS for r in RATES][:n_runs - half]
    config = {"train.epochs": 30, "train.batch_size": 32, "train.lr": 0.001, "data.scale": 1.0}
    for i, (protocol, model, seed, rate) in enumerate(jobs):
        view = _view(protocol, "", ["synth-mosi"], ["synth-mosi"], [], model, config, seed, rate, ("t", "a", "v"),
                     "regression", ("val", "last"), 0.4 + 0.001 * (i % 300))
        spec = RunSpec.from_dict(view.spec)
        rd = store.run(spec.run_id)
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.write_spec(spec)
        rd.write_env({"git_sha": "0" * 40, "git_dirty": False, "threads": 1, "device": "cpu", "n_params": 123456})
        rd.append_records(_records(spec.run_id, epochs, rate, 0.4 + 0.001 * (i % 300)))
        rd.write_json("summary.json", {"epochs_run": epochs, "stopped_early": False, "chosen_epochs": {"val": 1},
                                       "train_seconds": 12.3})
        rd.mark_done()


# A small wrapper starts each job and reports its wall time and peak resident set: a child's
# ru_maxrss starts from its parent's resident set at fork on Linux, so the (small) wrapper, not this
# process, must be the parent.
WRAPPER = r"""
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.perf_counter() - started
if done.returncode:
    sys.exit(f"exited {done.returncode}: {done.stderr[-2000:]}")
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident set (MB) of one job."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr[-2000:]}")
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of records per run (3 splits each)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--store", help="fabricate here (kept; reused when it holds --runs runs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 runs, 2 epochs, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.epochs, args.repeats = 40, 2, 1
    tmp = None if args.store else tempfile.TemporaryDirectory(prefix="bench-store-")
    out = Path(args.store or tmp.name)
    runs_dir = out / "runs"
    if not runs_dir.is_dir() or sum(1 for _ in runs_dir.iterdir()) != args.runs:
        started = time.perf_counter()
        fabricate(out, args.runs, args.epochs)
        print(f"fabricated {args.runs} runs x {args.epochs} epochs in {time.perf_counter() - started:.1f} s")
    size = sum(f.stat().st_size for f in runs_dir.rglob("*") if f.is_file()) / 1e6
    print(f"store {out}: {args.runs} runs, {args.runs * args.epochs * 3} records, {size:.0f} MB on disk")
    export_to = out / "export.csv"
    msabench = [sys.executable, "-m", "msabench"]
    jobs = {
        "plain json": [sys.executable, "-c", PLAIN_JSON, str(out)],
        "status": [*msabench, "status", "--out", str(out)],
        "report": [*msabench, "report", "--out", str(out), "--format", "csv"],
        "export": [*msabench, "export", "--out", str(out), "-o", str(export_to)],
    }
    seconds: dict[str, list[float]] = {k: [] for k in jobs}
    peaks: dict[str, float] = {k: 0.0 for k in jobs}
    for _ in range(args.repeats):
        for name, argv in jobs.items():
            wall, peak = timed(argv)
            seconds[name].append(wall)
            peaks[name] = max(peaks[name], peak)
    base = statistics.median(seconds["plain json"])
    print(f"{'job':12} {'median s':>9} {'ratio':>6} {'peak MB':>8}")
    for name in jobs:
        s = statistics.median(seconds[name])
        print(f"{name:12} {s:9.2f} {s / base:6.2f} {peaks[name]:8.0f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
