"""The researcher's Python API over a results store: runs, per-epoch records, selected metrics and
tables as pandas DataFrames (docs/python-api.md; docs/architecture.md §10).

    from msabench import results
    res = results.load("msabench-runs")
    res.runs()          # one row per run: status, failure reason, identity, resolved config keys
    res.records()       # one row per run x epoch x split x domain x metric: what `msabench export` writes
    res.selected("val") # the records at the epoch a selection rule picks, per run
    res.tables()        # the report's Table objects; res.table_frames() the same as DataFrames

It reads the store through the same functions as `msabench export` and `msabench report` (the
store readers, `report.export.record_rows`, `report.build.build_tables`, `report.render.table_records`),
so a notebook and the command line can never disagree. Torch-free.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msabench.report.aggregate import RunView, lodo_helpers, selected_epoch
from msabench.report.export import COLUMNS, record_rows, records_frame, run_identity

IDENTITY = COLUMNS[:COLUMNS.index("epoch")]  # run_id ... task
RUN_COLUMNS = (*IDENTITY, "status", "reason")
SELECTED_COLUMNS = (*IDENTITY, "selection", *COLUMNS[COLUMNS.index("epoch"):])


@dataclass
class Results:
    """A store read once: its done runs (as the report sees them) and the runs that are not done."""

    out: str
    views: list[RunView]
    gaps: list[dict[str, Any]] = field(default_factory=list)  # report.build.store_gaps

    def runs(self):
        """One row per run of the store (done, failed, incomplete, running), with its status, the
        failure reason, the identity columns of the export and one column per resolved config key
        (`train.lr`, `model.hidden_dim`, ...)."""
        import pandas as pd

        rows = [{**run_identity(v.run_id, v.spec), "status": "done", "reason": "", **v.spec.get("config", {})}
                for v in self.views]
        for gap in self.gaps:
            spec = gap["spec"] or {}
            ident = run_identity(gap["run_id"], spec) if spec else {"run_id": gap["run_id"]}
            rows.append({**ident, "status": gap["status"], "reason": gap["reason"], **spec.get("config", {})})
        frame = pd.DataFrame(rows)
        config = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
        frame = frame.reindex(columns=[*RUN_COLUMNS, *config])
        return frame.sort_values("run_id", kind="stable").reset_index(drop=True)

    def records(self):
        """Every record of every done run, one row per metric: equal to `msabench export`."""
        return records_frame(row for v in self.views for row in record_rows(v.run_id, v.spec, v.records))

    def selected(self, rule: str | Sequence[str] | None = None, *, include_helpers: bool = False):
        """The records at the epoch each selection rule picks (default: each run's protocol default),
        one row per run x rule x split x domain x metric, with a `selection` column. Rules are the
        report's (`val`, `train-domain`, `oracle`, `lodo`, `last`); a rule that cannot answer for a
        run (a lodo helper missing) gives that run no rows. lodo helper runs are left out unless
        `include_helpers`."""
        from msabench.evaluation.selection import check_rule

        wanted = [rule] if isinstance(rule, str) else list(rule or ())
        for name in wanted:
            check_rule(name, "selection")
        rows = []
        for view in self.views:
            if view.is_helper and not include_helpers:
                continue
            for name in wanted or list(view.spec.get("selection_rules") or ("val",))[:1]:
                helpers = lodo_helpers(view, self.views) if name == "lodo" else ()
                epoch = selected_epoch(view, name, helpers)
                if epoch is None:
                    continue
                at_epoch = [r for r in view.records if int(r["epoch"]) == epoch]
                rows += [{**row, "selection": name} for row in record_rows(view.run_id, view.spec, at_epoch)]
        return records_frame(rows, SELECTED_COLUMNS)

    def tables(self, table: str | Sequence[str] | None = None, *, selection: str | None = None,
               compare_paper: bool = False, reference: str | None = None, test: str = "t",
               run_ids: Sequence[str] | None = None):
        """The report's tables (generic, or the paper templates named by `table`), as Table objects;
        `reference` marks cells that differ from that row by `test` (`report --test`); `run_ids` keeps
        only those runs (e.g. a grid study's final runs)."""
        from msabench.report.build import build_tables
        from msabench.report.significance import check_test

        check_test(test)
        names = [table] if isinstance(table, str) else list(table or ())
        views = self.views if run_ids is None else [v for v in self.views if v.run_id in set(run_ids)]
        return build_tables(views, tables=names, selection=selection, compare_paper=compare_paper,
                            reference=reference, test=test)

    def table_frames(self, table: str | Sequence[str] | None = None, **options) -> dict[str, Any]:
        """{table id: DataFrame} of `tables(...)`: one row per row x column x part, numbers as shown
        (percent scaled), the rows of `msabench report --format csv`."""
        return {t.id: table_frame(t) for t in self.tables(table, **options)}


def table_frame(table):
    """One Table as a tidy DataFrame (the CSV renderer's rows)."""
    import pandas as pd

    from msabench.report.render import CSV_FIELDS, table_records

    return pd.DataFrame(list(table_records([table])), columns=list(CSV_FIELDS))


def load(out: str | Path, *, warn=None) -> Results:
    """Read the store at `out` (as `msabench report` does: a damaged done run is an error naming it)."""
    from msabench.report.build import load_views, store_gaps

    out = str(out)
    views = load_views(out, warn=warn or (lambda text: warnings.warn(text.removeprefix("warning: "), stacklevel=3)))
    return Results(out=out, views=views, gaps=store_gaps(out))
