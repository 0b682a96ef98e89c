"""Batch gathering: `np.take` (what msabench.engine.batching uses) vs `torch.index_select`, side by side.

Gathers random batches of 64 rows from a synth-mosi-shaped text array (1284 x 50 x 768 float32)
with both methods, alternating, and prints the median time of each and their ratio.

    python perf/bench_batching.py [--rows 1284] [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1284)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    array = rng.standard_normal((args.rows, 50, 768), dtype=np.float32)
    tensor = torch.from_numpy(array)
    times: dict[str, list[float]] = {"np.take": [], "torch.index_select": []}
    for _ in range(args.repeats):
        index = rng.permutation(args.rows)[: args.batch]
        t0 = time.perf_counter()
        a = torch.from_numpy(np.take(array, index, axis=0))
        t1 = time.perf_counter()
        b = tensor.index_select(0, torch.from_numpy(index))
        t2 = time.perf_counter()
        assert torch.equal(a, b)
        times["np.take"].append(t1 - t0)
        times["torch.index_select"].append(t2 - t1)
    take, select = (statistics.median(times[k]) * 1000 for k in ("np.take", "torch.index_select"))
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} of ({args.rows}, 50, 768) float32")
    print(f"np.take            {take:8.2f} ms (median of {args.repeats})")
    print(f"torch.index_select {select:8.2f} ms")
    print(f"ratio index_select / take: {select / take:.1f}x")


if __name__ == "__main__":
    main()
