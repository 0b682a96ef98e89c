"""Compare two stores in the sense of docs/architecture.md §9: equal metrics, losses, ids, predictions and
checkpoint bytes; timings, env and MLflow ids excluded. Used by the determinism, executor and
kill/resume tests, and by users checking that a store reproduces."""

from __future__ import annotations

import hashlib
from typing import Any

from msabench.store.runs import Store

VOLATILE_RECORD_KEYS = ("seconds",)


def run_fingerprint(run_dir) -> dict[str, Any]:
    records = [{k: v for k, v in r.items() if k not in VOLATILE_RECORD_KEYS} for r in run_dir.read_records()]
    predictions = {k: hashlib.sha256(v.tobytes() + str(v.dtype).encode()).hexdigest()
                   for k, v in sorted(run_dir.read_predictions().items())}
    checkpoints = {rule: hashlib.sha256(run_dir.checkpoint_path(rule).read_bytes()).hexdigest()
                   for rule in run_dir.checkpoint_rules()}
    return {"status": run_dir.status(), "spec": run_dir.read_spec_dict(), "records": records,
            "predictions": predictions, "checkpoints": checkpoints}


def store_fingerprint(out: str) -> dict[str, dict[str, Any]]:
    """run_id -> fingerprint of every done run; other runs -> their status only."""
    result = {}
    for rd in Store(out, must_exist=True).runs():
        status = rd.status()
        result[rd.run_id] = run_fingerprint(rd) if status == "done" else {"status": status}
    return result


def store_differences(a: str, b: str) -> list[str]:
    """Human-readable differences between two stores; empty when they are equal."""
    fa, fb = store_fingerprint(a), store_fingerprint(b)
    diffs = [f"run {r} only in {a}" for r in sorted(set(fa) - set(fb))]
    diffs += [f"run {r} only in {b}" for r in sorted(set(fb) - set(fa))]
    for run_id in sorted(set(fa) & set(fb)):
        for key in ("status", "spec", "records", "predictions", "checkpoints"):
            if fa[run_id].get(key) != fb[run_id].get(key):
                diffs.append(f"run {run_id}: {key} differ")
    return diffs
