"""Sweep progress on stderr: a bar with ETA on a terminal, plain lines otherwise; the end summary.

The ETA is the wall time per executed run so far (runs skipped because the store has them cost
nothing) times the runs left; before the first run ends it comes from the stored timings of the
dry-run estimate when there are any.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from typing import Any, TextIO


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def describe_spec(spec: Any) -> str:
    setting = f" {spec.setting}" if getattr(spec, "setting", "") else ""
    return f"{spec.label} {'+'.join(spec.datasets)}{setting} seed={spec.seed} rate={spec.rate:g}"


class EpochLines:
    """`run -v`: one line per epoch on stderr (epoch, training and validation losses, the value the
    run's selection rule compares and the best epoch so far, seconds); `-vv` adds a line per
    evaluated split and domain with its metrics. Called by the runner after each epoch's records."""

    def __init__(self, spec: Any, verbosity: int, stream: TextIO | None = None):
        self.spec, self.verbosity = spec, verbosity
        self.stream = stream or sys.stderr
        self.records: list[dict[str, Any]] = []

    def __call__(self, epoch: int, records: list[dict[str, Any]]) -> None:
        from msabench.evaluation.selection import SELECTION_RULES, rule_value, select_epoch

        spec = self.spec
        self.records.extend(records)
        rule = spec.selection_rules[0]
        sources = list(spec.train_domains or spec.source_domains or spec.datasets[:1])
        where = dict(task=spec.task, sources=list(spec.valid_domains or sources), targets=list(spec.target_domains),
                     train_rate=spec.rate)
        metric, value = rule_value(self.records, rule, **where)
        best = (None if SELECTION_RULES.get(rule).needs_helper_runs
                else select_epoch(self.records, rule, **where))
        train = next((r["loss"] for r in records if any(k.startswith("train_") for k in r["loss"])), {})
        losses = ", ".join(f"{k[len('train_'):]} {v:.4g}" for k, v in sorted(train.items()) if k.startswith("train_"))
        valid = [r["loss"].get("task") for r in records if r["split"] == "valid" and r["domain"] in where["sources"]]
        valid = [v for v in valid if v is not None]
        line = (f"{describe_spec(spec)} epoch {epoch + 1}/{spec.config.get('train.epochs', '?')}: "
                f"train loss {losses or '-'}"
                + (f"; valid loss {sum(valid) / len(valid):.4g}" if valid else "")
                + f"; valid {metric} {'-' if value is None else f'{value:.4g}'} (rule '{rule}'"
                + (f", best epoch {best + 1}" if best is not None else "") + ")"
                + f"; {sum(float(r.get('seconds') or 0.0) for r in records):.1f}s")
        lines = [line]
        if self.verbosity >= 2:
            for r in records:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(r["metrics"].items()) if v is not None)
                lines.append(f"  {r['split']} {r['domain']}" + (f" rate {r['rate']:g}" if r.get("rate") else "")
                             + f": loss {r['loss'].get('task', float('nan')):.4g}; {shown}")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


class Progress:
    """`update(spec, status)` per finished run (from the executor's progress callback, driver side);
    `message(text)` prints a line without breaking the bar; `close()` ends the bar."""

    BAR_WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None = None, *, tty: bool | None = None,
                 estimate_seconds: float | None = None, workers: int = 1, tick: float = 1.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.estimate = estimate_seconds  # serial seconds of the runs to do, from stored timings
        self.workers = max(1, workers)
        self.counts = {"done": 0, "failed": 0, "skipped": 0}
        self.failed_earlier = 0  # counted in "failed", but not executed now (they cost no time)
        self.started = time.perf_counter()
        self.first_exec: float | None = None
        self.last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self.tty and total:
            self._thread = threading.Thread(target=self._tick, args=(tick,), daemon=True, name="msabench-progress")
            self._thread.start()

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    def eta(self, now: float | None = None) -> float | None:
        now = time.perf_counter() if now is None else now
        executed = self.counts["done"] + self.counts["failed"] - self.failed_earlier
        left = self.total - self.processed
        if left <= 0:
            return 0.0
        if executed:
            return (now - self.started) / executed * left
        if self.estimate is not None:
            return max(0.0, self.estimate / self.workers - (now - self.started))
        return None

    def update(self, spec: Any, status: str) -> None:
        from msabench.execution.base import FAILED_EARLIER

        earlier = status == FAILED_EARLIER
        with self._lock:
            key = "failed" if earlier else status if status in self.counts else "skipped"
            self.counts[key] += 1
            self.failed_earlier += earlier
            now = time.perf_counter()
            shown = "failed" if earlier else status
            what = describe_spec(spec) + (" (failed in an earlier sweep, not retried)" if earlier else "")
            self.last = f"{shown} {what}"
            if self.tty:
                if key == "failed":  # a failure keeps its own line above the bar
                    self.stream.write(f"\r\x1b[Kfailed: {what} (`msabench status` says why)\n")
                self._draw(now)
            else:
                self.stream.write(f"[{self.processed}/{self.total}] {shown:8s} {what}  "
                                  f"({fmt_duration(now - self.started)} elapsed, ETA {fmt_duration(self.eta(now))})\n")
                self.stream.flush()

    def message(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K" + text + "\n")
                self._draw(time.perf_counter())
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def _line(self, now: float) -> str:
        frac = self.processed / self.total if self.total else 1.0
        filled = int(round(frac * self.BAR_WIDTH))
        c = self.counts
        return (f"[{'#' * filled}{'.' * (self.BAR_WIDTH - filled)}] {self.processed}/{self.total}  done {c['done']} "
                f"failed {c['failed']} skipped {c['skipped']}  {fmt_duration(now - self.started)} elapsed  "
                f"ETA {fmt_duration(self.eta(now))}" + (f"  | {self.last}" if self.last else ""))

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self._line(now))
        self.stream.flush()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                self._draw(time.perf_counter())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.tty and self.total:
            with self._lock:
                self._draw(time.perf_counter())
                self.stream.write("\n")
                self.stream.flush()


MAX_FAILED_LISTED = 20  # the summary names this many failed runs; `msabench status` lists them all


def summary_lines(outcome: Any, total: int, seconds: float, out: str, mlflow_line: str | None = None,
                  text_cache: dict[str, int] | None = None, failed_labels: dict[str, str] | None = None) -> list[str]:
    """The end-of-sweep summary: counts, store, frozen text cache, MLflow, the report command, and
    which runs failed (`failed_labels`: run id -> what the run is and why it failed)."""
    earlier = set(getattr(outcome, "failed_earlier", ()) or ())
    failed_text = f"failed {len(outcome.failed)}"
    if earlier:
        failed_text += f" ({len(earlier)} in an earlier sweep, not retried)"
    lines = [f"done {len(outcome.done)}, {failed_text}, skipped {len(outcome.skipped)} of {total} "
             f"runs in {fmt_duration(seconds)}; store {out}"]
    if text_cache:
        lines.append(f"text encoder cache: {text_cache['hits']} hits, {text_cache['misses']} misses"
                     + (f", {text_cache['rebuilt']} corrupt entries rebuilt" if text_cache.get("rebuilt") else ""))
    if mlflow_line:
        lines.append(mlflow_line)
    if outcome.failed:
        labels = failed_labels or {}
        for run_id in outcome.failed[:MAX_FAILED_LISTED]:
            when = "earlier, not retried" if run_id in earlier else "now"
            lines.append(f"failed ({when}) {run_id}{(' ' + labels[run_id]) if labels.get(run_id) else ''}")
        if len(outcome.failed) > MAX_FAILED_LISTED:
            lines.append(f"... and {len(outcome.failed) - MAX_FAILED_LISTED} more failed runs")
        lines.append(f"failed runs are kept with their reason: `msabench status --out {shlex.quote(str(out))}` lists "
                     f"them, --retry-failed reruns them")
    lines.append(f"report: msabench report --out {shlex.quote(str(out))}")
    return lines
