"""`msabench report`: read the store, build tables (generic or a paper template), render, plot."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from msabench.core.config import spec_label
from msabench.core.errors import UserError
from msabench.evaluation.selection import check_rule
from msabench.report.aggregate import RunView, generic_tables
from msabench.report.render import RENDERERS


def _status(rd) -> str:
    status = rd.status
    return status() if callable(status) else status


def load_views(out: str, *, warn=None) -> list[RunView]:
    """The finished runs of the store at `out` (others are ignored)."""
    from msabench.store.runs import Store

    if not Path(out, "runs").is_dir():
        raise UserError(f"no results store at {out} (no {Path(out, 'runs')}): run `msabench run` first, or pass "
                        f"--out DIR (env MSABENCH_OUT)")
    store = Store(out)
    views = []
    for rd in store.runs():
        if _status(rd) != "done":
            continue
        if hasattr(rd, "verify"):
            rd.verify(keep_records=True)  # a damaged done run is named, never silently left out of a mean
        spec = rd.read_spec_dict() if hasattr(rd, "read_spec_dict") else rd.read_spec()
        if not isinstance(spec, dict):
            spec = spec.to_dict()
        try:
            env = rd.read_env()  # verify() above named a damaged or newer-schema env.json
        except FileNotFoundError:  # env.json is informative; a table never needs it
            env = {}
        views.append(RunView(run_id=rd.run_id, spec=spec, records=rd.read_records(),
                             git=str(env.get("git_sha") or ""), env=env, dirty=bool(env.get("git_dirty")),
                             path=str(rd.path)))
    if warn is not None:
        shas = sorted({v.git for v in views if v.git})
        if len(shas) > 1:
            warn(f"warning: the store mixes {len(shas)} git commits ({', '.join(s[:8] for s in shas)}); "
                 "tables may combine different code")
        if any(v.dirty for v in views):
            warn("warning: some runs were made from a checkout with uncommitted changes (git_dirty)")
    return views


def check_rule_applies(rule: str, views: list[RunView], tables: Sequence[str] = ()) -> None:
    """A rule the store's protocols (or the templates' protocols) do not define is refused, never
    quietly replaced: `--selection lodo` on `standard` runs would otherwise report something else."""
    from msabench.protocols import PROTOCOLS

    if tables:
        from msabench.protocols.templates import TEMPLATES

        protocols = {TEMPLATES.get(t).protocol for t in tables}
    else:
        protocols = {v.spec.get("protocol") for v in views}
    known = sorted(p for p in protocols if p in PROTOCOLS)
    refused = [p for p in known if rule not in PROTOCOLS.get(p).selection_rules]
    if refused:
        rules = "; ".join(f"{p} selects with {' or '.join(PROTOCOLS.get(p).selection_rules)}" for p in refused)
        applies = [p for p in known if p not in refused]
        also = f" (it applies to its {', '.join(applies)} runs)" if applies else ""
        raise UserError(f"--selection {rule} does not apply to the store's {', '.join(refused)} runs{also}; {rules}: "
                        "choose one of those, or keep each protocol's runs in a store of its own")


def build_tables(views: list[RunView], *, tables: Sequence[str] = (), selection: str | None = None,
                 compare_paper: bool = False, reference: str | None = None, test: str = "t"):
    if selection is not None:
        check_rule(selection)
        check_rule_applies(selection, views, tables)
    if tables:
        from msabench.protocols.templates import TEMPLATES
        from msabench.report.paper import build_template_table

        return [build_template_table(TEMPLATES.get(t), views, selection=selection, compare_paper=compare_paper,
                                     reference=reference, test=test) for t in tables]
    if compare_paper:
        raise UserError("--compare-paper needs a paper layout: add --table T (list them with `msabench tables`)")
    if not views:
        raise UserError("no finished runs in the store: run `msabench run` first, or pass --out DIR")
    return generic_tables(views, selection, reference=reference, test=test)


def build_report(out: str, *, table: str | Sequence[str] | None = None, fmt: str = "markdown",
                 selection: str | None = None, compare_paper: bool = False, reference: str | None = None,
                 plots: str | None = None, warn=None, terminal: bool = False, test: str | None = None) -> str:
    """`terminal`: the text goes to a terminal (markdown with ANSI emphasis, plain under NO_COLOR)."""
    if fmt not in RENDERERS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(RENDERERS)}")
    if test is not None:  # before reading the store
        from msabench.report.significance import check_test

        check_test(test)
        if reference is None:
            raise UserError(f"--test {test} tests cells against a reference row: add --reference ROW")
    if selection is not None:  # before reading the store (and its warnings)
        check_rule(selection)
    if plots and Path(plots).exists() and not Path(plots).is_dir():  # before reading the store
        raise UserError(f"--plots {plots} is a file, not a folder; give a folder to write the plots into")
    names = [table] if isinstance(table, str) else list(table or ())
    if names:
        from msabench.protocols.templates import TEMPLATES

        for n in names:
            TEMPLATES.get(n)  # unknown names: exit 2 with close matches, before reading the store
    views = load_views(out, warn=warn or (lambda m: print(m, file=sys.stderr)))
    tables = build_tables(views, tables=names, selection=selection, compare_paper=compare_paper, reference=reference,
                          test=test or "t")
    note_gaps(tables, store_gaps(out), out, warn or (lambda m: print(m, file=sys.stderr)))
    if plots:
        from msabench.report.plots import plots_from_store

        try:
            written = plots_from_store(views, plots, selection=selection, out=out)
        except OSError as exc:
            raise UserError(f"--plots {plots}: cannot write the plots there ({exc.strerror or exc}); give a "
                            f"writable folder with free space") from None
        (warn or (lambda m: print(m, file=sys.stderr)))(f"wrote {len(written)} plot files to {plots}")
    if terminal and fmt == "markdown":
        import os

        from msabench.report.render import terminal_markdown

        return terminal_markdown(tables, colours=not os.environ.get("NO_COLOR"))
    return RENDERERS[fmt](tables)


# -- the gaps: runs of the store that are not in the tables --------------------------------------------
def store_gaps(out: str) -> list[dict]:
    """The runs of the store at `out` that are not done (failed, incomplete, running), each as
    {"run_id", "status", "spec" (None when the run failed before writing spec.json), "reason"}."""
    from msabench.store.runs import Store

    gaps = []
    for rd in Store(out).runs():
        status = rd.status()
        if status == "done":
            continue
        try:
            spec = rd.read_spec_dict() if (rd.path / "spec.json").exists() else None
        except Exception:  # noqa: BLE001 - an unreadable spec: counted, not placed in a table
            spec = None
        reason = ""
        if status == "failed":
            try:
                reason = str((rd.read_failed() or {}).get("reason", ""))
            except Exception:  # noqa: BLE001
                reason = "failed.json unreadable"
        gaps.append({"run_id": rd.run_id, "status": status, "spec": spec, "reason": reason})
    return gaps


def _belongs(spec: dict, meta: dict) -> bool:
    """Whether a run with `spec` would be part of the table with `meta` (generic or template)."""
    if spec.get("protocol") != meta.get("protocol"):
        return False
    datasets = meta.get("datasets") or []
    if datasets and not set(spec.get("datasets") or ()) <= set(datasets):
        return False
    if "setting" in meta and meta["setting"] != spec.get("setting"):
        return False
    if "rate" in meta and float(spec.get("rate") or 0.0) != float(meta["rate"] or 0.0):
        return False
    return True


def note_gaps(tables, gaps: list[dict], out: str, warn) -> None:
    """Say what is missing: a note under each table naming its runs that failed or are unfinished
    (model, seeds, status, the error's type), and one warning line for the whole store."""
    if not gaps:
        return
    words = {"failed": "failed", "incomplete": "incomplete (re-run the sweep to redo)", "running": "still running"}
    for table in tables:
        groups: dict[tuple[str, str, str], list[str]] = {}
        for g in gaps:
            if g["spec"] is None or not _belongs(g["spec"], table.meta):
                continue
            kind = g["reason"].split(":", 1)[0].strip() if g["status"] == "failed" else ""
            groups.setdefault((spec_label(g["spec"]), g["status"], kind), []).append(str(g["spec"].get("seed")))
        if groups:
            parts = [f"{model} seed{'s' if len(seeds) > 1 else ''} {', '.join(sorted(seeds, key=_seed_order))} "
                     f"{words.get(status, status)}{f' ({kind})' if kind else ''}"
                     for (model, status, kind), seeds in sorted(groups.items())]
            table.notes.append(f"Missing from this table: {'; '.join(parts)}. `msabench status --out {out}` lists "
                               "them; `msabench run ... --retry-failed` reruns failed runs.")
    counts: dict[str, int] = {}
    for g in gaps:
        counts[g["status"]] = counts.get(g["status"], 0) + 1
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    warn(f"warning: {len(gaps)} run(s) of the store are not in these tables ({shown}); `msabench status --out {out}` "
         "lists them, `msabench run ... --retry-failed` reruns failed ones")


def _seed_order(seed: str):
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)
