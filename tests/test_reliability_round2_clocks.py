"""Issue 17, defects 1 and 12: ownership of a run never depends on a wall clock.

Two sweeps share a store, the second on a host whose clock is 35 s ahead: neither takes over the
other's live runs, nothing is trained twice, no record is merged, and the store equals an
uninterrupted sweep's. `clean --incomplete` on the skewed host deletes no running run, and a lone
sweep paused (SIGSTOP, a suspended VM) longer than its heartbeat's stale time goes on when resumed.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
from fixtures import skew
from store_compare import store_differences

from msabench.cli import main
from msabench.store.lock import lock_state
from msabench.store.runs import LockLost, Store

SWEEP = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
         "--device", "cpu", "--model", "linear_probe", "--seeds", "1,2"]
PRELOAD = ["fixtures.skew", "msabench.cli.app", "msabench.cli.commands", "msabench.execution.base",
           "msabench.engine.runner", "msabench.models", "msabench.plan.planner", "msabench.data.synth",
           "msabench.protocols", "msabench.plan.sweep"]


RUN_ID = "0123456789abcdef0123"


def _record(epoch: int) -> dict:
    return {"epoch": epoch, "split": "valid", "domain": "synth-mosi", "rate": 0.0, "metrics": {"mae": 1.0}}


def _skew(monkeypatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_two_sweeps_one_with_a_clock_35s_ahead_end_equal_to_one_sweep(tmp_path):
    reference = tmp_path / "reference"
    assert main([*SWEEP, "--out", str(reference)]) == 0
    out, trained = tmp_path / "shared", tmp_path / "trained.log"
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    first = ctx.Process(target=skew.skewed_sweep,
                        args=([*SWEEP, "--out", str(out)], str(tmp_path / "first.log"), str(trained), 0.0, 0.4))
    first.start()
    deadline = time.time() + 60
    while not list(out.glob("runs/*/lock")) and time.time() < deadline:  # the first sweep holds a run
        time.sleep(0.01)
    assert list(out.glob("runs/*/lock")), (tmp_path / "first.log").read_text()
    second = ctx.Process(target=skew.skewed_sweep,
                         args=([*SWEEP, "--out", str(out)], str(tmp_path / "second.log"), str(trained), 35.0, 0.4))
    second.start()
    first.join(120)
    second.join(120)
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert first.exitcode == 0 and second.exitcode == 0, logs
    runs = [line.split()[0] for line in trained.read_text().splitlines()]
    assert sorted(runs) == sorted(set(runs)) and len(runs) == 2, f"trained twice: {runs}\n{logs}"
    assert len({line.split()[1] for line in trained.read_text().splitlines()}) == 2  # both sweeps trained
    assert store_differences(str(reference), str(out)) == []
    for rd in Store(out).runs():
        assert len(rd.read_records()) == len(Store(reference).run(rd.run_id).read_records())


def test_clean_incomplete_on_a_host_whose_clock_is_ahead_keeps_running_runs(tmp_path, monkeypatch):
    store = Store(tmp_path / "out")
    rd = store.run(RUN_ID)
    with rd.claim() as lock:
        assert lock
        rd.append_records([_record(0)])
        _skew(monkeypatch, 35.0)  # the cleaning host's clock is 35 s ahead of the file system's
        assert rd.status() == "running"
        assert store.clean_incomplete() == []
        assert main(["clean", "--incomplete", "--out", str(store.root)]) == 0
        assert rd.path.is_dir()
        rd.append_records([_record(1)])  # the holder goes on, unharmed
    assert [r["epoch"] for r in rd.read_records()] == [0, 1]


def test_a_lone_sweep_paused_past_its_stale_time_goes_on(tmp_path, monkeypatch):
    """SIGSTOP / a suspended VM: every clock jumps, nobody took the run over, so the holder writes on."""
    rd = Store(tmp_path / "out").run(RUN_ID)
    with rd.claim(heartbeat_interval=10) as lock:
        rd.append_records([_record(0)])
        real_time, real_monotonic = time.time, time.monotonic
        monkeypatch.setattr(time, "time", lambda: real_time() + 25.0)
        monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + 25.0)
        assert not lock.lost
        rd.append_records([_record(1)])
    assert [r["epoch"] for r in rd.read_records()] == [0, 1]


def test_a_stalled_holder_that_was_taken_over_publishes_nothing(tmp_path):
    store = Store(tmp_path / "out")
    holder, taker = store.run(RUN_ID), Store(store.root).run(RUN_ID)
    first = holder.claim(heartbeat_interval=0.1, stale_after=0.3)
    holder.append_records([_record(0), _record(1)])
    first.stop_heartbeat()  # the holder stalls: its beat stops advancing
    assert lock_state(holder.lock_path) == "live"
    time.sleep(0.4)  # watched unchanged past its stale time
    with taker.claim(heartbeat_interval=5) as second:
        assert second and second.took_over["token"] == first.token
        taker.reset()
        with pytest.raises(LockLost):
            holder.append_records([_record(2)])
        with pytest.raises(LockLost):
            holder.write_json("late.json", {"x": 1})
        taker.append_records([_record(0)])
        assert [r["epoch"] for r in taker.read_records()] == [0]  # the holder's records were not merged
        assert not (taker.path / "late.json").exists()
    first.release()
