"""The `process` executor: N worker processes on this machine, each running `run_one` (docs/architecture.md §9).

Layout: `--workers N` (default: cores // threads), `--threads T` per worker (default: cores //
workers, so that workers x threads = cores); with GPUs visible and a CUDA device asked for (auto,
cuda, cuda:N), one worker per GPU x `--runs-per-gpu K`, each seeing only its GPU
(CUDA_VISIBLE_DEVICES). Workers are started with `spawn` from the driver's main thread, with
OMP/MKL thread counts set in their environment before torch is imported.

Workers die with their parent: they stay in the driver's process group (Ctrl-C reaches them all),
ask the kernel for SIGKILL when the driver dies (prctl PR_SET_PDEATHSIG, Linux), and a watchdog
thread exits when the parent pid changes (every platform; also catches a death during start-up).
So `kill -9` of the driver leaves no writer behind: the run lock of a killed worker has a dead pid
and is taken over by the next sweep. A worker that dies under its run (killed, out of memory) has
its run marked failed by the driver and is replaced.

The driver hands out one run at a time per worker (a pipe each), so it always knows which run a
worker holds; it calls `progress(spec, status)` as runs end. This module imports neither torch nor
the runner at import time, so a spawned worker sets its environment first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from msabench.core.errors import UserError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL = 0.5


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Layout:
    """How a sweep is spread over workers."""

    workers: int
    threads: int
    gpus: list[str | None] = field(default_factory=list)  # per worker: its CUDA_VISIBLE_DEVICES, or None
    device: str = "auto"  # the device each worker uses
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = "CPU" if not any(self.gpus) else f"GPUs {','.join(sorted(set(g for g in self.gpus if g)))}"
        return f"{self.workers} worker(s) x {self.threads} thread(s) on {where}"


def visible_gpus() -> list[str]:
    """The physical ids of the GPUs torch can see (honouring CUDA_VISIBLE_DEVICES)."""
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA
        n = 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [p.strip() for p in env.split(",") if p.strip()] if env else [str(i) for i in range(n)]
    return ids[:n]


def oversubscription(executor: str, workers: int | None, threads: int, cores: int | None = None) -> str:
    """A warning when the runs of a sweep would run more torch threads at once than this machine has
    cores (each run then goes slower than alone); "" otherwise. `msabench run` prints it for every
    executor, before planning; a Ray cluster's cores (`--address`) are not judged here."""
    if not threads and not workers:
        return ""  # the defaults fit the cores
    cores = cores or cpu_count()
    n = 1 if executor == "local" else (workers or max(1, cores // (threads or 1)))
    t = threads or max(1, cores // n)
    if n * t <= cores:
        return ""
    return (f"warning: {n} worker(s) x {t} thread(s) = {n * t} threads on {cores} cores: the runs will compete for "
            f"the CPU and each goes slower; choose --workers x --threads <= {cores}")


def plan_layout(workers: int | None, threads: int, runs_per_gpu: int | None, device: str, n_runs: int,
                cores: int | None = None, gpus: list[str] | None = None) -> Layout:
    """Workers, threads per worker and GPU assignment (see the module docstring)."""
    cores = cores or cpu_count()
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise UserError(f"--runs-per-gpu {runs_per_gpu}: must be at least 1")
    notes: list[str] = []
    wants_gpu = device == "auto" or device.startswith("cuda")
    gpus = visible_gpus() if (gpus is None and wants_gpu) else (gpus or [])
    if device.startswith("cuda:") and gpus:
        index = int(device.split(":", 1)[1])
        if index >= len(gpus):
            raise UserError(f"--device {device}: only {len(gpus)} GPU(s) visible")
        gpus = [gpus[index]]
    per_worker: list[str | None]
    if gpus:
        k = runs_per_gpu or 1
        n = workers or len(gpus) * k
        per_worker = [gpus[(i // k) % len(gpus)] if workers is None else gpus[i % len(gpus)] for i in range(n)]
        worker_device = "cuda"
    else:
        if runs_per_gpu is not None:
            notes.append("no GPU is in use (none visible, or --device cpu): --runs-per-gpu is ignored")
        n = workers or max(1, cores // threads if threads else cores)
        per_worker = [None] * n
        worker_device = "cpu" if device == "auto" else device
    n = max(1, min(n, n_runs)) if n_runs else n
    per_worker = per_worker[:n]
    t = threads or max(1, cores // n)
    return Layout(workers=n, threads=t, gpus=per_worker, device=worker_device, notes=notes)


# -- the worker side ---------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog still acts
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="msabench-parent-watchdog").start()


def worker_main(conn, parent_pid: int, out_root: str, options: dict[str, Any], retry_failed: bool) -> None:
    """A worker: receive (index, spec dict), run it, send ('end', index, status); None ends it."""
    _die_with_parent(parent_pid)
    from msabench.core.types import RunSpec
    from msabench.engine.options import RunOptions
    from msabench.execution.base import run_one
    from msabench.store.runs import Store

    store = Store(out_root)
    run_options = RunOptions(**options)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = None  # the driver is gone
        if msg is None:
            # Every store write is already durable and no lock is held: skip the interpreter's
            # teardown of torch & co. (seconds on a busy machine), so the sweep ends when its runs do.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        index, spec_dict, run_id = msg
        try:
            spec = RunSpec.from_dict(spec_dict)
            if spec.run_id != run_id:
                raise RuntimeError(f"run id changed in transit ({run_id} -> {spec.run_id})")
            status = run_one(spec, store, run_options, retry_failed)
            reply = ("end", index, status)
        except UserError as exc:
            reply = ("user_error", index, str(exc))
        except BaseException as exc:  # noqa: BLE001 - report, then die: the driver replaces the worker
            import traceback

            conn.send(("crash", index, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            raise
        conn.send(reply)


# -- the driver side ---------------------------------------------------------------------------------------
@dataclass
class _Worker:
    wid: int
    process: Any
    conn: Any
    gpu: str | None
    task: int | None = None
    ready: bool = False


def _mark_lost(store, spec, reason: str) -> str:
    """A worker died under `spec`: record the run as failed (unless it finished after all)."""
    rd = store.run_dir(spec.run_id)
    try:
        with rd.claim() as claimed:  # the dead worker's lock has a dead pid: stale, taken over
            if not claimed:
                return "skipped"
            if rd.status(ignore_own_lock=True) == "done":
                return "done"
            rd.mark_failed(reason, "")
    except Exception as exc:  # noqa: BLE001 - leave it incomplete: the next sweep redoes it
        print(f"run {spec.run_id}: could not record the failure ({exc}); it is left incomplete", file=sys.stderr)
    return "failed"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def run_process(specs: Sequence, store, options, retry_failed: bool = False,
                progress: Callable[[Any, str], None] | None = None, workers: int | None = None,
                runs_per_gpu: int | None = None, layout_note: Callable[[str], None] | None = None,
                **_: object):
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from msabench.execution.base import SweepOutcome

    outcome = SweepOutcome(progress=progress)
    finish = outcome.add
    todo = outcome.runs_to_do(specs, store, retry_failed)
    if not todo:
        return outcome
    layout = plan_layout(workers, options.threads, runs_per_gpu, options.device, len(todo))
    say = layout_note or (lambda text: print(text, file=sys.stderr))
    for note in layout.notes:
        say(f"note: {note}")
    worker_options = asdict(replace(options, threads=layout.threads, device=layout.device))
    out_root = str(store.root.resolve())
    ctx = mp.get_context("spawn")
    parent_pid = os.getpid()
    queue = deque(range(len(todo)))
    pool: dict[int, _Worker] = {}
    restarts = {"left": len(todo) + layout.workers}
    counter = {"next": 0}

    def start(gpu: str | None) -> _Worker:
        wid = counter["next"]
        counter["next"] += 1
        parent_conn, child_conn = ctx.Pipe()
        env = {name: str(layout.threads) for name in THREAD_ENV}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        elif layout.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # a spawned child starts with the parent's environment of this moment
        try:
            proc = ctx.Process(target=worker_main, name=f"msabench-worker-{wid}", daemon=True,
                               args=(child_conn, parent_pid, out_root, worker_options, retry_failed))
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child_conn.close()
        w = _Worker(wid, proc, parent_conn, gpu)
        pool[wid] = w
        return w

    def feed(w: _Worker) -> None:
        if queue:
            index = queue.popleft()
            w.task = index
            w.conn.send((index, todo[index].to_dict(), todo[index].run_id))
        else:
            w.task = None
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass

    def stop_all() -> None:
        for w in pool.values():
            if w.process.is_alive():
                w.process.terminate()
        for w in pool.values():
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
        pool.clear()

    started_ok = {"n": 0}
    try:
        for gpu in layout.gpus:
            start(gpu)  # fed once it says it is ready
        while pool:
            by_handle: dict[Any, _Worker] = {}
            for w in pool.values():
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            for handle in wait(list(by_handle)):
                w = by_handle[handle]
                if w.wid not in pool:
                    continue
                if handle is w.conn:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        continue  # it died: its sentinel says so
                    kind, index = msg[0], msg[1]
                    if kind == "ready":
                        w.ready = True
                        started_ok["n"] += 1
                        feed(w)
                    elif kind == "end":
                        w.task = None
                        finish(todo[index], msg[2])
                        feed(w)
                    elif kind == "user_error":
                        w.task = None
                        raise UserError(msg[2])
                    elif kind == "crash":
                        print(f"worker {w.wid} crashed on run {todo[index].run_id}: {msg[2]}\n{msg[3]}",
                              file=sys.stderr)
                    continue
                # the process ended
                w.process.join()
                while w.conn.poll():  # a last message sent before dying
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        break
                    if msg[0] == "ready":
                        w.ready = True
                        started_ok["n"] += 1
                    elif msg[0] == "end":
                        finish(todo[msg[1]], msg[2])
                        w.task = None if w.task == msg[1] else w.task
                    elif msg[0] == "user_error":
                        raise UserError(msg[2])
                del pool[w.wid]
                w.conn.close()
                if not w.ready and not started_ok["n"] and not any(o.ready for o in pool.values()):
                    if not pool:  # no worker ever came up: a start-up problem, not the runs' fault
                        raise RuntimeError(
                            f"msabench worker processes could not start ({_describe_exit(w.process.exitcode)}); see "
                            f"the messages above (a script that starts a sweep needs `if __name__ == '__main__':`)")
                    continue
                if w.task is not None:
                    spec = todo[w.task]
                    reason = f"the worker process running this run died ({_describe_exit(w.process.exitcode)})"
                    print(f"run {spec.run_id} ({spec.label}, seed {spec.seed}) failed: {reason}", file=sys.stderr)
                    finish(spec, _mark_lost(store, spec, reason))
                if queue and restarts["left"] > 0:
                    restarts["left"] -= 1
                    start(w.gpu)
                elif queue and not pool:
                    raise RuntimeError("worker processes keep dying; see the messages above")
    except BaseException:
        stop_all()
        raise
    stop_all()
    return outcome
