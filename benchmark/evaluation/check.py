"""`msabench check`: a stored baseline against a store or fresh runs (docs/architecture.md §3 and §10).

A baseline file (JSON) holds the specs of the runs it was made from, the tolerance parameters and
one entry per table cell (generic tables: protocol x setting x dataset(s), row = model, column =
domain:metric; mean, std (ddof=1) and number of seeds, in the metric's own unit). A cell holds
when |current - baseline mean| <= max(k x baseline std, floor), with `k` and `floor` (optionally a
floor per metric) read from the file. `check` compares every baseline cell: a cell that moved or
became undefined is a regression, one line each; baseline runs that are not done in the store are
reported apart, as missing runs (not regressions); either makes the exit code 1; bad input exits 2.

`--run` (the default unless `--out` is given explicitly) re-runs the baseline's specs into a new
temporary store (removed afterwards unless `--keep`) on the CPU with the recorded thread count.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError
from msabench.store.io import atomic_write_text, mkdirs

BASELINE_SCHEMA = 1
BASELINE_KIND = "msabench-baseline"
DEFAULT_K = 3.0
DEFAULT_FLOOR = 0.01


def _cells(tables) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for t in tables:
        for row in t.rows:
            if row.kind != "ours":
                continue
            for col in t.columns:
                cell = row.cells.get(col.key)
                if cell is None:
                    continue
                parts = cell.parts or [cell]
                for i, part in enumerate(parts):
                    key = col.key if len(parts) == 1 else f"{col.key}#{i}"
                    metric = col.metric or (col.parts[i].split(":")[-1] if i < len(col.parts) else col.key)
                    out[(t.id, row.label, key)] = {"table": t.id, "row": row.label, "column": key, "metric": metric,
                                                   "mean": part.mean, "std": part.std, "n": part.n}
    return out


def tables_of_store(out: str, selection: str | None = None):
    from msabench.report.build import build_tables, load_views

    views = load_views(out)
    if not views:
        raise UserError(f"no finished runs in {out}: nothing to check or write a baseline from")
    return views, build_tables(views, selection=selection)


def write_baseline(path: str, out: str, *, k: float = DEFAULT_K, floor: float = DEFAULT_FLOOR,
                   floors: dict[str, float] | None = None, selection: str | None = None, threads: int = 1,
                   note: str = "") -> dict[str, Any]:
    from msabench import __version__

    if not (_is_number(k) and _is_number(floor)) or k < 0 or floor < 0 or \
            any(not _is_number(v) or v < 0 for v in (floors or {}).values()):
        raise UserError("--k and --floor must be finite, non-negative numbers")
    views, tables = tables_of_store(out, selection)
    cells = sorted(_cells(tables).values(), key=lambda c: (c["table"], c["row"], c["column"]))
    threads_seen = sorted({int(v.env.get("threads") or v.env.get("torch_threads") or 0) for v in views} - {0})
    baseline = {
        "schema": BASELINE_SCHEMA, "kind": BASELINE_KIND, "msabench_version": __version__, "note": note,
        "tolerance": {"k": k, "floor": floor, "floors": dict(floors or {}),
                      "rule": "a cell holds when |current - mean| <= max(k * std, floor[metric] or floor)"},
        "selection": selection,
        "run_options": {"device": "cpu", "precision": "fp32", "threads": threads_seen[0] if threads_seen else threads},
        "specs": sorted((v.spec for v in views), key=lambda s: json.dumps(s, sort_keys=True)),
        "cells": cells,
    }
    text = json.dumps(baseline, indent=1, sort_keys=True, allow_nan=False, default=_nan_to_none) + "\n"
    # Atomic (temp file, fsync, rename): a full disk leaves the old baseline or none, never a cut one.
    mkdirs(Path(path).parent)
    atomic_write_text(path, text)
    return baseline


def _nan_to_none(obj):  # pragma: no cover - json only calls it for non-serialisable objects
    raise TypeError(type(obj).__name__)


def read_baseline(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--baseline {path}: no such file; write one with `msabench check --write-baseline FILE "
                        f"--out DIR`") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--baseline {path}: not a readable JSON baseline ({exc}); restore it (git checkout) or "
                        f"write it again with `msabench check --write-baseline FILE --out DIR`") from None
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
        raise UserError(f"--baseline {path}: not an msabench baseline (kind "
                        f"{data.get('kind') if isinstance(data, dict) else None!r})")
    if data.get("schema") != BASELINE_SCHEMA:
        raise UserError(f"--baseline {path}: schema {data.get('schema')!r}, this msabench reads {BASELINE_SCHEMA}")
    _check_tolerance(path, data.get("tolerance"))
    if not isinstance(data.get("cells"), list) or not isinstance(data.get("specs"), list):
        raise UserError(f"--baseline {path}: 'cells' and 'specs' must be lists")
    if not data["cells"]:
        raise UserError(f"--baseline {path}: it lists no cells, so it would pass anything; write it again with "
                        f"`msabench check --write-baseline FILE --out DIR`")
    if not all(isinstance(s, dict) for s in data["specs"]):
        raise UserError(f"--baseline {path}: every entry of 'specs' must be a run spec (a JSON object)")
    for i, c in enumerate(data["cells"]):
        _check_cell(path, i, c)
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_tolerance(path: str, tol: Any) -> None:
    """k, floor and every per-metric floor: finite, non-negative numbers. A NaN or infinite one would
    make every comparison hold (NaN compares false, inf admits anything): the check would be off."""
    fix = "restore the file (git checkout) or write it again with `msabench check --write-baseline FILE --out DIR`"
    if not isinstance(tol, dict) or "k" not in tol or "floor" not in tol:
        raise UserError(f"--baseline {path}: the tolerance needs numbers 'k' and 'floor'; {fix}")
    floors = tol.get("floors") or {}
    if not isinstance(floors, dict):
        raise UserError(f"--baseline {path}: tolerance.floors must map metric names to numbers; {fix}")
    for name, value in [("k", tol["k"]), ("floor", tol["floor"]), *((f"floors.{m}", v) for m, v in floors.items())]:
        if not _is_number(value) or value < 0:
            raise UserError(f"--baseline {path}: tolerance.{name} is {_short(value)}; it must be a finite, "
                            f"non-negative number; {fix}")


def _check_cell(path: str, index: int, cell: Any) -> None:
    where = f"--baseline {path}: cells[{index}]"
    fix = "restore the file (git checkout) or write it again with `msabench check --write-baseline FILE --out DIR`"
    if not isinstance(cell, dict):
        raise UserError(f"{where} is {_short(cell)}, not a cell object; {fix}")
    for key in ("table", "row", "column"):
        if not isinstance(cell.get(key), str) or not cell[key]:
            raise UserError(f"{where}: '{key}' must be a non-empty string (it is {_short(cell.get(key))}); {fix}")
    if "mean" not in cell:
        raise UserError(f"{where} lacks 'mean'; {fix}")
    if "metric" in cell and not isinstance(cell["metric"], str):
        raise UserError(f"{where}: 'metric' must be a string; {fix}")
    mean, std, n = cell["mean"], cell.get("std"), cell.get("n")
    if mean is not None and not _is_number(mean):  # None: the metric was undefined when written
        raise UserError(f"{where}: mean is {_short(mean)}; it must be a finite number or null; {fix}")
    if std is not None and (not _is_number(std) or std < 0):
        raise UserError(f"{where}: std is {_short(std)}; it must be a finite non-negative number or null; {fix}")
    if n is not None and (type(n) is not int or n < 0):
        raise UserError(f"{where}: n is {_short(n)}; it must be a whole number of seeds; {fix}")


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def tolerance(cell: dict[str, Any], tol: dict[str, Any]) -> float:
    floor = float((tol.get("floors") or {}).get(cell.get("metric", ""), tol["floor"]))
    std = cell.get("std")
    return max(float(tol["k"]) * (float(std) if std is not None else 0.0), floor)


@dataclass
class CheckResult:
    """What `check` found: cells that moved (regressions), baseline runs the store lacks, and cells
    absent although every run is there; any of them fails the check."""

    regressions: list[str] = field(default_factory=list)
    missing_runs: list[str] = field(default_factory=list)  # "model datasets seed N" of each
    missing_cells: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.regressions or self.missing_runs or self.missing_cells)


def compare(baseline: dict[str, Any], tables) -> list[str]:
    """One line per baseline cell that does not hold (missing cells included)."""
    regressions, missing = compare_cells(baseline, tables)
    return regressions + missing


def compare_cells(baseline: dict[str, Any], tables) -> tuple[list[str], list[str]]:
    """(one line per cell that moved or became (un)defined, one line per cell the tables lack)."""
    current = _cells(tables)
    tol = baseline["tolerance"]
    lines, missing = [], []
    for c in baseline["cells"]:
        key = (c["table"], c["row"], c["column"])
        where = f"{c['table']} | {c['row']} | {c['column']}"
        now = current.get(key)
        base = c.get("mean")
        if now is None:
            missing.append(f"{where}: missing (baseline {_fmt(base)})")
            continue
        value = now["mean"]
        if base is None or value is None or (isinstance(value, float) and math.isnan(value)):
            if (base is None) != (value is None):
                lines.append(f"{where}: {_fmt(value)} vs baseline {_fmt(base)} (defined only in one)")
            continue
        t = tolerance(c, tol)
        if abs(value - base) > t:
            lines.append(f"{where}: {_fmt(value)} vs baseline {_fmt(base)}: moved {value - base:+.4g}, "
                         f"tolerance {t:.4g} = max(k x the baseline's std over seeds (ddof=1), floor)")
    return lines, missing


def missing_runs(baseline: dict[str, Any], out: str) -> list[str]:
    """The baseline's runs that are not done in the store at `out`, as "model datasets seed N"."""
    from msabench.core.types import RunSpec
    from msabench.store.runs import Store

    done = {rd.run_id for rd in Store(out).runs() if rd.status() == "done"}
    lacking = []
    for s in baseline["specs"]:
        run_id = s.get("run_id")  # the id it was stored under
        if run_id is None:
            try:
                run_id = RunSpec.from_dict(s).run_id
            except Exception:  # noqa: BLE001 - a spec this msabench cannot rebuild: its run is missing
                run_id = None
        if run_id not in done:
            lacking.append(f"{s.get('model')} {'+'.join(s.get('datasets') or ())} seed {s.get('seed')}"
                           + (f" rate {s['rate']:g}" if s.get("rate") else ""))
    return lacking


def _result(baseline: dict[str, Any], out: str, selection: str | None) -> CheckResult:
    lacking = missing_runs(baseline, out)
    try:
        _, tables = tables_of_store(out, selection)
    except UserError:
        if not lacking:
            raise
        tables = []  # no finished run at all: every run is missing
    regressions, missing_cells = compare_cells(baseline, tables)
    # a cell of a missing run is not a finding of its own
    return CheckResult(regressions, lacking, [] if lacking else missing_cells)


def _fmt(x) -> str:
    return "undefined" if x is None else f"{x:.4g}"


def run_specs(specs: Sequence[dict[str, Any]], out: str, *, threads: int, echo: Callable[[str], None]) -> None:
    from msabench.core.types import RunSpec
    from msabench.engine.options import RunOptions
    from msabench.execution.registry import EXECUTORS
    from msabench.store.runs import Store

    runs = [RunSpec.from_dict(s) for s in specs]
    store = Store(out)
    options = RunOptions(device="cpu", precision="fp32", threads=threads)
    outcome = EXECUTORS.get("local")(runs, store, options)
    failed = f", {len(outcome.failed)} failed" if outcome.failed else ""
    echo(f"check: {len(outcome.done)} fresh runs in {out}{failed}")


def check(baseline_path: str, *, out: str | None = None, run: bool = False, keep: bool = False,
          echo: Callable[[str], None] = print) -> CheckResult:
    """`baseline_path` against the store `out` or, with `run`, fresh runs: regressions apart from
    missing runs."""
    baseline = read_baseline(baseline_path)
    selection = baseline.get("selection")
    if not run:
        if out is None:
            raise UserError("give --out DIR (the store to check) or --run (fresh runs)")
        if not Path(out, "runs").is_dir():
            raise UserError(f"no results store at {out} (no {Path(out, 'runs')}): give the store the baseline's runs "
                            "are in, or check fresh runs with --run")
        return _result(baseline, out, selection)
    if not baseline["specs"]:
        raise UserError(f"--baseline {baseline_path}: it lists no specs to run")
    tmp = tempfile.mkdtemp(prefix="msabench-check-")
    try:
        threads = int((baseline.get("run_options") or {}).get("threads") or 1)
        run_specs(baseline["specs"], tmp, threads=threads, echo=echo)
        return _result(baseline, tmp, selection)
    finally:
        if keep:
            echo(f"check: kept the fresh store {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
