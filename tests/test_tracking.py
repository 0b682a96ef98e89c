"""MLflow as a view of the store (docs/architecture.md §9): content, idempotence, the file lock, the circuit
breaker, sync-mlflow, msabench without mlflow; and a real `mlflow server` killed mid-sweep."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_export import write_fake_run

from msabench import tracking
from msabench.core.errors import UserError
from msabench.store.runs import Store
from msabench.tracking import (
    TAG_RUN_ID,
    MlflowView,
    NullView,
    TrackingSettings,
    open_view,
    run_metrics,
    run_params,
    sync_mlflow,
)

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

MSABENCH = [sys.executable, "-m", "msabench"]
WARNING = "MLflow logging failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs_by_tag(client: MlflowClient, experiment: str) -> dict[str, list]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000):
        found.setdefault(r.data.tags.get(TAG_RUN_ID), []).append(r)
    return found


def test_params_and_metric_keys():
    spec = {"protocol": "standard", "protocol_version": "1", "seed": 3, "rate": 0.2, "datasets": ["synth-dg/mosi"],
            "data_hashes": ["abc"], "model": "tfn@x", "config": {"train.lr": 0.001, "model.order": ["t", "v"]},
            "schema": 1, "written_by": "0.1.0"}
    params = run_params(spec)
    assert params["train.lr"] == "0.001" and params["model.order"] == "t,v" and params["data_hash"] == "abc"
    assert params["seed"] == "3" and params["rate"] == "0.2" and "schema" not in params
    records = [{"epoch": 2, "split": "test", "domain": "synth-dg/mosi", "rate": 0.2,
                "metrics": {"acc": 0.5, "corr": None}, "loss": {"task": 1.0}},
               {"epoch": 2, "split": "test", "domain": "synth-dg/mosi", "rate": 0.5, "metrics": {"acc": 0.4}}]
    assert run_metrics(records, 0.2) == [("test/synth-dg/mosi/acc", 0.5, 2), ("test/synth-dg/mosi/loss_task", 1.0, 2),
                                         ("test/synth-dg/mosi/rate0.5/acc", 0.4, 2)]


def test_embedded_sqlite_view_is_complete_and_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("MSABENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "store"
    specs = [write_fake_run(out, seed=s) for s in (1, 2)]
    store = Store(out)
    with MlflowView(out) as view:
        assert [view.log_run(store.run_dir(s.run_id)) for s in specs] == ["logged", "logged"]
        assert view.log_run(store.run_dir(specs[0].run_id)) == "present"
    assert (out / "mlflow.db").is_file() and (out / "mlartifacts").is_dir()
    # the database is a copy of a cached empty one (migrations run once per mlflow version)
    assert list((tmp_path / "cache" / "mlflow").glob("empty-*.db"))
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    found = runs_by_tag(client, "msabench")
    assert sorted(found) == sorted(s.run_id for s in specs) and all(len(v) == 1 for v in found.values())
    run = found[specs[0].run_id][0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["protocol"] == "standard"
    assert run.data.params["seed"] == "1" and run.data.params["data_hash"] == "d" * 16
    assert run.data.tags["data"] == "synthetic" and run.data.tags["model"] == "constant"
    history = client.get_metric_history(run.info.run_id, "test/synth-mosi/acc2_has0")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"records.jsonl", "predictions.npz", "spec.json"}
    # a second view (another sweep) finds them by tag; a half-logged run is replaced
    exp = client.get_experiment_by_name("msabench")
    client.delete_run(run.info.run_id)
    half = client.create_run(exp.experiment_id, tags={TAG_RUN_ID: specs[0].run_id})
    with MlflowView(out) as view:
        assert view.log_run(store.run_dir(specs[1].run_id)) == "present"
        assert view.log_run(store.run_dir(specs[0].run_id)) == "logged"
    found = runs_by_tag(client, "msabench")
    assert len(found[specs[0].run_id]) == 1 and found[specs[0].run_id][0].info.run_id != half.info.run_id
    assert sync_mlflow(out) == {"logged": 0, "present": 2}


def test_breaker_one_warning_then_off_and_sync_restores(tmp_path):
    out = tmp_path / "store"
    specs = [write_fake_run(out, seed=s) for s in (1, 2, 3)]
    warnings: list[str] = []
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env_before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    started = time.perf_counter()
    with MlflowView(out, dead, warn=warnings.append) as view:
        outcomes = [view.log_run(Store(out).run_dir(s.run_id)) for s in specs]
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert time.perf_counter() - started < 15
    assert outcomes == ["off"] * 3 and len(warnings) == 1 and WARNING in warnings[0]
    assert "sync-mlflow" in warnings[0] and dead in warnings[0]
    assert view.broken and len(view.missed) == 3
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == env_before  # set for the sweep only
    with pytest.raises(UserError, match="sync-mlflow"):
        sync_mlflow(out, dead)
    assert sync_mlflow(out) == {"logged": 3, "present": 0}  # the embedded view takes them all


def test_without_mlflow_one_warning_and_explicit_uri_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "mlflow_installed", lambda: False)
    said: list[str] = []
    view = open_view(TrackingSettings(), tmp_path, said.append)
    assert isinstance(view, NullView) and len(said) == 1 and "not installed" in said[0] and "--no-mlflow" in said[0]
    assert view.log_run(None) == "off"
    with pytest.raises(UserError, match="not installed"):
        open_view(TrackingSettings(uri="http://127.0.0.1:5000"), tmp_path, said.append)
    assert isinstance(open_view(TrackingSettings(enabled=False), tmp_path, said.append), NullView)
    assert len(said) == 1


# -- a real tracking server --------------------------------------------------------------------------------
class Server:
    """`mlflow server` on a free loopback port with a SQLite backend; stop() kills its process group."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90) -> Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"server-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                 "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        import urllib.request

        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mlflow server exited: "
                                   f"{(self.folder / f'server-{self.port}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("mlflow server did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its workers: a group we created
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture()
def server(tmp_path):
    pytest.importorskip("uvicorn")
    srv = Server(tmp_path / "mlflow-server").start()
    yield srv
    srv.stop()


def sweep_cmd(out, uri, experiment, seeds="1,2"):
    return [*MSABENCH, "run", "--protocol", "standard", "--dataset", "synth-mosi", "--model", "constant",
            "--model", "linear_probe", "--seeds", seeds, "--tiny", "--executor", "process", "--workers", "2",
            "--threads", "1", "--out", str(out), "--tracking-uri", uri, "--experiment", experiment]


def sweep_seconds(stdout: str) -> float:
    m = re.search(r"of \d+ runs in (?:(\d+)m)?(\d+)s", stdout)
    assert m, stdout
    return int(m.group(1) or 0) * 60 + int(m.group(2))


@pytest.mark.slow
def test_server_sweep_then_killed_mid_sweep_then_sync(server, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 1. a sweep against the server (process executor): runs, params, per-epoch metrics, artifacts
    first = subprocess.run(sweep_cmd(tmp_path / "s1", server.uri, "exp1"), capture_output=True, text=True,
                           env=env, timeout=400)
    assert first.returncode == 0, first.stderr
    assert WARNING not in first.stderr
    client = MlflowClient(server.uri)
    found = runs_by_tag(client, "exp1")
    done = [rd.run_id for rd in Store(tmp_path / "s1").runs("done")]
    assert len(done) == 4 and sorted(found) == sorted(done) and all(len(v) == 1 for v in found.values())
    for runs in found.values():
        run = runs[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["protocol"] == "standard" and run.data.params["train.epochs"] == "3"
        assert run.data.tags["model"] in ("constant", "linear_probe") and run.data.tags["data"] == "synthetic"
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "test/synth-mosi/acc2_has0"))
        assert steps == list(range(len(steps))) and len(steps) >= 1
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"records.jsonl", "predictions.npz"}
    normal = sweep_seconds(first.stdout)

    # 2. the same sweep into a new store; the server is killed once the first run is logged
    proc = subprocess.Popen(sweep_cmd(tmp_path / "s2", server.uri, "exp2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not any(
                v[0].info.status == "FINISHED" for v in runs_by_tag(client, "exp2").values()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        server.stop()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr.count(WARNING) == 1, stderr
    assert len([rd for rd in Store(tmp_path / "s2").runs("done")]) == 4  # every result is in the store
    print(f"sweep seconds: normal {normal}, server killed mid-sweep {sweep_seconds(stdout)}")
    assert sweep_seconds(stdout) <= normal * 1.3 + 8, (normal, stdout)  # slack for a loaded CI machine
    assert "sync-mlflow" in stdout

    # 3. the server comes back (same database); sync-mlflow logs what was missed, once each
    server.start()
    client = MlflowClient(server.uri)
    before = runs_by_tag(client, "exp2")  # a run may be half-logged (the server died under it)
    finished = [k for k, v in before.items() if v[0].info.status == "FINISHED"]
    assert 1 <= len(finished) < 4
    sync = subprocess.run([*MSABENCH, "sync-mlflow", "--out", str(tmp_path / "s2"), "--tracking-uri", server.uri,
                           "--experiment", "exp2"], capture_output=True, text=True, env=env, timeout=120)
    assert sync.returncode == 0, sync.stderr
    found = runs_by_tag(client, "exp2")
    assert sorted(found) == sorted(rd.run_id for rd in Store(tmp_path / "s2").runs("done"))
    assert all(len(v) == 1 and v[0].info.status == "FINISHED" for v in found.values())
    assert sync.stdout.strip() == f"MLflow: {4 - len(finished)} runs logged, {len(finished)} already there"
