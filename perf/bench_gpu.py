"""GPU throughput: `--runs-per-gpu K` packing (bf16) and EMT-DLFR's seconds per epoch and memory.

    python perf/bench_gpu.py [--models tfn,lmf,mult] [--packing 1,2,4,8] [--runs 8] [--epochs 5]
                             [--emt-epochs 2] [--skip-emt] [--quick]

Needs one CUDA GPU (exits 2 saying so otherwise) and `nvidia-smi` for utilisation and memory.
Data: synth-mosi at scale 1 (MOSI's shapes: 1284/229/686 samples; text 50 x 768, audio 375 x 5,
vision 500 x 20 as in MMSA's unaligned pickle).

1. Packing: for each model and K, one `msabench run --device cuda --precision bf16 --executor
   process --runs-per-gpu K --threads 1` sweep of `--runs` runs (seeds 1..runs, `--epochs` epochs, no
   early stop) into a fresh store; printed: runs per hour (runs / sweep wall time), its ratio to K = 1
   (goal: at least 3x at the best K), and the GPU's mean utilisation and peak memory used over the
   sweep (nvidia-smi sampled every 0.5 s).
2. EMT-DLFR: one run on synth-mosi, batch 32, bf16, `--emt-epochs` epochs; printed: seconds per epoch
   (the records' training plus evaluation seconds) and the GPU's peak memory used, next to EMT-DLFR's
   Table 8 (15.4 s per epoch, 10.8 GB on a V100, batch 32, fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB) of GPU 0, sampled in a thread."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.util, self.memory = interval, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                util, memory = (float(x) for x in out.stdout.strip().split(","))
                self.util.append(util)
                self.memory.append(memory)
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> tuple[float, float]:
        return (statistics.mean(self.util) if self.util else float("nan"),
                max(self.memory) if self.memory else float("nan"))


def sweep(model: str, seeds: str, epochs: int, extra: list[str], workdir: Path) -> tuple[float, Path, GpuSampler]:
    out = Path(tempfile.mkdtemp(dir=workdir))
    argv = [sys.executable, "-m", "msabench", "run", "--protocol", "standard", "--dataset", "synth-mosi",
            "--model", model, "--seeds", seeds, "--device", "cuda", "--precision", "bf16", "--threads", "1",
            "--no-mlflow", "--out", str(out), "--set", f"train.epochs={epochs}",
            "--set", f"train.patience={epochs + 1}", *extra]
    with GpuSampler() as gpu:
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{model} sweep failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, out, gpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tfn,lmf,mult")
    parser.add_argument("--packing", default="1,2,4,8")
    parser.add_argument("--runs", type=int, default=8, help="runs per sweep (seeds 1..runs)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--emt-epochs", type=int, default=2)
    parser.add_argument("--skip-emt", action="store_true")
    parser.add_argument("--quick", action="store_true", help="lmf only, K = 1, 2, 2 runs, 1 epoch; EMT 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.models, args.packing, args.runs, args.epochs, args.emt_epochs = "lmf", "1,2", 2, 1, 1
    try:
        import torch
    except ImportError:
        raise SystemExit("torch is not installed") from None
    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        print("no CUDA GPU (or no nvidia-smi) here: GPU figures not measured", file=sys.stderr)
        raise SystemExit(2)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16, synth-mosi at MOSI's shapes, "
          f"{args.runs} runs x {args.epochs} epochs per sweep")
    seeds = ",".join(str(s) for s in range(1, args.runs + 1))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        workdir = Path(tmp)
        print(f"{'model':6} {'K':>2} {'runs/hour':>10} {'vs K=1':>7} {'GPU util':>9} {'peak MiB':>9}")
        for model in args.models.split(","):
            base = None
            for k in (int(x) for x in args.packing.split(",")):
                wall, _, gpu = sweep(model, seeds, args.epochs,
                                     ["--executor", "process", "--runs-per-gpu", str(k)], workdir)
                per_hour = args.runs / wall * 3600
                base = base or per_hour
                util, memory = gpu.summary()
                print(f"{model:6} {k:2d} {per_hour:10.1f} {per_hour / base:7.2f} {util:8.0f}% {memory:9.0f}",
                      flush=True)
        if not args.skip_emt:
            wall, out, gpu = sweep("emt_dlfr", "1", args.emt_epochs, ["--set", "train.batch_size=32"], workdir)
            records = [json.loads(line) for p in out.glob("runs/*/records.jsonl")
                       for line in p.read_text().splitlines()]
            per_epoch: dict[int, float] = {}
            for r in records:
                per_epoch[r["epoch"]] = per_epoch.get(r["epoch"], 0.0) + float(r["seconds"] or 0.0)
            seconds = statistics.median(per_epoch.values())
            print(f"EMT-DLFR (batch 32, bf16): {seconds:.1f} s per epoch (median of {len(per_epoch)}), "
                  f"peak GPU memory {gpu.summary()[1] / 1024:.1f} GiB; paper (Table 8, V100, fp32): 15.4 s, "
                  f"10.8 GB")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
