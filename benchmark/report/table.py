"""The Table object every report renders from (extended by templates, never replaced).

A Table has columns (optionally in groups and subgroups) and rows (optionally in row groups). A
cell holds a mean, its std (ddof=1) over seeds and the number of seeds; a compound cell (a paper's
"has0/non0" or "MOSEI/MELD" cells) holds one such part per metric in `parts`. Values are fractions
(the metric's own unit); the column's `scale` says how they are shown. Rows have a `kind`:
`ours` (measured here), `paper` (the paper's numbers beside ours), `delta` (ours minus the paper's,
real data only) or `published` (a row shown with the paper's numbers only). Ranks (1 best, bold; 2
second, underlined) are computed among `ours` rows only, per part, on the shown (rounded) values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

ROW_KINDS = ("ours", "paper", "delta", "published")


@dataclass
class Column:
    key: str
    label: str
    group: str = ""  # column group (a domain, a setting, ...)
    metric: str = ""
    direction: str = "max"  # "max" | "min": which way is better
    scale: str = "percent"  # "percent" (x100) | "fraction" | "raw"
    digits: int = 2
    subgroup: str = ""  # second header level (e.g. source / target domain)
    parts: list[str] = field(default_factory=list)  # compound cells: one "domain:metric" per part


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    text: str | None = None  # preformatted (overrides the number)
    published: float | None = None  # the paper's number, same scale as mean
    mark: str = ""  # significance mark against the reference row
    flag: str = ""  # a caveat the table's notes explain, e.g. "[g]" (another AUILC grid), "[d]" (degenerate run)
    rank: int = 0  # 1 best, 2 second (by the column's direction)
    parts: list[Cell] = field(default_factory=list)  # compound cells ("a/b"): one Cell per part

    @property
    def empty(self) -> bool:
        if self.parts:
            return all(p.empty for p in self.parts)
        return self.mean is None and self.text is None


@dataclass
class Row:
    key: str
    label: str
    group: str = ""
    cells: dict[str, Cell] = field(default_factory=dict)
    published_only: bool = False
    n_seeds: int = 0
    note: str = ""
    kind: str = "ours"  # ours | paper | delta | published
    caveat: str = ""  # shown beside the label in every format: "synthetic data", "smoke run"

    @property
    def shown_label(self) -> str:
        return self.label + (f" [{self.caveat}]" if self.caveat else "")


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[Row]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rank_cells(self) -> None:
        """Best and second best per column (and per part of compound cells), by the column's
        direction, among the `ours` rows, on the values as shown (ties share a rank)."""
        for col in self.columns:
            n_parts = max([len(c.parts) for r in self.rows if (c := r.cells.get(col.key)) is not None] + [0])
            slots = range(n_parts) if n_parts else [None]
            for slot in slots:
                cells = []
                for row in self.rows:
                    cell = row.cells.get(col.key)
                    if cell is None:
                        continue
                    target = cell if slot is None else (cell.parts[slot] if slot < len(cell.parts) else None)
                    if target is None:
                        continue
                    target.rank = 0
                    if row.kind != "ours" or target.mean is None or math.isnan(target.mean):
                        continue
                    cells.append((shown_value(target.mean, col), target))
                values = sorted({v for v, _ in cells}, reverse=(col.direction == "max"))
                for value, target in cells:
                    target.rank = values.index(value) + 1 if value in values[:2] else 0


def shown_value(value: float, column: Column) -> float:
    """The value as printed (scaled and rounded), for ties."""
    factor = 100.0 if column.scale == "percent" else 1.0
    return round(value * factor, _digits(column))


def _digits(column: Column) -> int:
    return column.digits if column.scale != "fraction" else max(column.digits, 3)


def format_number(value: float | None, column: Column, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    shown = 100 * value if column.scale == "percent" else value
    text = f"{shown:+.{_digits(column)}f}" if signed else f"{shown:.{_digits(column)}f}"
    return text


def format_part(cell: Cell | None, column: Column, with_std: bool = True, signed: bool = False,
                pm: str = " ± ") -> str:
    if cell is None or cell.empty:
        return "-"
    if cell.text is not None:
        return cell.text
    text = format_number(cell.mean, column, signed=signed)
    if with_std and cell.std is not None and cell.n > 1:
        text += f"{pm}{format_number(cell.std, column)}"
    return text + (f" {cell.flag}" if cell.flag else "")
