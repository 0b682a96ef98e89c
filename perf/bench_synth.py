"""Synthetic-suite generation against the floor of drawing and saving the same arrays.

    python perf/bench_synth.py [--repeat 3] [--case synth-mosi:1 --case synth-mosei:0.25]

For each case, two jobs run side by side in one run, each in a fresh subprocess (alternating,
`--repeat` times; the median is reported):

* `generate`: `msabench.data.synth.generate(preset, scale=...)` into a fresh temporary folder
  (the whole dataset: arrays/*.npy and json files; MMSA's data.pkl is written only on request);
* `baseline`: for each split, the same float arrays (text, audio, vision, same shapes) drawn with
  `numpy.random.default_rng().standard_normal(shape, dtype=float32)` and written with `np.save`,
  one array at a time (each freed before the next).

Time is the wall time inside the child from just before the work to just after it (imports and
interpreter start excluded; both write to the same file system). Memory is the child's peak
resident set above its own baseline: `resource.getrusage(RUSAGE_SELF).ru_maxrss` after the work
minus the same high-water mark just before it. RSS, not tracemalloc: numpy's buffers are visible to
tracemalloc, but page-cache effects, memory-mapped files and allocator slack are not, and RSS is
what a worker's memory limit sees; ru_maxrss is the kernel's own high-water mark, so no sampling
can miss a short peak. The data size is the total bytes of the dataset's arrays (one copy).
Goals (design): time ratio <= 1.5, peak memory <= 1.5 x data size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, os
import numpy as np
job, preset, scale, dest = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
from msabench.data import synth
spec = synth.PRESETS[preset]
def shapes():
    out = []
    for dom in spec.domains.values():
        sizes = synth.scaled_sizes(dom.sizes, scale)
        for split, n in sizes.items():
            for m in ("t", "a", "v"):
                d, t = dom.dims[m]
                out.append((n, t, d))
    return out
data_bytes = sum(4 * n * t * d for n, t, d in shapes())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if job == "generate":
    synth.generate(preset, dest=dest, scale=scale)
else:
    rng = np.random.default_rng()
    for i, shape in enumerate(shapes()):
        a = rng.standard_normal(shape, dtype=np.float32)
        np.save(os.path.join(dest, f"{i}.npy"), a)
        del a
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"seconds": seconds, "peak_bytes": peak * 1024, "data_bytes": data_bytes}))
"""


def run_child(job: str, preset: str, scale: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as dest:
        out = subprocess.run([sys.executable, "-c", CHILD, job, preset, str(scale), dest],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "MSABENCH_CACHE": dest})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", help="PRESET:SCALE (repeatable)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    cases = args.case or ["synth-mosi:1", "synth-mosei:0.25"]
    print(f"{'case':<22}{'gen s':>8}{'base s':>8}{'ratio':>7}{'data MiB':>10}{'gen peak':>10}"
          f"{'x data':>8}{'base peak':>10}{'x data':>8}")
    ok = True
    for case in cases:
        preset, _, scale = case.partition(":")
        scale = float(scale or 1)
        gen, base = [], []
        for _ in range(args.repeat):
            gen.append(run_child("generate", preset, scale))
            base.append(run_child("baseline", preset, scale))
        g = statistics.median(r["seconds"] for r in gen)
        b = statistics.median(r["seconds"] for r in base)
        data = gen[0]["data_bytes"]
        gp = max(r["peak_bytes"] for r in gen)
        bp = max(r["peak_bytes"] for r in base)
        mib = 2**20
        print(f"{case:<22}{g:8.2f}{b:8.2f}{g / b:7.2f}{data / mib:10.0f}{gp / mib:10.0f}"
              f"{gp / data:8.2f}{bp / mib:10.0f}{bp / data:8.2f}")
        print("   generate runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in gen)
              + "; baseline runs (s): " + ", ".join(f"{r['seconds']:.2f}" for r in base))
        ok &= g / b <= 1.5 and gp / data <= 1.5
    print("goals met" if ok else "goal missed: time ratio <= 1.5 and peak <= 1.5 x data")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
