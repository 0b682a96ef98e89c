"""The `ray` executor: each run a Ray task that calls `run_one` (docs/architecture.md §9).

`--address ADDR` joins an existing cluster (its nodes need msabench installed, the same version,
and the store path reachable: a shared file system); without it a local instance is started with
num_cpus = the cores here (or --workers x --threads), bound to 127.0.0.1, and shut down after the
sweep. Each task asks for `--threads` CPUs (default 1) and, when the cluster has GPUs and the device
is not cpu, 1/`--runs-per-gpu` of a GPU (Ray sets CUDA_VISIBLE_DEVICES for the task). Tasks are not
retried by Ray: the store decides (a lost task's run is marked failed, `--retry-failed` reruns it).
At most `--workers` tasks are in flight when given. Workers write run folders into the store at
the absolute --out path; only the driver reads them back (progress, MLflow).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from msabench.core.errors import UserError
from msabench.execution.process import _mark_lost, cpu_count

OBJECT_STORE_BYTES = 256 * 1024 * 1024  # results travel as run folders, not objects: keep it small


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A plain HOST:PORT address must accept a TCP connection, checked before Ray tries (Ray itself
    retries for minutes). `auto` and `ray://` (Ray Client) addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UserError(f"--address {address!r}: write HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379), "
                        f"auto, or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                        f"with `ray start --head`, or drop --address for a local one") from None


def _init_ray(ray, address: str | None, num_cpus: int) -> bool:
    """Connect or start; True when this call started (and so must stop) Ray."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except Exception as exc:  # noqa: BLE001 - ConnectionError and Ray's own
            raise UserError(f"--address {address}: cannot connect to a Ray cluster there ({type(exc).__name__}: "
                            f"{exc}); start one with `ray start --head`, or drop --address for a local one") from exc
        return True
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             object_store_memory=OBJECT_STORE_BYTES, logging_level=logging.WARNING, log_to_driver=True)
    return True


def run_ray(specs: Sequence, store, options, retry_failed: bool = False,
            progress: Callable[[Any, str], None] | None = None, workers: int | None = None,
            runs_per_gpu: int | None = None, address: str | None = None,
            layout_note: Callable[[str], None] | None = None, **_: object):
    from msabench.execution.base import SweepOutcome, run_task

    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'msabench[ray]'") from None
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise UserError(f"--runs-per-gpu {runs_per_gpu}: must be at least 1")
    say = layout_note or (lambda text: print(text, file=sys.stderr))
    outcome = SweepOutcome(progress=progress)
    finish = outcome.add
    todo = outcome.runs_to_do(specs, store, retry_failed)
    if not todo:
        return outcome
    threads = options.threads or 1
    started = _init_ray(ray, address, num_cpus=(workers * threads) if workers else cpu_count())
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        use_gpu = cluster_gpus > 0 and options.device != "cpu"
        if runs_per_gpu is not None and not use_gpu:
            say("note: no GPU is in use (none in the Ray cluster, or --device cpu): --runs-per-gpu is ignored")
        device = ("cuda" if options.device in ("auto",) or options.device.startswith("cuda") else options.device) \
            if use_gpu else ("cpu" if options.device == "auto" else options.device)
        task_options = asdict(replace(options, threads=threads, device=device))
        remote = ray.remote(run_task).options(
            num_cpus=threads, num_gpus=(1.0 / (runs_per_gpu or 1)) if use_gpu else 0, max_retries=0,
            name="msabench-run")
        out_root = str(store.root.resolve())
        limit = workers or len(todo)
        waiting = list(range(len(todo)))
        in_flight: dict[Any, int] = {}
        try:
            while waiting or in_flight:
                while waiting and len(in_flight) < limit:
                    index = waiting.pop(0)
                    ref = remote.remote(todo[index].to_dict(), todo[index].run_id, out_root, task_options,
                                        retry_failed)
                    in_flight[ref] = index
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    index = in_flight.pop(ref)
                    spec = todo[index]
                    try:
                        kind, value = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the task or its worker died
                        first = (str(exc).strip().splitlines() or [""])[0][:300]
                        reason = f"the Ray task running this run failed ({type(exc).__name__}: {first})"
                        print(f"run {spec.run_id} ({spec.label}, seed {spec.seed}) failed: {reason}", file=sys.stderr)
                        finish(spec, _mark_lost(store, spec, reason))
                        continue
                    if kind == "user_error":
                        raise UserError(value)
                    finish(spec, value)
        except BaseException:
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort
                    pass
            raise
    finally:
        if started:
            ray.shutdown()
    return outcome
