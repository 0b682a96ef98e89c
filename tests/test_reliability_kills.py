"""Issue 7, kills: kill -9 of a 20-run sweep's process group at 10 random points, resuming after
each, with the `local` and `process` executors: the final store equals an uninterrupted sweep's
(docs/architecture.md §9: equal metrics, losses, ids, predictions and checkpoint bytes), with nothing duplicated,
half-written or left locked.

The kill points are drawn from a seeded RNG (printed): for the local executor half land at a random
store write (the sweep SIGKILLs its own group inside the n-th os.write or os.replace into the store:
mid-file, or a written temp file not yet renamed) and half at a random moment (a watcher kills the
group after a random number of finished runs plus a random delay: during planning, training or
writing). The process executor's workers are fresh interpreters, so its kills are all timed.

Each sweep runs in a child of a multiprocessing forkserver that has msabench and torch imported, so
a restart costs milliseconds rather than an interpreter start; the child makes itself a process
group leader (os.setsid) so that one os.killpg(SIGKILL) takes the driver and every worker, as a
`kill -9 -PGID` would. tests/test_runner.py has a single kill of a subprocess sweep; this is the
scaled-up version. Slow: about a minute per executor on 2 cores.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest
from fixtures import faults
from store_compare import store_differences

from msabench.cli import main
from msabench.store.runs import Store

SWEEP = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
         "--device", "cpu", "--model", "linear_probe", "--model", "constant",
         "--seeds", ",".join(str(s) for s in range(1, 11))]
N_RUNS = 20
N_KILLS = 10
SEED = int(os.environ.get("MSABENCH_KILL_SEED", "20240607"))
PRELOAD = ["fixtures.faults", "msabench.cli.app", "msabench.cli.commands", "msabench.execution.base",
           "msabench.engine.runner", "msabench.models", "msabench.plan.planner", "msabench.data.synth",
           "msabench.protocols", "msabench.plan.sweep"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to check no worker survives")]


@pytest.fixture(scope="module")
def forkserver():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep (in this process, local executor: results never depend on it)."""
    out = tmp_path_factory.mktemp("kills") / "reference"
    assert main([*SWEEP, "--out", str(out)]) == 0
    assert Store(out).summary()["done"] == N_RUNS
    return out


def _start(ctx, argv: list[str], log: Path, kill_at=None, store: Path | None = None):
    proc = ctx.Process(target=faults.sweep_process, args=(argv, str(log), kill_at, str(store or "")))
    proc.start()
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it leads its own process group (os.setsid)
        try:
            if os.getpgid(proc.pid) == proc.pid:
                break
        except ProcessLookupError:
            break  # already gone (it killed itself early)
        time.sleep(0.002)
    return proc


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while faults.group_alive(pgid) and time.time() < deadline:
        time.sleep(0.02)
    assert not faults.group_alive(pgid), f"processes of the killed sweep survive: {faults.group_alive(pgid)}"


def _store_state(out: Path, since: float) -> dict[str, int]:
    runs = [p for p in (out / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")] \
        if (out / "runs").is_dir() else []
    cut = [p for p in runs if not (p / "done").exists()
           and max([p.stat().st_mtime, *(f.stat().st_mtime for f in p.iterdir())]) >= since]
    return {"dirs": len(runs), "done": faults.done_count(out), "cut": len(cut),
            "temp files": len(faults.leftover_temp_files(out))}


def _kill_plan(rng: random.Random, executor: str) -> list[tuple]:
    if executor == "local":
        modes = ["write"] * (N_KILLS // 2) + ["time"] * (N_KILLS - N_KILLS // 2)
    else:
        modes = ["time"] * N_KILLS
    rng.shuffle(modes)
    plan = []
    for mode in modes:
        if mode == "write":  # a run publishes about 10 files: at most ~1.5 runs of progress
            plan.append(("write", rng.choice(["write", "replace"]), rng.randint(1, 15)))
        else:
            # With two workers a wait for one more run lets the other finish too: keep each kill's
            # progress near one run so that ten kills never exhaust the 20-run sweep, however fast
            # the machine is.
            plan.append(("time", rng.choice([0, 1, 1] if executor == "local" else [0, 0, 1]), rng.uniform(0.0, 0.35)))
    return plan


@pytest.mark.parametrize("executor", ["local", "process"])
def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_sweep(executor, forkserver, reference,
                                                                            tmp_path):
    if executor == "process":
        try:
            from msabench.execution import process as executors_process  # noqa: F401
            from msabench.execution.registry import EXECUTORS

            EXECUTORS.get("process")
        except Exception as exc:  # noqa: BLE001 - being built by another issue
            pytest.skip(f"the process executor is not importable yet ({exc})")
    argv = [*SWEEP, "--executor", executor, *(["--workers", "2"] if executor == "process" else [])]
    out = tmp_path / "store"
    argv += ["--out", str(out)]
    rng = random.Random(f"{SEED}-{executor}")
    plan = _kill_plan(rng, executor)
    log = tmp_path / "sweeps.log"
    landed, notes = 0, []
    started = time.time()
    for i, point in enumerate(plan):
        before, since = faults.done_count(out), time.time()
        if point[0] == "write":
            _, call, n = point
            proc = _start(forkserver, argv, log, kill_at=(call, n), store=out)
            proc.join(120)
            what = f"at store {call} #{n}"
        else:
            _, new_runs, delay = point
            proc = _start(forkserver, argv, log)
            t0 = time.time()
            if new_runs == 0:  # a random moment of start-up, planning or the first run
                # (a process worker imports torch before its first run: 1.5 s stays within start-up)
                time.sleep(rng.uniform(0.0, 1.0 if executor == "local" else 1.5))
            else:
                while faults.done_count(out) < before + new_runs and proc.is_alive() and time.time() - t0 < 120:
                    time.sleep(0.005)
                time.sleep(delay)
            _kill_group(proc.pid)
            proc.join(60)
            what = f"after {new_runs} more run(s) + {delay:.2f}s" if new_runs else "at a random start-up moment"
        _wait_group_gone(proc.pid)
        assert proc.exitcode is not None
        if proc.exitcode != -signal.SIGKILL:
            assert proc.exitcode == 0, (proc.exitcode, log.read_text()[-3000:])
            pytest.fail(f"kill {i + 1} missed: the sweep finished first ({what}); lower the kill offsets")
        landed += 1
        state = _store_state(out, since)
        # Whatever the kill interrupted, the store reads, and every run marked done is complete.
        assert faults.incomplete_done_runs(out) == [], f"after kill {i + 1} ({what})"
        assert state["dirs"] <= N_RUNS and state["done"] >= before
        notes.append(f"kill {i + 1:2d} {what:32s}: done {before:2d} -> {state['done']:2d}, "
                     f"{state['cut']} run(s) cut mid-way, {state['temp files']} temp file(s) left")
    # Resume to the end, uninterrupted.
    proc = _start(forkserver, argv, log)
    proc.join(600)
    assert proc.exitcode == 0, log.read_text()[-3000:]
    elapsed = time.time() - started
    assert landed == N_KILLS
    store = Store(out)
    assert store.summary() == {"done": N_RUNS, "failed": 0, "running": 0, "incomplete": 0}
    hidden = [p.name for p in (out / "runs").iterdir() if p.name.startswith(".") and p.name != ".takeover.lock"]
    assert hidden == [], hidden  # no .trash-* or .tmp-* left (.takeover.lock: the lock guard, by design)
    assert len(store.run_ids()) == N_RUNS  # nothing duplicated
    assert faults.leftover_temp_files(out) == [] and not list(out.glob("runs/*/lock"))
    assert faults.incomplete_done_runs(out) == []
    assert store_differences(str(reference), str(out)) == []
    cut = sum(1 for n in notes if " 0 run(s) cut" not in n)
    print(f"\nRELIABILITY kills ({executor}, seed {SEED}): {landed} kill -9 of the process group survived, "
          f"{cut} of them cut a run mid-way; after resuming, {N_RUNS}/{N_RUNS} runs equal the uninterrupted "
          f"sweep's (store_differences: none), nothing lost, duplicated or half-written ({elapsed:.0f}s)")
    for note in notes:
        print("  " + note)
