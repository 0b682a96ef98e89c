"""Executors (docs/architecture.md §9): the process layout, `process` and `ray` give the same results as `local`
at equal thread counts, workers die with their driver, a dead worker's run is marked failed, and
two concurrent sweeps on one store run every run exactly once (MLflow holds each once)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msabench.engine.options import RunOptions
from msabench.execution.process import _mark_lost, plan_layout
from msabench.execution.registry import EXECUTORS
from msabench.plan.planner import plan
from msabench.plan.request import Request
from msabench.store.runs import Store

MSABENCH = [sys.executable, "-m", "msabench"]


# -- layout ----------------------------------------------------------------------------------------------
def test_layout_workers_times_threads_is_cores():
    assert (lambda lay: (lay.workers, lay.threads))(plan_layout(None, 0, None, "cpu", 100, cores=8)) == (8, 1)
    assert (lambda lay: (lay.workers, lay.threads))(plan_layout(None, 2, None, "cpu", 100, cores=8)) == (4, 2)
    assert (lambda lay: (lay.workers, lay.threads))(plan_layout(2, 0, None, "auto", 100, cores=8, gpus=[])) == (2, 4)
    capped = plan_layout(None, 0, None, "cpu", 3, cores=8)  # never more workers than runs
    assert (capped.workers, capped.threads) == (3, 2)
    assert capped.device == "cpu" and capped.gpus == [None] * 3


def test_layout_one_worker_per_gpu_times_runs_per_gpu():
    lay = plan_layout(None, 0, 2, "auto", 100, cores=16, gpus=["0", "1"])
    assert lay.workers == 4 and lay.gpus == ["0", "0", "1", "1"] and lay.threads == 4 and lay.device == "cuda"
    one = plan_layout(None, 0, 3, "cuda:1", 100, cores=12, gpus=["4", "5"])  # cuda:1 = the second visible GPU
    assert one.gpus == ["5", "5", "5"] and one.threads == 4
    cpu = plan_layout(None, 1, 2, "cpu", 100, cores=2)
    assert cpu.workers == 2 and any("--runs-per-gpu is ignored" in n for n in cpu.notes)


def test_executors_registered_and_bad_options(capsys):
    from msabench.cli import main

    assert EXECUTORS.names() == ["local", "process", "ray", "slurm"]
    assert main(["run", "--executor", "proces", "--dry-run"]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()
    assert main(["run", "--executor", "local", "--address", "127.0.0.1:6379", "--dry-run"]) == 2
    assert "--address goes with --executor ray" in capsys.readouterr().err
    with pytest.raises(Exception, match="--workers 0"):
        plan_layout(0, 0, None, "cpu", 3)


def test_ray_address_that_does_not_answer_is_a_quick_user_error(tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    from msabench.cli import main

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    assert main(["run", "--dataset", "synth-mosi", "--model", "constant", "--seeds", "1", "--tiny", "--no-mlflow",
                 "--executor", "ray", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    assert "no Ray cluster answers there" in capsys.readouterr().err
    assert time.perf_counter() - started < 30
    import ray

    assert not ray.is_initialized()


# -- same results whichever executor ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_specs():
    return plan(Request(protocol="standard", datasets=("synth-mosi",), seeds=(1,), tiny=True))


@pytest.fixture(scope="module")
def local_store(tiny_specs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    outcome = EXECUTORS.get("local")(tiny_specs, Store(out), RunOptions(device="cpu", threads=1))
    assert len(outcome.done) == len(tiny_specs)
    return out


def run_contents(out: Path) -> dict[str, dict[str, object]]:
    """What docs/architecture.md §9 calls the results: equal metrics, losses, ids, predictions and checkpoint bytes
    (timings, env and MLflow ids excluded)."""
    found = {}
    for rd in Store(out).runs("done"):
        records = [{k: v for k, v in r.items() if k != "seconds"} for r in rd.read_records()]
        files = {p.name: p.read_bytes() for p in sorted(rd.path.iterdir())
                 if p.name == "predictions.npz" or p.name.startswith("checkpoint-")}
        spec = json.loads((rd.path / "spec.json").read_text())
        summary = {k: v for k, v in rd.read_json("summary.json").items() if k != "train_seconds"}
        found[rd.run_id] = {"records": records, "files": files, "spec": spec, "summary": summary}
    return found


def assert_same_results(a: Path, b: Path) -> None:
    ra, rb = run_contents(a), run_contents(b)
    assert sorted(ra) == sorted(rb) and ra
    for run_id in ra:
        assert ra[run_id]["records"] == rb[run_id]["records"], run_id
        assert ra[run_id]["spec"] == rb[run_id]["spec"], run_id
        assert ra[run_id]["summary"] == rb[run_id]["summary"], run_id
        assert ra[run_id]["files"].keys() == rb[run_id]["files"].keys() and ra[run_id]["files"], run_id
        for name in ra[run_id]["files"]:
            assert ra[run_id]["files"][name] == rb[run_id]["files"][name], (run_id, name)


@pytest.mark.slow
def test_process_executor_equals_local(tiny_specs, local_store, tmp_path):
    seen = []
    outcome = EXECUTORS.get("process")(tiny_specs, Store(tmp_path), RunOptions(device="cpu", threads=1),
                                       workers=2, progress=lambda spec, status: seen.append(status))
    assert len(outcome.done) == len(tiny_specs) and seen == ["done"] * len(tiny_specs)
    assert_same_results(local_store, tmp_path)
    env = Store(tmp_path).run_dir(tiny_specs[0].run_id).read_env()
    assert env["threads"] == 1 and env["pid"] != os.getpid() if "pid" in env else env["threads"] == 1
    # a second sweep skips everything without starting a worker
    again = EXECUTORS.get("process")(tiny_specs, Store(tmp_path), RunOptions(device="cpu", threads=1), workers=2)
    assert len(again.skipped) == len(tiny_specs) and not again.done


@pytest.mark.slow
def test_ray_executor_equals_local(tiny_specs, local_store, tmp_path):
    pytest.importorskip("ray")
    outcome = EXECUTORS.get("ray")(tiny_specs, Store(tmp_path), RunOptions(device="cpu", threads=1))
    assert len(outcome.done) == len(tiny_specs)
    assert_same_results(local_store, tmp_path)
    import ray

    assert not ray.is_initialized()  # the local instance it started is shut down


# -- workers die with the driver; a dead worker's run is failed ---------------------------------------------
def process_dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie writes nothing


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_driver_leaves_no_writer(tmp_path):
    out = tmp_path / "store"
    cmd = [*MSABENCH, "run", "--dataset", "synth-mosi", "--model", "linear_probe", "--seeds", "1,2", "--executor",
           "process", "--workers", "2", "--threads", "1", "--set", "data.scale=0.05", "--set", "train.epochs=500",
           "--set", "train.patience=500", "--no-mlflow", "--out", str(out)]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        pids: set[int] = set()
        while time.time() < deadline and len(pids) < 2:
            assert driver.poll() is None, driver.stderr.read().decode()
            for lock in out.glob("runs/*/lock"):
                try:
                    pids.add(int(json.loads(lock.read_text())["pid"]))
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.2)
        assert len(pids) == 2 and driver.pid not in pids
        driver.kill()  # SIGKILL: no cleanup in the driver at all
        driver.wait()
        deadline = time.time() + 5
        while time.time() < deadline and not all(process_dead(p) for p in pids):
            time.sleep(0.1)
        assert all(process_dead(p) for p in pids), "a worker outlived its driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
        driver.stderr.close()
        for p in pids:
            if not process_dead(p):
                os.kill(p, signal.SIGKILL)
    # the dead workers' locks are stale (dead pid; or, while init has not reaped a zombie yet, once the
    # heartbeat lapses): the next sweep redoes the runs
    deadline = time.time() + 45
    while time.time() < deadline and {rd.status() for rd in Store(out).runs()} != {"incomplete"}:
        time.sleep(0.5)
    assert {rd.status() for rd in Store(out).runs()} == {"incomplete"}


def _claim_and_hang(out: str, run_id: str, ready) -> None:
    rd = Store(out).run_dir(run_id)
    lock = rd.claim()
    assert lock
    (rd.path / "records.jsonl").write_text("")
    ready.set()
    time.sleep(600)


def test_a_run_whose_worker_died_is_marked_failed(tmp_path, tiny_specs):
    spec = tiny_specs[0]
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_claim_and_hang, args=(str(tmp_path), spec.run_id, ready))
    proc.start()
    try:
        assert ready.wait(60)
        assert Store(tmp_path).run_dir(spec.run_id).status() == "running"
    finally:
        proc.kill()  # fault injection: the worker is killed under its run
        proc.join()
    assert _mark_lost(Store(tmp_path), spec, "the worker process running this run died (killed by SIGKILL)") == "failed"
    rd = Store(tmp_path).run_dir(spec.run_id)
    assert rd.status() == "failed" and "SIGKILL" in rd.read_failed()["reason"]


# -- concurrent sweeps on one store -------------------------------------------------------------------------
SWEEP = """
name = "concurrency"
protocol = "standard"
models = ["constant", "linear_probe"]
datasets = ["synth-mosi"]
seeds = [1, 2, 3]
tiny = true
"""


@pytest.mark.slow
def test_two_concurrent_sweeps_run_each_run_once(tmp_path):
    pytest.importorskip("mlflow")
    sweep = tmp_path / "study.toml"
    sweep.write_text(SWEEP)
    out = tmp_path / "store"
    cmd = [*MSABENCH, "run", "--sweep", str(sweep), "--out", str(out), "--threads", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    counts = []
    for stdout, _ in results:
        m = re.search(r"done (\d+), failed (\d+), skipped (\d+) of 6 runs", stdout)
        assert m, stdout
        counts.append(tuple(int(g) for g in m.groups()))
    assert sum(c[0] for c in counts) == 6 and all(c[1] == 0 for c in counts)  # every run done exactly once
    assert all(c[0] + c[2] == 6 for c in counts)
    done = [rd.run_id for rd in Store(out).runs("done")]
    assert len(done) == 6
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("msabench")
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=100)
    tags = sorted(r.data.tags["msabench_run_id"] for r in runs)
    assert tags == sorted(done)  # MLflow holds each run once
    assert all(r.info.status == "FINISHED" for r in runs)
