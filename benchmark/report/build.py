"""`msabench report`: read the store, build tables, render."""

from __future__ import annotations

from msabench.errors import UserError
from msabench.report.aggregate import RunView, generic_tables
from msabench.report.render import RENDERERS
from msabench.selection import RULES


def load_views(out: str) -> list[RunView]:
    from msabench.store import Store

    store = Store(out, must_exist=True)
    views = []
    for rd in store.runs():
        if rd.status() != "done":
            continue
        views.append(RunView(run_id=rd.run_id, spec=rd.read_spec(), records=rd.read_records(),
                             git=rd.read_env().get("git_sha", "")))
    return views


def _family_of(name: str) -> str:
    from msabench.data.datasets import family_of

    return family_of(name)


def _synthetic(name: str) -> bool:
    return name.startswith("synth-")


def build_report(out: str, *, table: str | None = None, fmt: str = "markdown", selection: str | None = None) -> str:
    if fmt not in RENDERERS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(RENDERERS)}")
    if selection is not None and selection not in RULES:
        raise UserError(f"--selection {selection!r}: use one of {', '.join(RULES)}")
    if table is not None:
        from msabench.protocols.templates import TEMPLATES

        TEMPLATES.get(table)
        raise UserError(f"table {table!r}: paper templates are not rendered yet; run without --table")
    views = load_views(out)
    if not views:
        raise UserError(f"no finished runs in {out}: run `msabench run` first, or pass --out")
    tables = generic_tables(views, selection, _family_of, _synthetic)
    return RENDERERS[fmt](tables)
