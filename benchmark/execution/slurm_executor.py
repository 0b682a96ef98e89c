"""The `slurm` executor: one Slurm job array per sweep, each array task running one run through
`run_one`, submitted with submitit (docs/architecture.md §9).

The store must be on a file system the compute nodes share with the driver, as for Ray: the tasks
write run folders there, and submitit's job folder (pickled task, result, logs) is `<out>/slurm/`.
The nodes run the driver's Python (the same environment path on a shared file system) and read
`--out` at its absolute path. The driver polls Slurm (`scontrol show job`, kept `MinJobAge` after a
task ends; no accounting database needed) and the result files, and reports each run as it ends, so
MLflow is written by the driver only, as for every executor.

A task that nears its time limit (or is preempted with a signal) is checkpointed by submitit and
requeued (at most `REQUEUES` times): the requeued task calls `run_one` again, which skips what the
store has done and redoes the interrupted run (runs have no mid-run checkpoint; a SIGTERM stops the
run at once, its lock released, so nothing waits for a stale lock). A task that Slurm itself ends TIMEOUT, PREEMPTED or
NODE_FAIL is resubmitted by the driver (same bound). A task cancelled with `scancel` is left as the
user asked: its run stays incomplete and the next `msabench run` redoes it. Any other end without a
result (FAILED, OUT_OF_MEMORY, ...) marks the run failed, as a dead worker does for `process`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError
from msabench.execution.process import THREAD_ENV, _mark_lost

REQUEUES = 3  # per run: submitit's requeues at the time limit, then the driver's resubmissions
POLL_SECONDS = 2.0
RESULT_GRACE_SECONDS = 30.0  # a COMPLETED task's result file may show late on a shared file system
COMMAND_TIMEOUT = 60
ALIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT"}
RESUBMIT_STATES = {"TIMEOUT", "PREEMPTED", "NODE_FAIL"}
# Set by the dedicated options (or by the executor itself): refused in --slurm-opt.
OWN_KEYS = {"array": "--slurm-array-parallelism", "partition": "--slurm-partition", "time": "--slurm-time",
            "gpus-per-task": "--slurm-gpus-per-task", "cpus-per-task": "--threads", "output": None, "error": None,
            "open-mode": None, "signal": None, "job-name": None}
_KEY_RE = re.compile(r"[a-z][a-z0-9-]*")


@dataclass
class SlurmSettings:
    """What `msabench run --slurm-*` asks of Slurm."""

    partition: str | None = None
    time_minutes: int = 60
    gpus_per_task: int = 0
    array_parallelism: int | None = None  # default: every run at once
    extra: dict[str, str] = field(default_factory=dict)


def parse_time(text: str) -> int:
    """Slurm's time formats (MINUTES, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) as whole minutes, rounded up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UserError(f"--slurm-time {text!r}: write minutes (90) or Slurm's [D-]HH:MM:SS (1:30:00, 2-00:00:00)")
    days, a, b, c = match.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        seconds = int(a) * 60 + int(b)
    else:
        seconds = int(a) * 60
    if seconds <= 0:
        raise UserError(f"--slurm-time {text!r}: must be longer than 0")
    return -(-seconds // 60)


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """`--slurm-opt KEY=VALUE` (an sbatch option without its dashes, e.g. mem=16G, account=proj)."""
    extra: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-").replace("_", "-").lower()
        if not sep or not _KEY_RE.fullmatch(key) or not value.strip():
            raise UserError(f"--slurm-opt {pair!r}: write KEY=VALUE with an sbatch option name, e.g. mem=16G "
                            f"or account=myproject")
        if key in OWN_KEYS:
            own = OWN_KEYS[key]
            raise UserError(f"--slurm-opt {pair!r}: msabench sets --{key} itself" +
                            (f"; use {own}" if own else "; drop it"))
        extra[key] = value.strip()
    return extra


def task_threads(options) -> int:
    return options.threads or 1


def task_device(options, settings: SlurmSettings) -> str:
    if options.device != "auto":
        return options.device
    return "cuda" if settings.gpus_per_task else "cpu"


def sbatch_parameters(settings: SlurmSettings, options, n_runs: int) -> dict[str, Any]:
    """The submitit parameters of the sweep's job array (sbatch options, less the paths submitit adds)."""
    threads = task_threads(options)
    params: dict[str, Any] = {
        "job_name": "msabench", "time": settings.time_minutes, "cpus_per_task": threads,
        "array_parallelism": settings.array_parallelism or n_runs,
        # submitit's requeue signal: 90 s before the limit, less for short limits (a quarter of it)
        "signal_delay_s": min(90, settings.time_minutes * 15),
        "setup": [f"export {name}={threads}" for name in THREAD_ENV],
    }
    if settings.partition:
        params["partition"] = settings.partition
    if settings.gpus_per_task:
        params["gpus_per_task"] = settings.gpus_per_task
    if settings.extra:
        params["additional_parameters"] = dict(settings.extra)
    return params


def describe_sbatch(settings: SlurmSettings, options, n_runs: int) -> list[str]:
    """The sbatch lines the sweep's job array would use (for --dry-run)."""
    params = sbatch_parameters(settings, options, n_runs)
    flags = {"job-name": params["job_name"], "time": params["time"], "cpus-per-task": params["cpus_per_task"],
             "array": f"0-{n_runs - 1}%{params['array_parallelism']}",
             "signal": f"USR2@{params['signal_delay_s']}"}
    for key in ("partition", "gpus_per_task"):
        if key in params:
            flags[key.replace("_", "-")] = params[key]
    flags.update(params.get("additional_parameters", {}))
    lines = [f"#SBATCH --{k}={v}" for k, v in sorted(flags.items())]
    return lines + [f"(in each task) {line}" for line in params["setup"]]


# -- the task side ---------------------------------------------------------------------------------------
def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class SlurmTask:
    """The callable each array task runs; checkpointable, so submitit requeues it at the time limit."""

    def __call__(self, spec_dict: dict[str, Any], run_id: str, out_root: str, options: dict[str, Any],
                 retry_failed: bool) -> tuple[str, str]:
        from msabench.execution.base import run_task

        # submitit ignores SIGTERM (it waits for its requeue signal); a run has no state worth saving
        # (a requeued task redoes it from the store), so stop at once and release the run's lock
        # cleanly rather than be killed KillWait later and leave a lock that must go stale on another host.
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return run_task(spec_dict, run_id, out_root, options, retry_failed)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Requeue the same run: the store keeps what is done; an interrupted run is redone."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# -- the driver side -------------------------------------------------------------------------------------
def _slurm_command(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def check_slurm() -> None:
    """sbatch on PATH and a controller that answers, or a UserError saying what to do."""
    missing = [name for name in ("sbatch", "scontrol", "srun") if shutil.which(name) is None]
    if missing:
        raise UserError(f"--executor slurm: {', '.join(missing)} not found on PATH; run msabench on a Slurm login "
                        f"node (or `module load slurm`), or choose --executor local|process|ray")
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):  # Slurm's commands would retry reading it for a minute
        raise UserError(f"--executor slurm: SLURM_CONF={conf} does not exist; point it at the cluster's slurm.conf "
                        f"(or unset it)")
    try:
        ping = _slurm_command(["scontrol", "ping"])
    except subprocess.TimeoutExpired:
        ping = None
    if ping is None or ping.returncode != 0 or " is UP" not in ping.stdout:
        lines = (ping.stdout + "\n" + ping.stderr).splitlines() if ping else ["no answer in time"]
        said = next((line.strip() for line in lines if line.strip() and "*" not in line), "no answer")
        raise UserError(f"--executor slurm: the Slurm controller does not answer (scontrol ping: {said[:200]}); "
                        f"check that slurmctld is up and that SLURM_CONF (or /etc/slurm/slurm.conf) names it")


def _array_states(array_ids: set[str]) -> dict[str, str] | None:
    """'ARRAYID_TASK' (or 'JOBID') -> JobState of every task Slurm still knows (ended ones for MinJobAge); None when
    the controller did not answer."""
    states: dict[str, str] = {}
    for array_id in array_ids:
        try:
            shown = _slurm_command(["scontrol", "show", "job", "-o", array_id])
        except subprocess.TimeoutExpired:
            return None
        if shown.returncode != 0:
            if "Invalid job id" in shown.stderr:
                continue  # every task ended long ago (past MinJobAge)
            return None
        for line in shown.stdout.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            task, state = fields.get("ArrayTaskId", ""), fields.get("JobState", "")
            if not task:  # a sweep of one run is a plain job (submitit submits no array of one)
                states[fields.get("JobId", array_id)] = state
                continue
            for part in task.split("%")[0].strip("[]").split(","):  # a pending range: 3-5 (or 3-5%2)
                low, _, high = part.partition("-")
                if low.isdigit():
                    for index in range(int(low), int(high or low) + 1):
                        states[f"{fields.get('ArrayJobId', array_id)}_{index}"] = state
    return states


@dataclass
class _Submitted:
    spec: Any
    job: Any  # submitit.SlurmJob
    attempt: int
    ended_at: float | None = None  # when Slurm first said COMPLETED without a result file


def run_slurm(specs: Sequence, store, options, retry_failed: bool = False,
              progress: Callable[[Any, str], None] | None = None, workers: int | None = None,
              runs_per_gpu: int | None = None, slurm: SlurmSettings | None = None,
              layout_note: Callable[[str], None] | None = None, **_: object):
    from msabench.execution.base import SweepOutcome

    if workers is not None:
        raise UserError("--workers does not go with --executor slurm; use --slurm-array-parallelism")
    if runs_per_gpu is not None:
        raise UserError("--runs-per-gpu does not go with --executor slurm; use --slurm-gpus-per-task")
    settings = slurm or SlurmSettings()
    say = layout_note or (lambda text: print(text, file=sys.stderr))
    outcome = SweepOutcome(progress=progress)
    todo = outcome.runs_to_do(specs, store, retry_failed)
    if not todo:
        return outcome
    check_slurm()
    try:
        import submitit
    except ImportError:
        raise UserError("--executor slurm needs submitit: pip install 'msabench[slurm]'") from None
    out_root = str(store.root.resolve())
    task_options = asdict(replace(options, threads=task_threads(options), device=task_device(options, settings)))
    executor = submitit.SlurmExecutor(folder=Path(out_root) / "slurm" / "%j", max_num_timeout=REQUEUES)

    def submit(batch: list[tuple[Any, int]]) -> list[_Submitted]:
        executor.update_parameters(**sbatch_parameters(settings, options, len(batch)))
        n = len(batch)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's complaint; ours says it
                jobs = executor.map_array(SlurmTask(), [s.to_dict() for s, _ in batch],
                                          [s.run_id for s, _ in batch], [out_root] * n, [task_options] * n,
                                          [retry_failed] * n)
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError,
                submitit.core.utils.FailedSubmissionError) as exc:
            said = " ".join(str(getattr(exc, "stderr", None) or exc).split())
            raise UserError(f"--executor slurm: sbatch refused the job array ({said[:300]}); check --slurm-partition, "
                            f"--slurm-time and --slurm-opt against `sinfo`") from None
        say(f"submitted Slurm job array {jobs[0].job_id.split('_')[0]} ({n} runs; logs in {out_root}/slurm/)")
        return [_Submitted(spec, job, attempt) for (spec, attempt), job in zip(batch, jobs)]

    in_flight = submit([(spec, 1) for spec in todo])
    cancelled: list[str] = []
    warned_unreachable = False
    try:
        while in_flight:
            time.sleep(POLL_SECONDS)
            states = _array_states({s.job.job_id.split("_")[0] for s in in_flight})
            if states is None:
                if not warned_unreachable:
                    say("note: the Slurm controller does not answer; waiting for it (the jobs go on)")
                    warned_unreachable = True
                continue
            warned_unreachable = False
            still, resubmit = [], []
            for sub in in_flight:
                state = states.get(sub.job.job_id, "")
                if sub.job.paths.result_pickle.exists():
                    outcome.add(sub.spec, _task_result(sub, store))
                elif state in ALIVE_STATES:
                    still.append(sub)
                elif state == "CANCELLED":
                    cancelled.append(sub.job.job_id)
                    say(f"run {sub.spec.run_id}: its Slurm job {sub.job.job_id} was cancelled; the run is left as it "
                        f"was, the next `msabench run` redoes it")
                    outcome.add(sub.spec, "cancelled")
                elif state in RESUBMIT_STATES and sub.attempt <= REQUEUES:
                    say(f"run {sub.spec.run_id}: Slurm job {sub.job.job_id} ended {state}; resubmitting it "
                        f"(attempt {sub.attempt + 1} of {REQUEUES + 1})")
                    resubmit.append((sub.spec, sub.attempt + 1))
                elif state == "COMPLETED" and (sub.ended_at is None
                                               or time.monotonic() - sub.ended_at < RESULT_GRACE_SECONDS):
                    sub.ended_at = sub.ended_at or time.monotonic()
                    still.append(sub)  # its result file is on its way
                else:
                    reason = (f"the Slurm job {sub.job.job_id} running this run ended {state or 'and was purged'} "
                              f"without a result (its log: {sub.job.paths.stderr})")
                    print(f"run {sub.spec.run_id} ({sub.spec.model}, seed {sub.spec.seed}) failed: {reason}",
                          file=sys.stderr)
                    outcome.add(sub.spec, _mark_lost(store, sub.spec, reason))
            in_flight = still + (submit(resubmit) if resubmit else [])
    except BaseException:
        ids = sorted({s.job.job_id.split("_")[0] for s in in_flight})
        if ids:  # as Ctrl-C stops a process sweep's workers, it cancels this sweep's jobs
            subprocess.run(["scancel", *ids], capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
            print(f"cancelled Slurm job array(s) {', '.join(ids)}", file=sys.stderr)
        raise
    if cancelled:
        say(f"{len(cancelled)} run(s) cancelled in Slurm ({', '.join(cancelled)}) are left incomplete: re-run the "
            f"same command to redo them")
    return outcome


def _task_result(sub: _Submitted, store) -> str:
    """The status a finished task reports; a task that raised (submitit gave up requeueing it, an
    import error on the node, ...) has its run marked failed with the task's error."""
    try:
        kind, value = sub.job.result()
    except Exception as exc:  # noqa: BLE001 - the task's own failure, with its trace in the job log
        lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("-")]
        reason = (f"the Slurm job {sub.job.job_id} running this run failed: "
                  f"{(lines[-1] if lines else type(exc).__name__)[:300]} (its log: {sub.job.paths.stderr})")
        print(f"run {sub.spec.run_id} ({sub.spec.model}, seed {sub.spec.seed}) failed: {reason}", file=sys.stderr)
        return _mark_lost(store, sub.spec, reason)
    if kind == "user_error":
        raise UserError(value)
    return value
