"""Significance marks against a reference row (docs/architecture.md §10): paired over seeds, Holm across a table."""

from __future__ import annotations

import math
from collections.abc import Sequence

from msabench.core.errors import UserError
from msabench.report.table import Column, Row, Table

ALPHA = 0.05
NOT_TESTED = ("params",)  # descriptive columns (parameter counts) are not tested
SeedValues = dict[tuple[str, str, int], dict[int, float]]  # (row key, column key, part) -> {seed: value}


def mark_significance(table: Table, values: SeedValues, reference: str, alpha: float = ALPHA) -> None:
    """Mark (`*`) the cells of `ours` rows that differ from the reference row: a paired t-test over
    the seeds both rows have (at least 2), Holm-adjusted across every test in the table."""
    from msabench.stats import holm, paired_t

    ours = [r for r in table.rows if r.kind == "ours"]
    ref = find_row(ours, reference, table.meta.get("row_models", {}))
    tests: list[tuple[Row, Column, int, float, int]] = []
    for row in ours:
        if row is ref:
            continue
        for col in table.columns:
            if col.metric in NOT_TESTED:
                continue
            n_parts = max(1, len(col.parts))
            for part in range(n_parts):
                a, b = values.get((row.key, col.key, part), {}), values.get((ref.key, col.key, part), {})
                seeds = sorted(set(a) & set(b))
                if len(seeds) < 2:
                    continue
                _, p = paired_t([a[s] for s in seeds], [b[s] for s in seeds])
                tests.append((row, col, part, p, len(seeds)))
    adjusted = holm([t[3] for t in tests]) if tests else []
    results = []
    for (row, col, part, p, n), p_adj in zip(tests, adjusted):
        cell = row.cells.get(col.key)
        if cell is None:
            continue
        target = cell.parts[part] if cell.parts else cell
        if not math.isnan(p_adj) and p_adj < alpha:
            target.mark = "*"
        results.append({"row": row.key, "column": col.key, "part": part, "p": _round(p),
                        "p_holm": None if math.isnan(p_adj) else _round(float(p_adj)), "n_seeds": n})
    ref.note = "reference"
    table.meta["reference"] = {"row": ref.key, "label": ref.label, "tests": results}
    table.caption += (f" *: differs from {ref.label} at p < {alpha:g} (paired t-test over matched seeds, "
                      f"Holm-adjusted across the table's {len(tests)} tests).")


def _round(p: float) -> float | None:
    """p-values to 4 significant digits: stable across scipy versions (golden files)."""
    return None if p is None or math.isnan(p) else float(f"{p:.4g}")


def find_row(rows: Sequence[Row], reference: str, models: dict[str, str]) -> Row:
    """The row named by `reference`: its key or label, else the only row of that model spec/variant."""
    for row in rows:
        if reference in (row.key, row.label):
            return row
    by_model = [row for row in rows if models.get(row.key) == reference]
    if len(by_model) == 1:
        return by_model[0]
    if len(by_model) > 1:
        raise UserError(f"--reference {reference!r} names {len(by_model)} rows; give one of: "
                        f"{', '.join(r.label for r in by_model)}")
    known = sorted({models.get(r.key) or r.label for r in rows} | {r.label for r in rows})
    raise UserError(f"--reference {reference!r} names no row with runs in this table; use one of: "
                    f"{', '.join(known) or '(no rows with runs)'}")
