"""Running one run into the store (`run_one`), and the `local` executor: one run after another here.

Every executor calls `run_one`, so results never depend on the executor (docs/architecture.md §9).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.engine.options import RunOptions

# The status of a run that failed in an earlier sweep and is not retried (no --retry-failed): it
# counts as failed in this sweep too, never as skipped, so a re-run cannot turn a failure into success.
FAILED_EARLIER = "failed-earlier"


def not_run_status(store_status: str) -> str:
    """What a sweep reports for a run the store says not to run: failed when it failed before."""
    return FAILED_EARLIER if store_status == "failed" else "skipped"


@dataclass
class SweepOutcome:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed now, or earlier and not retried
    skipped: list[str] = field(default_factory=list)  # already done, or held by another sweep
    failed_earlier: list[str] = field(default_factory=list)  # the part of `failed` that failed in an earlier sweep
    progress: Callable[[RunSpec, str], None] | None = None

    def add(self, spec: RunSpec, status: str) -> None:
        if status == FAILED_EARLIER:
            self.failed_earlier.append(spec.run_id)
        bucket = {"done": self.done, "failed": self.failed, FAILED_EARLIER: self.failed}.get(status, self.skipped)
        bucket.append(spec.run_id)
        if self.progress is not None:
            self.progress(spec, status)

    def runs_to_do(self, specs: Sequence[RunSpec], store, retry_failed: bool) -> list[RunSpec]:
        """The runs the store says to run; the others are counted as skipped and never reach a worker."""
        from msabench.store.runs import should_run

        todo = []
        for spec in specs:
            run_dir = store.run_dir(spec.run_id)
            status = run_dir.status()
            if should_run(status, retry_failed):
                todo.append(spec)
            else:
                run_dir.release_stale_lock()
                self.add(spec, not_run_status(status))
        return todo


def run_one(spec: RunSpec, store, options: RunOptions, retry_failed: bool) -> str:
    """Run `spec` unless the store says not to; returns the resulting status ("done", "failed",
    "skipped" or FAILED_EARLIER)."""
    from msabench.store.runs import should_run

    run_dir = store.run_dir(spec.run_id)
    status = run_dir.status()
    if not should_run(status, retry_failed):
        run_dir.release_stale_lock()  # a worker killed after finishing the run left its lock
        return not_run_status(status)
    try:
        return _claim_and_run(spec, run_dir, options, retry_failed)
    except UserError:
        with contextlib.suppress(OSError):  # a problem the user must fix leaves no run folder behind
            run_dir.path.rmdir()  # only when empty: never what another worker wrote meanwhile
        raise


def _claim_and_run(spec: RunSpec, run_dir, options: RunOptions, retry_failed: bool) -> str:
    from msabench.engine.runner import execute, failure_reason  # torch: only where a run executes
    from msabench.store.runs import should_run

    with run_dir.claim() as claimed:
        if not claimed:
            return "skipped"  # another worker took it between the check and the claim
        status = run_dir.status(ignore_own_lock=True)
        if not should_run(status, retry_failed):
            return not_run_status(status)
        run_dir.reset()
        try:
            execute(spec, run_dir, options)
        except UserError:
            run_dir.reset()  # a problem the user must fix: leave no failed record behind
            raise
        except Exception as exc:  # noqa: BLE001 - every other failure is recorded, the sweep goes on
            run_dir.mark_failed(**failure_reason(exc))
            print(f"run {spec.run_id} ({spec.label}, seed {spec.seed}) failed: {exc}", file=sys.stderr)
            return "failed"
        run_dir.mark_done()
        return "done"


def run_task(spec_dict: dict, run_id: str, out_root: str, options: dict, retry_failed: bool) -> tuple[str, str]:
    """`run_one` for a worker on another machine (a Ray task, a Slurm job), whose arguments travel as
    plain data: ('end', status) or ('user_error', message)."""
    from msabench.store.runs import Store

    spec = RunSpec.from_dict(spec_dict)
    if spec.run_id != run_id:
        raise RuntimeError(f"run id changed in transit ({run_id} -> {spec.run_id}): mixed msabench versions?")
    try:
        return "end", run_one(spec, Store(out_root), RunOptions(**options), retry_failed)
    except UserError as exc:
        return "user_error", str(exc)


def run_local(specs: Sequence[RunSpec], store, options: RunOptions, retry_failed: bool = False,
              progress: Callable[[RunSpec, str], None] | None = None, **_: object) -> SweepOutcome:
    outcome = SweepOutcome(progress=progress)
    for spec in specs:
        outcome.add(spec, run_one(spec, store, options, retry_failed))
    return outcome

