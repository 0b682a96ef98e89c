"""`msabench report`: read the store, build tables (generic or a paper template), render, plot."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from msabench.errors import UserError
from msabench.report.aggregate import RunView, generic_tables
from msabench.report.render import RENDERERS
from msabench.selection import RULES


def _status(rd) -> str:
    status = rd.status
    return status() if callable(status) else status


def load_views(out: str, *, warn=None) -> list[RunView]:
    """The finished runs of the store at `out` (others are ignored)."""
    from msabench.store import Store

    if not Path(out, "runs").is_dir():
        raise UserError(f"no results store at {out} (no {Path(out, 'runs')}): run `msabench run` first, or pass "
                        f"--out DIR (env MSABENCH_OUT)")
    store = Store(out)
    views = []
    for rd in store.runs():
        if _status(rd) != "done":
            continue
        spec = rd.read_spec_dict() if hasattr(rd, "read_spec_dict") else rd.read_spec()
        if not isinstance(spec, dict):
            spec = spec.to_dict()
        try:
            env = rd.read_env()
        except Exception:  # noqa: BLE001 - env.json is informative; a table never needs it
            env = {}
        views.append(RunView(run_id=rd.run_id, spec=spec, records=rd.read_records(),
                             git=str(env.get("git_sha") or ""), env=env, dirty=bool(env.get("git_dirty"))))
    if warn is not None:
        shas = sorted({v.git for v in views if v.git})
        if len(shas) > 1:
            warn(f"warning: the store mixes {len(shas)} git commits ({', '.join(s[:8] for s in shas)}); "
                 "tables may combine different code")
        if any(v.dirty for v in views):
            warn("warning: some runs were made from a checkout with uncommitted changes (git_dirty)")
    return views


def _family_of(name: str) -> str:
    try:
        from msabench.data.datasets import family_of

        return family_of(name)
    except Exception:  # noqa: BLE001 - fall back on the name (synth-dg/mosi -> mosi)
        from msabench.report.aggregate import canonical

        return canonical(name)


def _synthetic(name: str) -> bool:
    return name.startswith("synth-")


def build_tables(views: list[RunView], *, tables: Sequence[str] = (), selection: str | None = None,
                 compare_paper: bool = False, reference: str | None = None):
    if selection is not None and selection not in RULES:
        raise UserError(f"--selection {selection!r}: use one of {', '.join(RULES)}")
    if tables:
        from msabench.protocols.templates import TEMPLATES
        from msabench.report.paper import build_template_table

        return [build_template_table(TEMPLATES.get(t), views, selection=selection, compare_paper=compare_paper,
                                     reference=reference) for t in tables]
    if compare_paper:
        raise UserError("--compare-paper needs a paper layout: add --table T (list them with `msabench tables`)")
    if not views:
        raise UserError("no finished runs in the store: run `msabench run` first, or pass --out DIR")
    return generic_tables(views, selection, _family_of, _synthetic, reference=reference)


def build_report(out: str, *, table: str | Sequence[str] | None = None, fmt: str = "markdown",
                 selection: str | None = None, compare_paper: bool = False, reference: str | None = None,
                 plots: str | None = None, warn=None) -> str:
    if fmt not in RENDERERS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(RENDERERS)}")
    names = [table] if isinstance(table, str) else list(table or ())
    if names:
        from msabench.protocols.templates import TEMPLATES

        for n in names:
            TEMPLATES.get(n)  # unknown names: exit 2 with close matches, before reading the store
    views = load_views(out, warn=warn or (lambda m: print(m, file=sys.stderr)))
    tables = build_tables(views, tables=names, selection=selection, compare_paper=compare_paper, reference=reference)
    if plots:
        from msabench.plots import plots_from_store

        written = plots_from_store(views, plots, selection=selection, out=out)
        (warn or (lambda m: print(m, file=sys.stderr)))(f"wrote {len(written)} plot files to {plots}")
    return RENDERERS[fmt](tables)
