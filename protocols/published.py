"""The papers' published numbers as data: (paper, table, row, column, value), with their source.

One TOML file per paper (`published_<paper>.toml` beside this module), transcribed as printed: each
row's `values` string lists the printed cells in the order of the table's `columns`; a cell is a
number, `-` (empty in the paper), `a/b` (a compound cell, e.g. Acc-2 "has0/non0" or two source
domains) or `m±s` (mean and std). `corrections` replace a cell whose printed text is an obvious typo
(with a `note`). `match` (default: the row label and the values) is text of the paper that the
tests look for, so a transcription error fails a test. Values are kept as printed (percent where the
paper prints percent); the templates say each column's scale. Torch-free.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PAPERS = ("s2lif", "emt-dlfr", "mica", "m3sa", "mtmd")
_HERE = Path(__file__).resolve().parent
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class Published:
    """One published number: part `part` of the compound cell (row, column) of a paper's table."""

    paper: str
    table: str
    row: str  # the row's id: "group/label" when the table has row groups, else the label
    label: str  # the row as the paper prints it
    group: str
    column: str
    part: int  # 0 for simple cells; 0, 1 for "a/b"
    value: float  # as printed (percent or fraction)
    std: float | None = None
    printed: str = ""
    note: str = ""


@dataclass(frozen=True)
class PublishedRow:
    paper: str
    table: str
    id: str
    label: str
    group: str
    values: str
    match: tuple[str, ...]
    note: str = ""


def _file(paper: str) -> Path:
    return _HERE / f"published_{paper.replace('-', '_')}.toml"


@cache
def _load(paper: str) -> dict[str, Any]:
    with open(_file(paper), "rb") as fh:
        data = tomllib.load(fh)
    if data.get("paper") != paper:
        raise ValueError(f"{_file(paper)}: paper is {data.get('paper')!r}, expected {paper!r}")
    return data


def _row_id(row: dict[str, Any]) -> str:
    return f"{row['group']}/{row['row']}" if row.get("group") else row["row"]


def _parse_token(token: str) -> list[tuple[float | None, float | None]]:
    parts = []
    for piece in token.split("/"):
        if piece in ("-", "?", ""):
            parts.append((None, None))
            continue
        std = None
        if "±" in piece:
            piece, std_text = piece.split("±", 1)
            std = float(std_text)
        if not _NUMBER.match(piece):
            raise ValueError(f"cannot read the printed cell {token!r}")
        parts.append((float(piece), std))
    return parts


@cache
def published_rows(paper: str, table: str) -> tuple[PublishedRow, ...]:
    out = []
    for t in _load(paper)["tables"]:
        if str(t["table"]) != str(table):
            continue
        for row in t["rows"]:
            match = row.get("match", f"{row['row']} {row['values']}")
            out.append(PublishedRow(paper, str(table), _row_id(row), row["row"], row.get("group", ""),
                                    row["values"], tuple(match) if isinstance(match, list) else (match,),
                                    row.get("note", "")))
    return tuple(out)


@cache
def published(paper: str, table: str) -> tuple[Published, ...]:
    """Every published number of one table (raises ValueError on a malformed file)."""
    for t in _load(paper)["tables"]:
        if str(t["table"]) != str(table):
            continue
        columns = t["columns"]
        out = []
        seen = set()
        for row in t["rows"]:
            rid = _row_id(row)
            if rid in seen:
                raise ValueError(f"{paper} table {table}: row {rid!r} twice")
            seen.add(rid)
            tokens = row["values"].split()
            if len(tokens) != len(columns):
                raise ValueError(f"{paper} table {table} row {rid!r}: {len(tokens)} cells for "
                                 f"{len(columns)} columns")
            corrections = row.get("corrections", {})
            for column, token in zip(columns, tokens):
                for part, (value, std) in enumerate(_parse_token(token)):
                    if column in corrections and part == 0:
                        value = float(corrections[column])
                    if value is None:
                        continue
                    out.append(Published(paper, str(table), rid, row["row"], row.get("group", ""), column, part,
                                         value, std, token, row.get("note", "")))
        return tuple(out)
    raise KeyError(f"{paper} has no published table {table!r}")


def table_info(paper: str, table: str) -> dict[str, Any]:
    for t in _load(paper)["tables"]:
        if str(t["table"]) == str(table):
            return {"paper": paper, "table": str(table), "caption": t.get("caption", ""),
                    "columns": list(t["columns"]), "title": _load(paper).get("title", ""),
                    "source": _load(paper).get("source", "")}
    raise KeyError(f"{paper} has no published table {table!r}")


def lookup(paper: str, table: str) -> dict[tuple[str, str, int], Published]:
    """{(row id, column, part): Published} of one table."""
    return {(p.row, p.column, p.part): p for p in published(paper, table)}


def normalise_text(text: str) -> str:
    """Paper text for matching: Unicode math letters folded (NFKC), <b> tags and all whitespace removed."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"</?b>", "", text)
    return re.sub(r"\s+", "", text)
