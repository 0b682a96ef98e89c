"""Renderers over the Table object: markdown and JSON (LaTeX and CSV come with the templates)."""

from __future__ import annotations

import json

from msabench.report.table import Table, format_cell


def to_markdown(table: Table) -> str:
    groups = [c.group for c in table.columns]
    multi_group = len(set(groups)) > 1
    header = ["model", "seeds"] + [(f"{c.group} {c.label}" if multi_group else c.label) for c in table.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = []
        for col in table.columns:
            cell = row.cells.get(col.key)
            text = format_cell(cell, col)
            if cell is not None and cell.rank == 1:
                text = f"**{text}**"
            elif cell is not None and cell.rank == 2:
                text = f"<u>{text}</u>"
            cells.append(text + (cell.mark if cell is not None else ""))
        label = row.label + (" (published only)" if row.published_only else "")
        lines.append("| " + " | ".join([label, str(row.n_seeds or "-")] + cells) + " |")
    lines += ["", table.caption]
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_json(tables: list[Table]) -> str:
    return json.dumps([t.to_dict() for t in tables], indent=2, sort_keys=True, default=str)


RENDERERS = {"markdown": lambda tables: "\n".join(to_markdown(t) for t in tables), "json": to_json}
