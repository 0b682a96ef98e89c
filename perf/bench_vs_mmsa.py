"""msabench against MMSA 2.2.1: per-epoch time, a 5-seed sweep end to end, test metrics.

    python perf/bench_vs_mmsa.py [--mmsa-venv DIR] [--scale 0.1] [--epochs 3] [--mult-scale 0.0125]
        [--mult-epochs 2] [--seeds 1,2,3,4,5] [--models tfn,lmf,lf_dnn,mult] [--workers 2] [--threads 1]
        [--skip epoch|sweep] [--out DIR] [--json FILE]

Run it with msabench's python (the repository's venv). MMSA is never a dependency of msabench: it
lives in its own venv, `--mmsa-venv DIR` (created there when it does not exist: `pip install
torch==2.13.0` (add `--torch-index URL`, e.g. PyTorch's CPU wheel index, where plain pip would pull a
CUDA build) then `pip install MMSA==2.2.1`). MMSA runs through perf/mmsa_runner.py, which applies the
patches it needs on a CPU with torch 2.13 (listed in its docstring). Everything runs on the CPU
(CUDA_VISIBLE_DEVICES is emptied for both sides).

Data: the synthetic `synth-mosi` at `--scale` (`msabench data synth`), whose `data.pkl` (MMSA layout)
MMSA reads as a custom feature file and whose arrays msabench reads; the run records' data hash is
checked against the folder's. Models `tfn`, `lmf`, `lf_dnn`, `mult` with MMSA's MOSI hyper-parameters
on both sides (msabench's presets are MMSA's: batch sizes 32, 64, 128, 16, checked in the run specs);
the same epochs (a fixed count: no early stopping on either side), the same seed values. MulT on
MOSI shapes (375 audio and 500 video frames) costs about 40 CPU-seconds per 16 training samples, so
it gets its own smaller data and epochs (`--mult-scale`, `--mult-epochs`), the same on both sides.

(a) Per epoch, one seed, `--epoch-threads` torch threads on both sides, each side in one process for
    every model (MMSA first, then msabench), in an equivalent mode: one training pass plus the
    evaluation of valid and test every epoch. MMSA: its own `do_train(return_epoch_results=True)`
    mode; it also saves a checkpoint whenever valid improves. msabench: `train.eval_train=false`
    (valid and test), selection and checkpoint copy, the store's records, MLflow on. An epoch is
    wall time between successive epoch ends (MMSA: its TEST log line; msabench: its records written
    to the store), the first from the training loop's start; the first epoch (warm-up) is left out
    of the median. Wall and CPU time (the process's): on a shared machine the CPU time is the
    steadier measure of the work each side does.
(b) Sweep: every model x seed end to end, wall time from outside. MMSA: one process per model running
    MMSA_run over the seeds (as its CLI does: every run re-reads data.pkl, once per split), torch's
    default threads (one per core), sequentially. msabench: one `msabench run` for all of them,
    `--executor process --workers W --threads T` (default W x T = cores), MLflow on,
    `train.eval_train=false`. Target: msabench at most 0.7x MMSA.
(c) Test metrics: MMSA's test pass on its best-valid checkpoint; msabench's test records at the epoch
    `val` selects (best valid MAE; MMSA: best valid L1 loss, the same quantity). Per model and metric,
    mean and spread (min..max) over seeds; "within" when msabench's mean lies inside MMSA's range.

Full size (MOSI's split sizes): `--scale 1 --mult-scale 1 --epochs 30 --mult-epochs 30` (MMSA stops
early with patience 8; 30 fixed epochs is its typical horizon): days on 2 cores, MulT nearly all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("tfn", "lmf", "lf_dnn", "mult")
METRICS = (("mae", "MAE"), ("corr", "Corr"), ("acc2_non0", "Non0_acc_2"), ("f1_non0", "Non0_F1_score"))
# MMSA 2.2.1 config_regression.json, datasetParams "mosi": what msabench's presets must match
MMSA_BATCH = {"tfn": 32, "lmf": 64, "lf_dnn": 128, "mult": 16}
MMSA_VERSION = "2.2.1"
TORCH_VERSION = "2.13.0"

# msabench in-process (local executor), every epoch end timed where its records reach the store.
EPOCH_CHILD = r"""
import json, sys, time
from msabench.engine import runner
from msabench.store import runs
marks = {}
current = []
def now():
    return time.perf_counter(), time.process_time()
append = runs.RunDir.append_records
def timed_append(self, records):
    append(self, records)
    current[-1].append(now())
runs.RunDir.append_records = timed_append
run_loop = runner.run_loop
def timed_loop(model, spec, *args, **kwargs):
    current.append(marks.setdefault(spec.model_name, []))
    current[-1].append(now())
    return run_loop(model, spec, *args, **kwargs)
runner.run_loop = timed_loop
from msabench.cli import main
code = main(sys.argv[2:])
json.dump({"code": code, "marks": marks}, open(sys.argv[1], "w"))
"""


def cpu_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def mmsa_python(venv: Path, torch_index: str | None) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with torch=={TORCH_VERSION} and MMSA=={MMSA_VERSION} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        index = ["--index-url", torch_index] if torch_index else []
        subprocess.run([*pip, f"torch=={TORCH_VERSION}", *index], check=True)
        subprocess.run([*pip, f"MMSA=={MMSA_VERSION}"], check=True)
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('MMSA'))"],
                           capture_output=True, text=True)
    if found.returncode != 0 or found.stdout.strip() != MMSA_VERSION:
        sys.exit(f"error: {python} has no MMSA {MMSA_VERSION} ({found.stdout.strip() or found.stderr.strip()[-200:]}); "
                 f"give --mmsa-venv a venv with MMSA=={MMSA_VERSION}, or a new folder to create one in")
    return python


def synth_folder(scale: float, dest: Path) -> Path:
    argv = [sys.executable, "-m", "msabench", "data", "synth", "synth-mosi", "--scale", str(scale), "--dest", str(dest),
            "--mmsa-pickle"]  # MMSA reads data.pkl, which the suite writes only on request
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=cpu_env(1))
    return Path(out.stdout.strip().splitlines()[-1])


def msabench_args(models, seeds, a, out: Path) -> list[str]:
    """One `msabench run` over the models; a model with its own data scale or epochs says so inline."""
    args = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--seeds", ",".join(map(str, seeds)),
            "--set", f"data.scale={a.scale}", "--set", f"train.epochs={a.epochs}",
            "--set", f"train.patience={a.epochs + 1}", "--set", "train.eval_train=false",
            "--device", "cpu", "--out", str(out)]
    for m in models:
        own = {"data.scale": a.scales[m], "train.epochs": a.epochs_of[m], "train.patience": a.epochs_of[m] + 1}
        inline = ",".join(f"{k}={v}" for k, v in own.items() if v != {"data.scale": a.scale, "train.epochs": a.epochs,
                                                                       "train.patience": a.epochs + 1}[k])
        args += ["--model", f"{m}:{inline}" if inline else m]
    return args


def timed(cmd: list[str], log: Path, env: dict) -> tuple[int, float, float]:
    """Exit code, wall seconds, and CPU seconds (user + system) of the command and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return code, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_mmsa(python: Path, mode: str, models, seeds, a, pkl: Path, work: Path,
             threads: int) -> tuple[dict, float, float]:
    work.mkdir(parents=True, exist_ok=True)
    result = work / "result.json"
    cmd = [str(python), str(HERE / "mmsa_runner.py"), "--mode", mode, "--models", ",".join(models),
           "--data", str(pkl), "--seeds", ",".join(map(str, seeds)), "--epochs", str(a.epochs_of[models[0]]),
           "--threads", str(threads), "--workdir", str(work), "--json", str(result)]
    code, wall, cpu = timed(cmd, work / "output.log", cpu_env(threads or None))
    if code != 0:
        sys.exit(f"error: MMSA {mode} {','.join(models)} failed (exit {code}); see {work / 'output.log'}")
    return json.loads(result.read_text()), wall, cpu


def steady(seconds: list[float]) -> float:
    """The median epoch, the first (warm-up) left out when there are others."""
    return round(statistics.median(seconds[1:] or seconds), 4)


def per_epoch(python: Path, a, data: dict, work: Path) -> dict:
    mmsa = {}
    for scale, epochs in sorted({(a.scales[m], a.epochs_of[m]) for m in a.models}):  # an MMSA process each
        models = [m for m in a.models if (a.scales[m], a.epochs_of[m]) == (scale, epochs)]
        got, _, _ = run_mmsa(python, "epoch", models, [a.seeds[0]], a, data[models[0]]["pkl"],
                          work / f"mmsa-epoch-{scale:g}-{epochs}", a.epoch_threads)
        mmsa.update(got["models"])
    marks_file = work / "msabench-epoch.json"
    args = msabench_args(a.models, [a.seeds[0]], a, work / "msabench-epoch") + ["--threads", str(a.epoch_threads)]
    with open(work / "msabench-epoch.log", "w") as log:
        subprocess.run([sys.executable, "-c", EPOCH_CHILD, str(marks_file), *args], check=True,
                       stdout=log, stderr=subprocess.STDOUT, env=cpu_env(a.epoch_threads))
    got = json.loads(marks_file.read_text())
    if got["code"] != 0:
        sys.exit(f"error: the msabench per-epoch runs exited {got['code']}; see {log.name}")
    out = {}
    for model in a.models:
        marks = got["marks"][model]
        theirs = mmsa[model]
        row = {"mmsa_wall": theirs["epoch_seconds"], "mmsa_cpu": theirs["epoch_cpu_seconds"],
               "msabench_wall": [round(b[0] - e[0], 4) for e, b in zip(marks, marks[1:])],
               "msabench_cpu": [round(b[1] - e[1], 4) for e, b in zip(marks, marks[1:])]}
        for key in list(row):
            row[f"{key}_median"] = steady(row[key])
        row["ratio_wall"] = round(row["msabench_wall_median"] / row["mmsa_wall_median"], 3)
        row["ratio_cpu"] = round(row["msabench_cpu_median"] / row["mmsa_cpu_median"], 3)
        out[model] = row
        print(f"per epoch {model:7} wall: MMSA {row['mmsa_wall_median']:.3f}s msabench "
              f"{row['msabench_wall_median']:.3f}s ({row['ratio_wall']:.2f}x)   "
              f"CPU: MMSA {row['mmsa_cpu_median']:.3f}s msabench "
              f"{row['msabench_cpu_median']:.3f}s ({row['ratio_cpu']:.2f}x)", flush=True)
    return out


def sweep(python: Path, a, data: dict, work: Path) -> dict:
    mmsa_wall, mmsa_cpu, mmsa_test = 0.0, 0.0, {}
    for model in a.models:
        got, wall, cpu = run_mmsa(python, "sweep", [model], a.seeds, a, data[model]["pkl"],
                                  work / f"mmsa-sweep-{model}", 0)
        mmsa_wall, mmsa_cpu = mmsa_wall + wall, mmsa_cpu + cpu
        mmsa_test[model] = got["models"][model]["test"]
        print(f"MMSA sweep {model}: {wall:.1f}s, CPU {cpu:.1f}s ({len(a.seeds)} seeds, {got['threads']} threads)",
              flush=True)
    store = work / "msabench-sweep"
    args = msabench_args(a.models, a.seeds, a, store) + ["--executor", "process", "--workers", str(a.workers),
                                                         "--threads", str(a.threads)]
    code, ours_wall, ours_cpu = timed([sys.executable, "-m", "msabench", *args], work / "msabench-sweep.log", cpu_env())
    if code != 0:
        sys.exit(f"error: the msabench sweep exited {code}; see {work / 'msabench-sweep.log'}")
    print(f"msabench sweep: {ours_wall:.1f}s, CPU {ours_cpu:.1f}s ({a.workers} workers x {a.threads} threads)",
          flush=True)
    ours_test = msabench_test(store, data)
    return {"mmsa_wall": round(mmsa_wall, 2), "msabench_wall": round(ours_wall, 2),
            "ratio": round(ours_wall / mmsa_wall, 3), "mmsa_cpu": round(mmsa_cpu, 2),
            "msabench_cpu": round(ours_cpu, 2), "ratio_cpu": round(ours_cpu / mmsa_cpu, 3),
            "metrics": compare(a.models, mmsa_test, ours_test)}


def msabench_test(store: Path, data: dict) -> dict[str, dict[str, list[float]]]:
    from msabench import results

    res = results.load(store)
    runs = res.runs()
    if (runs["status"] != "done").any():
        sys.exit(f"error: not every msabench run is done in {store}:\n{runs[['model', 'seed', 'status']]}")
    for path in (store / "runs").glob("*/spec.json"):  # the same data and batch size as MMSA's
        spec = json.loads(path.read_text())
        want = data[spec["model"]]
        if spec["data_hashes"] != [want["hash"]]:
            sys.exit(f"error: {path} trained on data {spec['data_hashes']}, MMSA read {want['hash']}")
        if spec["config"]["train.batch_size"] != MMSA_BATCH[spec["model"]]:
            sys.exit(f"error: {path}: batch size {spec['config']['train.batch_size']}, MMSA's is "
                     f"{MMSA_BATCH[spec['model']]}")
    rows = res.selected("val")
    rows = rows[(rows["split"] == "test") & rows["metric"].isin([k for k, _ in METRICS])]
    out: dict[str, dict[str, list[float]]] = {}
    for (label, metric), group in rows.groupby(["model", "metric"]):
        model = label.split(":", 1)[0]  # a model with its own scale or epochs is labelled with them inline
        out.setdefault(model, {})[metric] = [float(v) for v in group.sort_values("seed")["value"]]
    return out


def compare(models, mmsa_test: dict, ours_test: dict) -> dict:
    table = {}
    for model in models:
        for ours_key, mmsa_key in METRICS:
            theirs = [r[mmsa_key] for r in mmsa_test[model]]
            ours = ours_test[model][ours_key]
            mean = statistics.fmean(ours)
            table[f"{model}/{ours_key}"] = {
                "mmsa_mean": round(statistics.fmean(theirs), 4), "mmsa_min": min(theirs), "mmsa_max": max(theirs),
                "msabench_mean": round(mean, 4), "msabench_min": round(min(ours), 4),
                "msabench_max": round(max(ours), 4), "within": min(theirs) <= mean <= max(theirs)}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mmsa-venv", default=str(Path.home() / ".cache" / "msabench" / f"mmsa-{MMSA_VERSION}-venv"),
                    help="a venv with MMSA 2.2.1 (created there when missing)")
    ap.add_argument("--torch-index", help="pip index URL for torch when the MMSA venv is created")
    ap.add_argument("--scale", type=float, default=0.1, help="synth-mosi split sizes x SCALE (1: MOSI's)")
    ap.add_argument("--mult-scale", type=float, default=0.0125,
                    help="MulT's data scale (its epoch costs about 60x TFN's: 0.0125 = 16 training samples)")
    ap.add_argument("--mult-epochs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="msabench sweep threads per run (0: cores // workers)")
    ap.add_argument("--epoch-threads", type=int, default=1, help="torch threads of both sides in (a)")
    ap.add_argument("--skip", choices=("epoch", "sweep"), action="append", default=[])
    ap.add_argument("--out", help="keep the work folder here (default: a temporary folder, removed)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    a.models = a.models.split(",")
    if unknown := set(a.models) - set(MODELS):
        sys.exit(f"error: unknown model(s) {sorted(unknown)}; use some of {','.join(MODELS)}")
    a.threads = a.threads or max(1, (os.cpu_count() or 1) // a.workers)
    python = mmsa_python(Path(a.mmsa_venv).expanduser(), a.torch_index)
    work = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench-vs-mmsa-"))
    work.mkdir(parents=True, exist_ok=True)
    a.scales = {m: (a.mult_scale if m == "mult" else a.scale) for m in a.models}
    a.epochs_of = {m: (a.mult_epochs if m == "mult" else a.epochs) for m in a.models}
    data, sizes = {}, {}
    for scale in sorted(set(a.scales.values())):
        folder = synth_folder(scale, work / "data")
        meta = json.loads((folder / "meta.json").read_text())
        sizes[scale] = meta["sizes"]
        print(f"data at scale {scale:g}: {folder / 'data.pkl'} (sizes {meta['sizes']})", flush=True)
        for m in a.models:
            if a.scales[m] == scale:
                data[m] = {"pkl": folder / "data.pkl", "hash": meta["hash"]}
                if m != "mult" and meta["sizes"]["train"] % MMSA_BATCH[m] == 1:  # MMSA's BatchNorm fails on it
                    sys.exit(f"error: at scale {scale:g} the training split ({meta['sizes']['train']}) leaves a last "
                             f"batch of one sample for {m} (batch {MMSA_BATCH[m]}), on which MMSA's BatchNorm "
                             "raises; choose another --scale (0.1 and 0.24 work)")
    print(f"epochs {a.epochs_of}; seeds {a.seeds}; {os.cpu_count()} cores", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
              "scales": a.scales, "sizes": {f"{k:g}": v for k, v in sizes.items()}, "epochs": a.epochs_of,
              "seeds": a.seeds, "command": " ".join(sys.argv)}
    try:
        if "epoch" not in a.skip:
            report["per_epoch"] = per_epoch(python, a, data, work)
        if "sweep" not in a.skip:
            report["sweep"] = sweep(python, a, data, work)
            s = report["sweep"]
            print(f"sweep: MMSA {s['mmsa_wall']:.1f}s  msabench {s['msabench_wall']:.1f}s  ratio {s['ratio']:.2f} "
                  f"(target <= 0.7); CPU: MMSA {s['mmsa_cpu']:.1f}s  msabench {s['msabench_cpu']:.1f}s  "
                  f"ratio {s['ratio_cpu']:.2f}")
            for key, row in s["metrics"].items():
                print(f"  {key:18} MMSA {row['mmsa_mean']:.4f} [{row['mmsa_min']:.4f}, {row['mmsa_max']:.4f}]  "
                      f"msabench {row['msabench_mean']:.4f} [{row['msabench_min']:.4f}, {row['msabench_max']:.4f}]"
                      f"  {'within' if row['within'] else 'OUTSIDE'}")
    finally:
        if not a.out:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
