"""Renderers over the Table object: markdown, LaTeX (booktabs), CSV and JSON.

Every renderer takes a list of tables and returns text. Best values are bold and second best
underlined (per part of compound cells), significance marks follow the value, "published only"
rows say so. The LaTeX output is a `table` environment per table that needs
`\\usepackage{booktabs,graphicx}` (and `amssymb` for check marks; the text is pure ASCII); the CSV output is tidy:
one line per row x column x part, with the numbers in the shown unit and at full precision.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from msabench.report.table import Cell, Column, Row, Table, format_part

# -- shared helpers -------------------------------------------------------------------------------


def _row_label(row: Row) -> str:
    return row.shown_label + (" (published only)" if row.kind == "published" or row.published_only else "")


def _cell_parts(cell: Cell | None) -> list[Cell | None]:
    if cell is None:
        return [None]
    return list(cell.parts) if cell.parts else [cell]


def _multi_group(table: Table) -> bool:
    return len({c.group for c in table.columns}) > 1 or any(c.subgroup for c in table.columns)


def _spans(values: list[str]) -> list[tuple[str, int]]:
    """Runs of equal neighbours: ["a", "a", "b"] -> [("a", 2), ("b", 1)]."""
    out: list[tuple[str, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def _has_row_groups(table: Table) -> bool:
    return any(r.group for r in table.rows)


# -- markdown -------------------------------------------------------------------------------------


# How best and second-best values are marked: in a markdown file (bold, <u> underline, as GitHub
# renders it), on a terminal (ANSI bold and underline), and on a terminal without colours (NO_COLOR).
EMPHASIS = {"markdown": ("**{}**", "<u>{}</u>"), "terminal": ("\x1b[1m{}\x1b[0m", "\x1b[4m{}\x1b[0m"),
            "plain": ("**{}**", "_{}_")}


def _md_cell(cell: Cell | None, col: Column, row: Row, style: str = "markdown") -> str:
    best, second = EMPHASIS[style]
    texts = []
    for part in _cell_parts(cell):
        text = format_part(part, col, signed=row.kind == "delta", pm="±" if cell is not None and cell.parts else " ± ")
        if part is not None and text != "-":
            if part.rank == 1:
                text = best.format(text)
            elif part.rank == 2:
                text = second.format(text)
            text += part.mark
        texts.append(text)
    return "/".join(texts)


def to_markdown(table: Table, style: str = "markdown") -> str:
    """`style`: "markdown" (a file), "terminal" or "plain" (a terminal without colours): see EMPHASIS."""
    multi = _multi_group(table)

    def head(c: Column) -> str:
        if not multi:
            return c.label
        return " ".join(x for x in (c.group, c.subgroup, c.label) if x)

    header = ["model", "seeds"] + [head(c) for c in table.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---:"] + ["---:"] * len(table.columns)) + "|"]
    groups = _has_row_groups(table)
    current = None
    for row in table.rows:
        if groups and row.group != current:
            current = row.group
            lines.append("| " + " | ".join([f"*{row.group or '—'}*", ""] + [""] * len(table.columns)) + " |")
        cells = [_md_cell(row.cells.get(col.key), col, row, style) for col in table.columns]
        seeds = str(row.n_seeds) if row.kind == "ours" and row.n_seeds else "-"
        lines.append("| " + " | ".join([_md_escape(_row_label(row)), seeds] + cells) + " |")
    lines += ["", table.caption]
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


# -- LaTeX ----------------------------------------------------------------------------------------
_TEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
_TEX_UNICODE = {"→": r"$\rightarrow$", "±": r"$\pm$", "†": r"\dag{}", "‡": r"\ddag{}", "◇": r"$\diamond$",
                "≠": r"$\neq$", "Δ": r"$\Delta$", "×": r"$\times$", "✓": r"$\checkmark$", "—": "---", "–": "--",
                "−": "$-$", "·": r"$\cdot$", "<": "$<$", ">": "$>$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
                "≤": r"$\leq$", "≥": r"$\geq$"}


def tex_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ch in _TEX_UNICODE:
            out.append(_TEX_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")  # anything pdflatex cannot typeset without extra packages
    return "".join(out)


def _tex_part(part: Cell | None, col: Column, row: Row, compound: bool) -> str:
    if part is None or part.empty:
        return "-"
    if part.text is not None:
        text = tex_escape(part.text)
    else:
        from msabench.report.table import format_number

        text = format_number(part.mean, col, signed=row.kind == "delta")
        if row.kind != "delta" and part.std is not None and part.n > 1:
            text += r"{\scriptsize$\pm$" + format_number(part.std, col) + "}"
    if part.rank == 1:
        text = r"\textbf{" + text + "}"
    elif part.rank == 2:
        text = r"\underline{" + text + "}"
    if part.mark:
        text += "$^{" + part.mark.replace("*", r"\ast") + "}$"
    if part.flag:
        text += "$^{" + tex_escape(part.flag) + "}$"
    return text


def to_latex(table: Table) -> str:
    cols = table.columns
    n = len(cols) + 1
    lines = [f"% {table.id}: needs \\usepackage{{booktabs,graphicx}} (and amssymb for \\checkmark)",
             r"\begin{table}[t]", r"\centering", r"\caption{" + tex_escape(table.title) + ". "
             + tex_escape(table.caption) + "}", r"\label{tab:" + re.sub(r"[^A-Za-z0-9:+.-]", "-", table.id) + "}"]
    # shrink to the line width only when wider (graphicx's \width inside \resizebox)
    lines.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    lines.append(r"\begin{tabular}{l" + "r" * len(cols) + "}")
    lines.append(r"\toprule")
    for level in ("group", "subgroup"):
        values = [getattr(c, level) for c in cols]
        if not any(values):
            continue
        cells, rules, start = [""], [], 2
        for value, width in _spans(values):
            cells.append(r"\multicolumn{" + str(width) + "}{c}{" + tex_escape(value) + "}" if value else
                         " & ".join([""] * width) if width > 1 else "")
            if value:
                rules.append(r"\cmidrule(lr){" + f"{start}-{start + width - 1}" + "}")
            start += width
        lines.append(" & ".join(cells) + r" \\")
        if rules:
            lines.append(" ".join(rules))
    arrows = {"max": r"$\uparrow$", "min": r"$\downarrow$"}
    lines.append(" & ".join(["Model"] + [tex_escape(c.label) + (" " + arrows[c.direction] if c.scale == "raw"
                                                                 and c.direction in arrows else "")
                                         for c in cols]) + r" \\")
    lines.append(r"\midrule")
    groups = _has_row_groups(table)
    current = None
    first = True
    for row in table.rows:
        if groups and row.group != current:
            if not first:
                lines.append(r"\midrule")
            current = row.group
            lines.append(r"\multicolumn{" + str(n) + "}{l}{\\textit{" + tex_escape(row.group or "") + "}}" + r" \\")
        first = False
        cells = []
        for col in cols:
            cell = row.cells.get(col.key)
            parts = _cell_parts(cell)
            cells.append("/".join(_tex_part(p, col, row, len(parts) > 1) for p in parts))
        label = tex_escape(_row_label(row))
        if row.kind in ("paper", "delta"):
            label = r"\quad\textit{" + label + "}"
        lines.append(" & ".join([label] + cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}}")
    if table.notes:
        lines.append(r"\par\smallskip{\footnotesize " + " ".join(tex_escape(x) for x in table.notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# The rendered LaTeX is pure ASCII (tex_escape), so no font or input encoding package is needed.
LATEX_PREAMBLE = (r"\documentclass{article}" "\n" r"\usepackage{booktabs,graphicx,amssymb}" "\n"
                  r"\usepackage[margin=1.5cm,landscape]{geometry}" "\n")


def latex_document(body: str) -> str:
    """A standalone document around rendered tables (for compiling and previewing)."""
    return LATEX_PREAMBLE + r"\begin{document}" + "\n" + body + r"\end{document}" + "\n"


# -- CSV ------------------------------------------------------------------------------------------
CSV_FIELDS = ("table", "row", "row_label", "row_caveat", "row_group", "row_kind", "n_seeds", "column", "column_group",
              "column_subgroup", "column_label", "part", "metric", "scale", "mean", "std", "n", "published",
              "rank", "mark", "text")


def _csv_number(value: float | None, col: Column, std: bool = False) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value * 100 if col.scale == "percent" else value)


def table_records(tables: list[Table]) -> Iterator[dict[str, Any]]:
    """One dict per shown cell part (the CSV_FIELDS), numbers as shown (percent scaled), None when absent:
    the rows of `report --format csv` and of the Python API's table DataFrames."""
    for t in tables:
        for row in t.rows:
            for col in t.columns:
                cell = row.cells.get(col.key)
                parts = _cell_parts(cell)
                for i, part in enumerate(parts):
                    if part is None:
                        continue
                    metric = col.parts[i] if i < len(col.parts) else (col.metric or col.key)
                    yield dict(zip(CSV_FIELDS, (
                        t.id, row.key, row.label, row.caveat, row.group, row.kind, row.n_seeds or None, col.key,
                        col.group, col.subgroup, col.label, i, metric, col.scale, _csv_number(part.mean, col),
                        _csv_number(part.std, col), part.n or None, _csv_number(part.published, col),
                        part.rank or None, part.mark + part.flag, part.text or "",
                    )))


def to_csv(tables: list[Table]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for record in table_records(tables):
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in record.values()])
    return buf.getvalue()


# -- JSON -----------------------------------------------------------------------------------------


def _clean(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


_CELL_DEFAULTS = {"mean": None, "std": None, "n": 0, "text": None, "published": None, "mark": "", "flag": "", "rank": 0,
                  "parts": []}


def _compact_cell(cell: dict) -> dict:
    out = {k: v for k, v in cell.items() if k not in _CELL_DEFAULTS or v != _CELL_DEFAULTS[k]}
    if out.get("parts"):
        out["parts"] = [_compact_cell(p) for p in out["parts"]]
    return out


def to_json(tables: list[Table]) -> str:
    """A list of tables (Table.to_dict()); cell fields at their defaults are left out."""
    data = []
    for t in tables:
        d = _clean(t.to_dict())
        for row in d["rows"]:
            row["cells"] = {k: _compact_cell(c) for k, c in row["cells"].items()}
            if not row["caveat"]:
                del row["caveat"]
        data.append(d)
    return json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"


def terminal_markdown(tables: list[Table], colours: bool) -> str:
    """The markdown tables as `report` prints them on a terminal: ANSI emphasis, never raw <u> tags."""
    return "\n".join(to_markdown(t, "terminal" if colours else "plain") for t in tables)


RENDERERS = {
    "markdown": lambda tables: "\n".join(to_markdown(t) for t in tables),
    "latex": lambda tables: "\n".join(to_latex(t) for t in tables),
    "csv": to_csv,
    "json": to_json,
}
