"""The Table object every report renders from (extended by templates, never replaced)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Column:
    key: str
    label: str
    group: str = ""  # column group (a domain, a setting, ...)
    metric: str = ""
    direction: str = "max"  # "max" | "min": which way is better
    scale: str = "percent"  # "percent" (x100) | "fraction" | "raw"
    digits: int = 2


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    text: str | None = None  # preformatted (e.g. "has0/non0" pairs)
    published: float | None = None  # the paper's number, same scale as mean
    mark: str = ""  # significance mark against the reference row
    rank: int = 0  # 1 best, 2 second (by the column's direction)

    @property
    def empty(self) -> bool:
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
        """Best and second best per column, by the column's direction (ties share a rank)."""
        for col in self.columns:
            values = sorted({c.mean for r in self.rows if (c := r.cells.get(col.key)) and c.mean is not None
                             and not math.isnan(c.mean)}, reverse=(col.direction == "max"))
            for row in self.rows:
                cell = row.cells.get(col.key)
                if cell is None or cell.mean is None or math.isnan(cell.mean):
                    continue
                cell.rank = values.index(cell.mean) + 1 if cell.mean in values[:2] else 0


def format_number(value: float | None, column: Column) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column.scale == "percent":
        return f"{100 * value:.{column.digits}f}"
    return f"{value:.{column.digits if column.scale == 'raw' else max(column.digits, 3)}f}"


def format_cell(cell: Cell | None, column: Column, with_std: bool = True) -> str:
    if cell is None or cell.empty:
        return "-"
    if cell.text is not None:
        return cell.text
    text = format_number(cell.mean, column)
    if with_std and cell.std is not None and cell.n > 1:
        text += f" ± {format_number(cell.std, column)}"
    return text
