"""`msabench export`: the store as one tidy table (docs/architecture.md §3, §9).

One row per run x epoch x split x domain x (evaluation rate) x metric, losses included (kind
"loss", metric = the loss name), with the run's identity as columns. Only done runs are exported.
Schema versions are checked by the store's readers: a record or spec of an unknown schema stops
the export with the store's error, never a silent misread. Torch-free; CSV needs nothing else,
parquet needs pyarrow (`pip install 'msabench[parquet]'`).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msabench.core.config import spec_label
from msabench.core.errors import UserError
from msabench.data.names import all_synthetic

COLUMNS = ("run_id", "protocol", "protocol_version", "setting", "model", "variant", "datasets", "data",
           "seed", "rate", "modalities", "label_rule", "task", "epoch", "split", "domain", "eval_rate", "kind",
           "metric", "value")
FORMATS = ("csv", "parquet")
_N_IDENTITY = COLUMNS.index("epoch")  # the run's identity columns come first
_TYPES = {"seed": int, "epoch": int, "rate": float, "eval_rate": float, "value": float}


def run_identity(run_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The identity columns of a run (the first columns of every export row)."""
    model = str(spec.get("model", ""))  # NAME[@VARIANT]; the `model` column adds the inline keys
    datasets = list(spec.get("datasets") or [])
    return {
        "run_id": run_id, "protocol": spec.get("protocol", ""),
        "protocol_version": str(spec.get("protocol_version", "")), "setting": spec.get("setting") or "",
        "model": spec_label(spec), "variant": model.split("@", 1)[1] if "@" in model else "",
        "datasets": "+".join(datasets), "data": "synthetic" if all_synthetic(datasets) else "real",
        "seed": int(spec.get("seed", 0)), "rate": float(spec.get("rate") or 0.0),
        "modalities": ",".join(spec.get("modalities") or []), "label_rule": spec.get("label_rule", ""),
        "task": spec.get("task", ""),
    }


def _identity_cells(run_id: str, spec: dict[str, Any]) -> tuple[Any, ...]:
    identity = run_identity(run_id, spec)
    return tuple(identity[c] for c in COLUMNS[:_N_IDENTITY])


def _record_parts(rec: dict[str, Any]) -> tuple[tuple[Any, ...], list[tuple[str, str, float]]]:
    """A record's (epoch, split, domain, eval_rate) cells and its (kind, metric, value) rows."""
    where = (int(rec["epoch"]), rec["split"], rec["domain"], float(rec.get("rate") or 0.0))
    rows = [(kind, name, float("nan") if value is None else float(value))
            for kind, values in (("metric", rec.get("metrics") or {}), ("loss", rec.get("loss") or {}))
            for name, value in sorted(values.items())]
    return where, rows


def record_tuples(run_id: str, spec: dict[str, Any], records) -> Iterator[tuple[Any, ...]]:
    """The export rows of one run's records (all of them, or the ones passed: e.g. one epoch's), as
    tuples in COLUMNS order."""
    base = _identity_cells(run_id, spec)
    for rec in records:
        where, values = _record_parts(rec)
        for row in values:
            yield base + where + row


def record_rows(run_id: str, spec: dict[str, Any], records) -> Iterator[dict[str, Any]]:
    """`record_tuples` as dicts keyed by COLUMNS."""
    for cells in record_tuples(run_id, spec, records):
        yield dict(zip(COLUMNS, cells))


def run_rows(run_dir) -> Iterator[dict[str, Any]]:
    return record_rows(run_dir.run_id, run_dir.read_spec_dict(), run_dir.read_records())


def _verified_runs(out: str | Path, *, all_first: bool = True) -> Iterator:
    """The done runs of the store at `out`, in run-id order, each checked by `RunDir.verify`.
    `all_first`: every run is checked before the first is handed out (a damaged done run is named before any
    row, never silently left out); else each as it is reached, its records kept for the read that
    follows (one parse per run)."""
    from msabench.store.runs import Store

    done = list(Store(out, must_exist=True).runs("done"))
    if all_first:
        for rd in done:
            rd.verify()
        yield from done
        return
    for rd in done:
        rd.verify(keep_records=True)
        yield rd


def rows(out: str | Path) -> Iterator[dict[str, Any]]:
    """Every row of every done run of the store at `out`, in run-id order."""
    for rd in _verified_runs(out):
        yield from run_rows(rd)


def records_frame(row_dicts, columns: tuple[str, ...] = COLUMNS):
    """Export rows as a pandas DataFrame, with the column types the parquet export uses."""
    import pandas as pd

    frame = pd.DataFrame(list(row_dicts), columns=list(columns))
    return frame.astype({c: ("int64" if t is int else "float64") for c, t in _TYPES.items() if c in columns})


def to_pandas(out: str | Path):
    """The tidy table as a pandas DataFrame (the rows `msabench export` writes)."""
    return records_frame(rows(out))


class _CsvCells:
    """CSV text of a few cells at a time, quoted exactly as `csv.writer` quotes them (the export's
    dialect), with the cells that repeat (a run's identity, metric names) formatted once."""

    def __init__(self) -> None:
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="")
        self._names: dict[tuple[str, str], str] = {}

    def join(self, cells) -> str:
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerow(cells)
        return self._buf.getvalue()

    def name(self, kind: str, name: str) -> str:
        key = (kind, name)
        if key not in self._names:
            self._names[key] = self.join((kind, name))
        return self._names[key]


def run_csv_lines(cells: _CsvCells, run_id: str, spec: dict[str, Any], records) -> list[str]:
    """The CSV lines of one run's export rows, equal to `csv.writer` over `record_tuples` (a test
    holds them equal). One line is a prefix formatted once per record plus the metric's name and
    value: `csv.writer` over 20 cells per row was most of a large export's time."""
    identity = cells.join(_identity_cells(run_id, spec))
    lines = []
    for rec in records:
        where, values = _record_parts(rec)
        prefix = f"{identity},{cells.join(where)},"
        # str(float) is what csv.writer writes: repr, the shortest text that reads back the same float
        lines += [f"{prefix}{cells.name(kind, name)},{value}\n" for kind, name, value in values]
    return lines


def write_csv(out: str | Path, stream, *, verified_first: bool = True) -> int:
    """The tidy CSV into `stream`. `verified_first`: check every done run before the first row (for a
    stream that cannot be taken back, such as stdout); else each run is checked as it is reached,
    which reads its records once instead of twice (a file written through a temporary file, which a
    damaged run discards)."""
    cells = _CsvCells()
    stream.write(cells.join(COLUMNS) + "\n")
    n = 0
    for rd in _verified_runs(out, all_first=verified_first):
        lines = run_csv_lines(cells, rd.run_id, rd.read_spec_dict(), rd.read_records())
        stream.write("".join(lines))
        n += len(lines)
    return n


def write_parquet(out: str | Path, path: str | Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("--format parquet needs pyarrow: pip install 'msabench[parquet]' (or use --format "
                        "csv)") from None
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for row in rows(out):
        for c in COLUMNS:
            columns[c].append(row[c])
    types = {c: (pa.int64() if _TYPES.get(c) is int else pa.float64() if _TYPES.get(c) is float else pa.string())
             for c in COLUMNS}
    table = pa.table({c: pa.array(columns[c], type=types[c]) for c in COLUMNS})
    from msabench.store.io import atomic_write_bytes

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue().to_pybytes())
    return table.num_rows


def export(out: str | Path, fmt: str = "csv", output: str | Path | None = None) -> int:
    """Write the table; returns the number of rows. CSV goes to stdout when `output` is None."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use csv or parquet")
    if fmt == "parquet":
        if output is None:
            raise UserError("--format parquet writes a binary file: give -o FILE.parquet")
        return write_parquet(out, output)
    if output is None:
        return write_csv(out, sys.stdout)
    from msabench.store.io import atomic_write_stream

    # Streamed into a temporary file (memory stays flat); a damaged run stops it before the rename.
    return atomic_write_stream(output, lambda f: write_csv(out, f, verified_first=False))
