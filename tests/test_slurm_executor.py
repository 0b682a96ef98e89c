"""The `slurm` executor (docs/architecture.md §9) against a real one-node Slurm started by the tests
(tests/slurm_cluster.py; skipped, saying why, where it cannot start): a sweep equals the `local`
executor's at --threads 1 with MLflow holding each run once; a task cancelled with scancel mid-run
is redone by the next `msabench run` and the store ends equal to an uninterrupted sweep; a missing
sbatch or a controller that does not answer is exit 2 with one line. The option parsing needs no
cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import ClusterUnavailable, SlurmCluster
from store_compare import store_differences, store_fingerprint

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.execution.slurm_executor import parse_options, parse_time
from msabench.store.runs import Store

MSABENCH = [sys.executable, "-m", "msabench"]
STUDY = ["--dataset", "synth-mosi", "--model", "constant", "--model", "lf_dnn", "--seeds", "1,2,3", "--tiny"]
# a longer lf_dnn run, so that a scancel lands while it trains
SLOW = ["--dataset", "synth-mosi", "--model", "lf_dnn", "--seeds", "1,2", "--tiny", "--set", "train.epochs=40",
        "--set", "train.patience=40"]


# -- options (no cluster) --------------------------------------------------------------------------------
def test_slurm_time_and_options_are_parsed_or_refused():
    assert [parse_time(t) for t in ("90", "1:30:00", "2:30", "1-00", "0:0:1")] == [90, 90, 3, 1440, 1]
    for bad in ("", "1h", "0", "-5"):
        with pytest.raises(UserError, match="--slurm-time"):
            parse_time(bad)
    assert parse_options(["mem=16G", "--account=proj", "mail_type=END"]) == {
        "mem": "16G", "account": "proj", "mail-type": "END"}
    with pytest.raises(UserError, match="use --slurm-partition"):
        parse_options(["partition=gpu"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_options(["exclusive"])


def test_slurm_options_go_with_the_slurm_executor_and_dry_run_prints_sbatch(tmp_path, capsys):
    assert main(["run", *STUDY, "--out", str(tmp_path), "--slurm-partition", "gpu", "--dry-run"]) == 2
    assert "--slurm-partition goes with --executor slurm" in capsys.readouterr().err
    assert main(["run", *STUDY, "--out", str(tmp_path), "--executor", "slurm", "--slurm-time", "2:00:00",
                 "--slurm-partition", "gpu", "--slurm-gpus-per-task", "1", "--slurm-array-parallelism", "4",
                 "--slurm-opt", "mem=8G", "--threads", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for line in ("#SBATCH --array=0-5%4", "#SBATCH --time=120", "#SBATCH --partition=gpu",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=8G",
                 "export OMP_NUM_THREADS=2"):
        assert line in out, (line, out)
    assert not (tmp_path / "runs").exists()


# -- a real one-node cluster -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("submitit", reason="the slurm extra is not installed: pip install 'msabench[slurm]'")
    folder = tmp_path_factory.mktemp("slurm")
    try:
        running = SlurmCluster(folder).start()
    except ClusterUnavailable as exc:
        pytest.skip(f"no one-node Slurm cluster here: {exc}")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(running.conf)  # sbatch passes the environment on to the jobs
    try:
        yield running
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        running.stop()


def local_sweep(args: list[str], out: Path) -> Path:
    """The same study through the `local` executor at --threads 1: the store to equal."""
    assert main(["run", *args, "--executor", "local", "--threads", "1", "--no-mlflow", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.time_limit(240)
def test_a_sweep_through_slurm_equals_local_and_mlflow_holds_each_run_once(cluster, tmp_path, capsys):
    pytest.importorskip("mlflow")
    out = tmp_path / "slurm"
    assert main(["run", *STUDY, "--executor", "slurm", "--threads", "1", "--slurm-time", "10",
                 "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "done 6, failed 0, skipped 0 of 6 runs" in said.out, said
    assert re.search(r"submitted Slurm job array \d+ \(6 runs", said.err), said.err
    local = local_sweep(STUDY, tmp_path / "local")
    assert store_differences(str(local), str(out)) == []
    env = next(iter(Store(out).runs("done"))).read_env()
    assert env["threads"] == 1
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("msabench")
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=100)
    assert sorted(r.data.tags["msabench_run_id"] for r in runs) == sorted(store_fingerprint(str(out)))
    assert all(r.info.status == "FINISHED" for r in runs)


def _running_task(env: dict) -> str | None:
    listed = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], env=env, capture_output=True, text=True,
                            timeout=30)
    ids = listed.stdout.split()
    return ids[0] if len(ids) == 1 else None


def _act_on_a_training_run(out: Path, env: dict, driver, command: list[str], skip: set[str],
                           timeout: float = 180) -> tuple[str, str]:
    """Once a run other than `skip` holds its lock (it is training) and one task runs, run `command`
    on that task; (task, run id)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert driver.poll() is None, driver.communicate()
        locks = [p for p in out.glob("runs/*/lock") if p.parent.name not in skip]
        task = _running_task(env) if locks else None
        if task is not None:
            subprocess.run([*command, task], env=env, check=True, timeout=30)
            return task, locks[0].parent.name
        time.sleep(0.1)
    raise AssertionError(f"no run was seen training within {timeout:g}s")


@pytest.mark.slow
@pytest.mark.time_limit(420)
def test_a_requeued_task_resumes_and_a_cancelled_one_is_redone_by_the_next_run(cluster, tmp_path):
    """Two runs, one at a time: the first run's task is requeued mid-run (as a preemption does) and
    redoes it; the second's is cancelled mid-run, left incomplete, and redone by the next sweep."""
    out = tmp_path / "slurm"
    cmd = [*MSABENCH, "run", *SLOW, "--executor", "slurm", "--threads", "1", "--slurm-array-parallelism", "1",
           "--no-mlflow", "--out", str(out)]
    env = dict(os.environ)
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        requeued, requeued_run = _act_on_a_training_run(out, env, driver, ["scontrol", "requeue"], set())
        cancelled, cancelled_run = _act_on_a_training_run(out, env, driver, ["scancel"], {requeued_run})
        stdout, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, stderr
    assert f"its Slurm job {cancelled} was cancelled" in stderr and "re-run the same command" in stderr, stderr
    assert "done 1, failed 0, skipped 1 of 2 runs" in stdout, stdout
    assert Store(out).run_dir(requeued_run).status() == "done"
    log = next((out / "slurm" / requeued).glob("*_log.out")).read_text()
    assert log.count("Starting with JobEnvironment") == 2, log  # the requeued task ran again
    assert Store(out).run_dir(cancelled_run).status() == "incomplete"  # cancelled mid-run, not after
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "done 1, failed 0, skipped 1 of 2 runs" in again.stdout, again.stdout
    assert store_differences(str(local_sweep(SLOW, tmp_path / "local")), str(out)) == []


# -- Slurm missing or down: exit 2, one line -------------------------------------------------------------
@pytest.mark.slow
def test_no_sbatch_on_path_is_exit_2_with_one_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # python runs by its full path; nothing else is found
    done = subprocess.run([*MSABENCH, "run", *STUDY, "--executor", "slurm", "--no-mlflow", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sbatch" in lines[0] and "not found on PATH" in lines[0], done.stderr
    assert "Slurm login node" in lines[0]
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


@pytest.mark.slow
def test_a_controller_that_does_not_answer_is_exit_2_with_one_line(cluster, tmp_path, capsys):
    dead = tmp_path / "slurm.conf"  # the test cluster's config with a port nobody listens on
    text = re.sub(r"(?m)^SlurmctldPort=\d+$", "SlurmctldPort=1", cluster.conf.read_text())
    dead.write_text(text + "MessageTimeout=2\n")
    os.environ["SLURM_CONF"] = str(dead)
    try:
        code = main(["run", *STUDY, "--executor", "slurm", "--no-mlflow", "--out", str(tmp_path / "out")])
    finally:
        os.environ["SLURM_CONF"] = str(cluster.conf)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the Slurm controller does not answer" in err and "check that slurmctld is up" in err
    assert not (tmp_path / "out" / "slurm").exists()


@pytest.mark.slow
def test_sbatch_refusing_the_array_is_exit_2_with_one_line(cluster, tmp_path, capsys):
    code = main(["run", *STUDY, "--executor", "slurm", "--slurm-partition", "nosuch", "--no-mlflow",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "sbatch refused the job array" in err and "invalid partition" in err.lower(), err
    assert not any(rd.status() == "done" for rd in Store(tmp_path / "out").runs())
