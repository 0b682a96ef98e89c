"""Generic tables from a store: selection applied post hoc, mean and std (ddof=1) over seeds.

One table per protocol, setting and dataset(s) (and rate). The DG protocols get source and target
column groups (accuracy and weighted F1 per domain; the lodo helper runs are folded into their main
run's `lodo` selection, never shown as rows); the missing-rate protocols get one table per dataset
and metric: the metric at every rate (the curve) plus `auilc` and `auilc_norm` columns.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from msabench.core.config import spec_label
from msabench.core.types import short_hash
from msabench.data.names import family_of, is_synthetic
from msabench.evaluation.selection import caption_text, metrics_at, select_epoch, selection_score
from msabench.protocols import kind_of, protocol_of
from msabench.report.table import Cell, Column, Row, Table

GENERIC_METRICS = {
    "regression": ("acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc7", "mae", "corr"),
    "classification": ("acc", "f1_weighted"),
    "multilabel": ("mean_f1",),
}
SIMS_METRICS = ("acc2", "acc3", "acc5", "f1", "mae", "corr")
RAW_METRICS = {"mae": "min", "corr": "max"}
MEAN_OVER_RATES_KIND = "missing-random"  # summarised by the mean over rates (LNLN), not AUILC
ROW_IGNORED_KEYS = {"data.missing_rate", "data.rate"}  # a missing-rate sweep's rows span its rates
CURVE_METRICS = {  # the metrics of the missing-rate tables and plots, per family
    "regression": ("mae", "corr", "acc7", "acc5", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0"),
    "sims": ("mae", "corr", "acc5", "acc3", "acc2", "f1"),
    "classification": ("acc", "f1_weighted"),
    "multilabel": ("mean_f1",),
}


@dataclass
class RunView:
    """What the report needs of a stored run."""

    run_id: str
    spec: dict[str, Any]
    records: list[dict[str, Any]]
    git: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False
    path: str = ""  # the run folder, for what only its files hold (predictions: item-level tests)
    epoch_cache: dict[str, int | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def row_key(self) -> tuple:
        """Runs that differ only by seed share a row."""
        s = self.spec
        config = {k: v for k, v in s["config"].items() if k not in ROW_IGNORED_KEYS}
        return (s["model"], _freeze(config), s["impl_version"], tuple(s["modalities"]))

    @property
    def table_key(self) -> tuple:
        s = self.spec
        return (s["protocol"], s["protocol_version"], s["setting"], tuple(s["datasets"]), float(s["rate"]))

    @property
    def sources(self) -> list[str]:
        s = self.spec
        return list(s.get("source_domains") or s["datasets"][:1])

    @property
    def is_helper(self) -> bool:
        """A lodo helper run (its records feed its main run's `lodo` selection; never a row): it has
        `valid_domains` (the held-out source), or trains on a strict subset of its sources."""
        train = self.spec.get("train_domains") or ()
        return bool(self.spec.get("valid_domains")) or (bool(train) and set(train) != set(self.sources))


def _freeze(obj: Any) -> Any:
    if isinstance(obj, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(_freeze(v) for v in obj)
    return obj


def stable_key(obj: Any) -> str:
    """A short, process-independent hash (Python's hash() of strings is salted per process)."""
    return short_hash(obj, 12)


def is_rate_run(spec: dict[str, Any]) -> bool:
    """A run of a missing-rate protocol, or one tested at extra rates (its curve points)."""
    return kind_of(spec["protocol"]) == "missing-rate" or bool(spec.get("eval_rates"))


def tests_every_rate(spec: dict[str, Any]) -> bool:
    """One trained model tested at every rate (missing-rate-eval), not one model per rate."""
    protocol = protocol_of(spec["protocol"])
    return bool(spec.get("eval_rates")) or (protocol is not None and protocol.tests_every_rate)


def lodo_helpers(view: RunView, views: Iterable[RunView]) -> list[list[dict[str, Any]]]:
    """The records of `view`'s lodo helper runs (same model, config, seed and setting), one list per
    source; [] when some helper is missing (the `lodo` rule then cannot answer)."""
    if view.is_helper:
        return []
    from msabench.protocols.dg import lodo_records

    return lodo_records(view, list(views)) or []


def selected_epoch(view: RunView, rule: str, lodo: Sequence[Sequence[dict[str, Any]]] = ()) -> int | None:
    """The epoch `rule` picks; kept on the view (a table asks once per cell and once per degenerate
    check). With lodo helpers' records the answer depends on them, so it is not kept."""
    if not lodo and rule in view.epoch_cache:
        return view.epoch_cache[rule]
    epoch = _select(view, rule, lodo)
    if not lodo:
        view.epoch_cache[rule] = epoch
    return epoch


def _select(view: RunView, rule: str, lodo: Sequence[Sequence[dict[str, Any]]]) -> int | None:
    s = view.spec
    return select_epoch(view.records, rule, task=s["task"], sources=s.get("train_domains") or view.sources,
                        targets=s.get("target_domains", ()), train_rate=float(s["rate"]), lodo_records=lodo)


def validation_score(view: RunView, rule: str,
                     lodo: Sequence[Sequence[dict[str, Any]]] = ()) -> tuple[float | None, str]:
    """The run's validation score under `rule` (what the rule optimises, at its best epoch) and its
    direction: how a grid study compares configurations (never on test)."""
    s = view.spec
    return selection_score(view.records, rule, task=s["task"], sources=s.get("train_domains") or view.sources,
                           targets=s.get("target_domains", ()), train_rate=float(s["rate"]), lodo_records=lodo)


def chosen_metrics(view: RunView, rule: str, lodo: Sequence[Sequence[dict[str, Any]]] = (),
                   rate: float | None = None) -> dict[str, dict[str, float]]:
    """Test metrics per domain at the epoch `rule` picks ({} when it cannot be answered); `rate`: the
    test evaluation at that missing rate (default: the run's own)."""
    s = view.spec
    epoch = selected_epoch(view, rule, lodo)
    if epoch is None:
        return {}
    at = float(s["rate"]) if rate is None else float(rate)
    out = {}
    for domain in s["datasets"]:
        m = metrics_at(view.records, epoch, "test", domain, at)
        if m is not None:
            out[domain] = m
    return out


DEGENERATE_FLAG = "[d]"


def degenerate_reason(view: RunView, rule: str, lodo: Sequence[Sequence[dict[str, Any]]] = ()) -> str:
    """Why the run's test predictions at the epoch `rule` selects are degenerate ('' when they are
    not, or the run was recorded before the loop checked): the first test record that says so."""
    epoch = selected_epoch(view, rule, lodo)
    if epoch is None:
        return ""
    for r in view.records:
        if int(r["epoch"]) == epoch and r["split"] == "test" and r.get("degenerate"):
            rate = float(r.get("rate", 0.0))
            return f"{r['domain']}{f' at rate {rate:g}' if rate else ''}: {r['degenerate']}"
    return ""


def add_flag(cell: Cell, flag: str) -> None:
    for part in cell.parts or [cell]:
        if not part.empty and flag not in part.flag:
            part.flag = f"{part.flag} {flag}".strip()


def flag_degenerate(row: Row, members: Sequence[RunView], rule: str, all_views: Sequence[RunView],
                    notes: list[str]) -> None:
    """Mark the cells of a row with a degenerate member run and say which seeds and why in `notes`."""
    found = []
    for m in sorted(members, key=lambda v: int(v.spec["seed"])):
        lodo = lodo_helpers(m, all_views) if rule == "lodo" else ()
        reason = degenerate_reason(m, rule, lodo)
        if reason:
            found.append(f"seed {m.spec['seed']}" + (f" rate {float(m.spec['rate']):g}" if m.spec.get("rate") and
                                                     not m.spec.get("eval_rates") else "") + f" ({reason})")
    if not found:
        return
    for cell in row.cells.values():
        add_flag(cell, DEGENERATE_FLAG)
    notes.append(f"{DEGENERATE_FLAG} {row.label}: degenerate run(s) at the epoch rule '{rule}' selects: "
                 f"{'; '.join(found)}. Their values are in these means; they are not results.")


def note_lodo(row: Row, members: Sequence[RunView], rule: str, all_views: Sequence[RunView],
                     notes: list[str]) -> None:
    """Say when `lodo` chose an epoch past a run's last one and had to clamp it."""
    if rule != "lodo":
        return
    from msabench.evaluation.selection import lodo_clamp

    found = []
    for m in sorted(members, key=lambda v: int(v.spec["seed"])):
        clamp = lodo_clamp(m.records, sources=m.sources, train_rate=float(m.spec["rate"]),
                           lodo_records=lodo_helpers(m, all_views))
        if clamp:
            found.append(f"seed {m.spec['seed']} (helpers' best epoch {clamp[0]}, the run's last {clamp[1]})")
    if found:
        notes.append(f"{row.label}: the lodo epoch lies past the run's last epoch and was clamped to it: "
                     f"{'; '.join(found)}.")
    gaps = [m for m in members if not m.is_helper and not lodo_helpers(m, all_views)]
    lacking = sorted({int(m.spec["seed"]) for m in gaps})
    settings = sorted({str(m.spec.get("setting") or "") for m in gaps} - {""})
    if lacking:
        notes.append(f"{row.label}: '-' under lodo for seed{'s' if len(lacking) > 1 else ''} "
                     f"{', '.join(map(str, lacking))}"
                     + (f" (setting{'s' if len(settings) > 1 else ''} {', '.join(settings)})" if settings else "")
                     + ": a lodo helper run (one per source, trained on the other "
                     "sources with this run's recipe) is missing or unfinished; plan them with the default "
                     "selection or --selection lodo.")


DASH_NOTE = ("'-' in our rows: no finished run of the row for that column, or a metric undefined on the "
             "predictions (e.g. Corr of constant predictions); the notes above say where a rule could not answer.")


def note_dashes(table: Table) -> None:
    """Say what a '-' in our rows means, when there is one."""
    for row in table.rows:
        if row.kind != "ours":
            continue
        for cell in row.cells.values():
            if any(part.empty for part in (cell.parts or [cell])):
                table.notes.append(DASH_NOTE)
                return


def test_rates(view: RunView) -> list[float]:
    return sorted({float(r.get("rate", 0.0)) for r in view.records if r["split"] == "test"})


def rate_metrics(view: RunView, rule: str) -> dict[float, dict[str, dict[str, float]]]:
    """{rate: {domain: metrics}} of every test rate the run evaluated (missing-rate-eval runs test one
    checkpoint at many rates), at the epoch selected at the run's own training rate."""
    epoch = selected_epoch(view, rule)
    if epoch is None:
        return {}
    out: dict[float, dict[str, dict[str, float]]] = {}
    for rate in test_rates(view):
        for domain in view.spec["datasets"]:
            m = metrics_at(view.records, epoch, "test", domain, rate)
            if m is not None:
                out.setdefault(rate, {})[domain] = m
    return out


def _metrics_family(runs: list[RunView], dataset: str) -> str:
    """The family that decides the metric columns: the name's, else (a corpus registered from a card,
    whose name says nothing) "sims" when its runs logged SIMS's metrics."""
    family = family_of(dataset)
    if family:
        return family
    logged = {k for r in runs for rec in r.records[:3] for k in rec.get("metrics", {})}
    return "sims" if "acc5" in logged and "acc7" not in logged else ""


def metric_columns(task: str, family: str, domains: list[str], subgroups: dict[str, str] | None = None) -> list[Column]:
    names = SIMS_METRICS if (task == "regression" and family == "sims") else GENERIC_METRICS[task]
    cols = []
    for domain in domains:
        for m in names:
            cols.append(_metric_column(f"{domain}:{m}", m, domain, m, (subgroups or {}).get(domain, "")))
    return cols


def _metric_column(key: str, label: str, group: str, metric: str, subgroup: str = "") -> Column:
    raw = metric in RAW_METRICS
    return Column(key=key, label=label, group=group, metric=metric, direction=RAW_METRICS.get(metric, "max"),
                  scale="raw" if raw else "percent", digits=3 if raw else 2, subgroup=subgroup)


def mean_std(values: Iterable[float | None]) -> Cell:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return Cell()
    std = statistics.stdev(values) if len(values) > 1 else None
    return Cell(mean=statistics.fmean(values), std=std, n=len(values))


def text_masking_note(views: list[RunView]) -> str:
    """A caption sentence when some of the runs dropped text from precomputed vectors (after encoding)."""
    from msabench.data.masks import TEXT_MASKED_AFTER_ENCODING, text_masked_after_encoding

    labels = sorted({spec_label(v.spec) for v in views if text_masked_after_encoding(v.spec)})
    if not labels:
        return ""
    return f" Missing text: {TEXT_MASKED_AFTER_ENCODING} (precomputed text vectors zeroed; {', '.join(labels)})."


SMOKE = "smoke run"
SYNTHETIC = "synthetic data"


def is_smoke(view: RunView) -> bool:
    return bool(view.spec.get("smoke"))


def synthetic_policy_note(protocol: str, views: Sequence[RunView]) -> str:
    """A caption sentence with the epoch cap and data scale the protocol's synthetic-suite policy sets,
    and the values its runs trained with (--set, --tiny and model defaults can differ from the policy)."""
    from msabench.protocols import PROTOCOLS

    policy, caps = {}, {}
    if protocol in PROTOCOLS.names():
        spec = PROTOCOLS.get(protocol)
        policy, caps = spec.policy(True), spec.caps(True)
    said = []
    if "train.epochs" in caps:
        said.append(f"train.epochs capped at {caps['train.epochs']}")
    said.append(f"data.scale {policy.get('data.scale', 1.0):g}")
    text = f" Synthetic-suite policy of {protocol}: {', '.join(said)}"
    used = []
    for key in ("train.epochs", "data.scale"):
        values = sorted({v.spec["config"][key] for v in views if key in v.spec.get("config", {})})
        if values:
            used.append(f"{key} {'/'.join(f'{x:g}' for x in values)}")
    return text + (f"; these runs: {', '.join(used)}." if used else ".")


def smoke_note(views: Sequence[RunView]) -> str:
    """A caption sentence saying what the [smoke run] rows are ('' when the table has none)."""
    if not any(is_smoke(v) for v in views):
        return ""
    return (f" Rows marked [{SMOKE}] are --tiny smoke runs (tiny model configs, few epochs, small data): they check "
            "that the code runs; they are not results.")


def data_notes(protocol: str, views: Sequence[RunView], synthetic: bool) -> str:
    return (synthetic_policy_note(protocol, views) if synthetic else "") + smoke_note(views)


def _caption(protocol: str, version: str, seeds: list[int], rule: str, synthetic: bool, extra: str = "") -> str:
    return (f"Protocol {protocol} v{version}; test split; mean ± std (ddof=1) over "
            f"{'/'.join(map(str, seeds)) or '0'} seeds; " + caption_text(rule)
            + ("; synthetic data" if synthetic else "; real data") + "." + extra
            + " Accuracies and F1 in percent.")


def generic_tables(views: list[RunView], selection: str | None, reference: str | None = None,
                   test: str = "t") -> list[Table]:
    """One table per protocol, setting and dataset(s) (missing-rate: per dataset and metric);
    `reference` marks significant differences (by `test`) in the tables that have that row."""
    from msabench.core.errors import UserError

    rate_views = [v for v in views if is_rate_run(v.spec)]
    other = [v for v in views if not is_rate_run(v.spec)]  # not `v not in rate_views`: quadratic in the runs
    tables = _point_tables(other, views, selection, reference, test)
    tables += rate_tables(rate_views, selection)
    if reference and other and not any("reference" in t.meta for t in tables):
        labels = sorted({r.label for t in tables for r in t.rows if r.kind == "ours"})
        raise UserError(f"--reference {reference!r} names no row of these tables; use one of: {', '.join(labels)}")
    return tables


def _point_tables(views: list[RunView], all_views: list[RunView], selection,
                  reference: str | None = None, test: str = "t") -> list[Table]:
    from msabench.core.errors import UserError
    from msabench.report.significance import ItemRef, find_row, mark_significance

    by_table: dict[tuple, list[RunView]] = defaultdict(list)
    for v in views:
        if not v.is_helper:
            by_table[v.table_key].append(v)
    tables = []
    for key, runs in sorted(by_table.items(), key=lambda kv: str(kv[0])):
        protocol, version, setting, datasets, rate = key
        spec0 = runs[0].spec
        rule = selection or spec0["selection_rules"][0]
        task = spec0["task"]
        dg = kind_of(protocol) == "dg" or bool(spec0.get("target_domains"))
        subgroups = {}
        if dg:
            sources = set(runs[0].sources)
            subgroups = {d: ("source" if d in sources else "target") for d in datasets}
        columns = metric_columns(task, _metrics_family(runs, datasets[0]), list(datasets), subgroups)
        rows_by_key: dict[tuple, list[RunView]] = defaultdict(list)
        for r in runs:
            rows_by_key[r.row_key].append(r)
        rows = []
        labels = row_labels(rows_by_key)
        values: dict[tuple[str, str, int], dict[int, float]] = {}
        items: dict[tuple[str, str, int], dict[int, ItemRef]] = {}
        models: dict[str, str] = {}
        notes: list[str] = []
        for rkey, members in rows_by_key.items():
            key = stable_key(list(rkey))
            lodo = {m.run_id: lodo_helpers(m, all_views) if rule == "lodo" else () for m in members}
            per_run = [(int(m.spec["seed"]), chosen_metrics(m, rule, lodo[m.run_id])) for m in members]
            chosen = {int(m.spec["seed"]): (m, selected_epoch(m, rule, lodo[m.run_id])) for m in members}
            cells = {}
            for col in columns:
                per_seed = {seed: float(v) for seed, pm in per_run
                            if (v := pm.get(col.group, {}).get(col.metric)) is not None and v == v}
                values[(key, col.key, 0)] = per_seed
                items[(key, col.key, 0)] = {seed: ItemRef(chosen[seed][0], chosen[seed][1], col.group,
                                                          float(chosen[seed][0].spec["rate"]), col.metric)
                                            for seed in per_seed}
                cells[col.key] = mean_std(per_seed.values())
            models[key] = members[0].spec["model"]
            rows.append(Row(key=key, label=labels[rkey], cells=cells, n_seeds=len({m.spec["seed"] for m in members}),
                            caveat=SMOKE if any(is_smoke(m) for m in members) else ""))
            flag_degenerate(rows[-1], members, rule, all_views, notes)
            note_lodo(rows[-1], members, rule, all_views, notes)
        rows.sort(key=lambda r: r.label)
        synthetic = all(is_synthetic(d) for d in datasets)
        seeds = sorted({r.n_seeds for r in rows})
        title = f"{protocol} {setting}".strip() + f" on {' + '.join(datasets)}" + (f" at rate {rate:g}" if rate else "")
        extra = ""
        if dg:
            extra = (f" Sources {', '.join(d for d in datasets if subgroups.get(d) == 'source')}; targets "
                     f"{', '.join(d for d in datasets if subgroups.get(d) == 'target')}; 3-class accuracy and weighted "
                     "F1.")
        extra += data_notes(protocol, runs, synthetic)
        table = Table(id=f"{protocol}{('-' + setting) if setting else ''}-{'+'.join(datasets)}"
                      + (f"-rate{rate:g}" if rate else ""),
                      title=title, columns=columns, rows=rows,
                      caption=_caption(protocol, version, seeds, rule, synthetic, extra), notes=sorted(notes),
                      meta={"protocol": protocol, "version": version, "setting": setting, "selection": rule,
                            "synthetic": synthetic, "datasets": list(datasets), "rate": rate})
        note_dashes(table)
        if reference:
            table.meta["row_models"] = models
            try:
                find_row(rows, reference, models)
            except UserError:
                pass  # the reference row is not in this table
            else:  # its own errors (an item-level test without stored labels) reach the user
                mark_significance(table, values, reference, test=test, items=items)
            table.meta.pop("row_models", None)
        table.rank_cells()
        tables.append(table)
    return tables


def rate_curves(views: list[RunView], rule: str | None = None,
                metrics: Sequence[str] | None = None) -> dict[tuple, dict[str, Any]]:
    """Missing-rate curves: {(protocol, version, setting, datasets): {"rows": {label: {metric:
    {"rates", "mean", "std", "n", "auilc", "auilc_norm"}}}, "rule", "seeds", "task"}}."""
    from msabench.metrics import auilc, auilc_norm

    groups: dict[tuple, list[RunView]] = defaultdict(list)
    for v in views:
        s = v.spec
        groups[(s["protocol"], s["protocol_version"], s["setting"], tuple(s["datasets"]))].append(v)
    out = {}
    for key, runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        spec0 = runs[0].spec
        chosen_rule = rule or spec0["selection_rules"][0]
        rows_by_key: dict[tuple, list[RunView]] = defaultdict(list)
        for r in runs:
            rows_by_key[r.row_key].append(r)
        labels = row_labels(rows_by_key)
        rows = {}
        members_of: dict[str, list[RunView]] = {}
        for rkey, members in rows_by_key.items():
            per_seed: dict[int, dict[float, dict[str, dict[str, float]]]] = defaultdict(dict)
            for m in members:
                every_rate = tests_every_rate(m.spec)
                for rate, per_domain in rate_metrics(m, chosen_rule).items():
                    # a missing-rate run counts at its own rate; a -eval run tests one model at every rate
                    if every_rate or rate == float(m.spec["rate"]):
                        per_seed[m.spec["seed"]][rate] = per_domain
            grid = sorted({rate for d in per_seed.values() for rate in d})
            domain = key[3][0]
            names = metrics or _curve_metric_names(spec0, key[3][0])
            row = {}
            for metric in names:
                by_rate = {rate: [per_seed[s][rate].get(domain, {}).get(metric)
                                  for s in per_seed if rate in per_seed[s]]
                           for rate in grid}
                cells = [mean_std(by_rate[rate]) for rate in grid]
                areas, norms, means = [], [], []
                for values in per_seed.values():
                    if grid and all(rate in values for rate in grid):
                        curve = [values[rate].get(domain, {}).get(metric) for rate in grid]
                        if all(c is not None and not math.isnan(c) for c in curve):
                            means.append(statistics.fmean(curve))
                            if len(grid) >= 2:
                                areas.append(auilc(grid, curve))
                                norms.append(auilc_norm(grid, curve))
                row[metric] = {"rates": grid, "mean": [c.mean for c in cells], "std": [c.std for c in cells],
                               "n": [c.n for c in cells], "auilc": mean_std(areas), "auilc_norm": mean_std(norms),
                               "per_seed_auilc": areas, "mean_over_rates": mean_std(means)}
            rows[labels[rkey]] = row
            members_of[labels[rkey]] = members
        out[key] = {"rows": rows, "members": members_of, "rule": chosen_rule, "task": spec0["task"],
                    "rate": float(spec0["rate"]),
                    "seeds": sorted({len({m.spec["seed"] for m in ms}) for ms in rows_by_key.values()})}
    return out


def _curve_metric_names(spec: dict[str, Any], dataset: str) -> tuple[str, ...]:
    task = spec["task"]
    if task == "regression" and family_of(dataset) == "sims":
        return CURVE_METRICS["sims"]
    return CURVE_METRICS.get(task, ())


def rate_tables(views: list[RunView], selection: str | None) -> list[Table]:
    tables = []
    for key, group in rate_curves(views, selection).items():
        protocol, version, setting, datasets = key
        rule = group["rule"]
        synthetic = all(is_synthetic(d) for d in datasets)
        metrics = sorted({m for row in group["rows"].values() for m in row},
                         key=lambda m: list(_curve_metric_names({"task": group["task"]}, datasets[0])).index(m)
                         if m in _curve_metric_names({"task": group["task"]}, datasets[0]) else 99)
        for metric in metrics:
            grid = sorted({r for row in group["rows"].values() for r in row.get(metric, {}).get("rates", [])})
            mean_over_rates = kind_of(protocol) == MEAN_OVER_RATES_KIND
            columns = [_metric_column(f"rate{r:g}", f"{r:g}", "missing rate", metric) for r in grid]
            if mean_over_rates:
                columns.append(_metric_column("mean", "mean", "", metric))
            else:
                columns += [_metric_column("auilc", "auilc", "", metric),
                            _metric_column("auilc_norm", "auilc_norm", "", metric)]
            rows, notes = [], []
            for label, row in sorted(group["rows"].items()):
                curve = row.get(metric)
                if curve is None:
                    continue
                cells = {f"rate{r:g}": Cell(mean=m, std=s, n=n)
                         for r, m, s, n in zip(curve["rates"], curve["mean"], curve["std"], curve["n"])}
                if mean_over_rates:
                    cells["mean"] = curve["mean_over_rates"]
                else:
                    cells["auilc"] = curve["auilc"]
                    cells["auilc_norm"] = curve["auilc_norm"]
                rows.append(Row(key=stable_key([label, metric]), label=label, cells=cells,
                                n_seeds=max(curve["n"]) if curve["n"] else 0,
                                caveat=SMOKE if any(is_smoke(m) for m in group["members"][label]) else ""))
                flag_degenerate(rows[-1], group["members"][label], rule, views, notes)
            masking_note = text_masking_note([v for v in views if v.spec["protocol"] == protocol
                                              and tuple(v.spec["datasets"]) == tuple(datasets)])
            if mean_over_rates:
                extra = (f" {metric} at each test missing rate of one model per seed, trained with a random rate per "
                         "sample and modality (redrawn every epoch) and selected on valid at rate "
                         f"{_train_rate(group):g}; mean: per seed the mean over the rates "
                         f"{', '.join(f'{r:g}' for r in grid)}, then over seeds." + masking_note)
            else:
                extra = (f" {metric} at each missing rate (same rate on every modality in train, valid and test); "
                         "auilc: trapezoid area over the grid including 0.0, unnormalised; "
                         "auilc_norm: auilc / grid width." + masking_note)
            extra += data_notes(protocol, [m for ms in group["members"].values() for m in ms], synthetic)
            table = Table(id=f"{protocol}{('-' + setting) if setting else ''}-{'+'.join(datasets)}-{metric}",
                          title=f"{protocol} on {' + '.join(datasets)}: {metric} vs missing rate",
                          columns=columns, rows=rows, notes=notes,
                          caption=_caption(protocol, version, group["seeds"], rule, synthetic, extra),
                          meta={"protocol": protocol, "version": version, "setting": setting, "selection": rule,
                                "synthetic": synthetic, "datasets": list(datasets), "metric": metric})
            table.rank_cells()
            tables.append(table)
    return tables


def _train_rate(group: dict[str, Any]) -> float:
    return float(group.get("rate", 0.0))


def row_labels(rows_by_key: dict[tuple, list[RunView]]) -> dict[tuple, str]:
    """The model label, plus the config keys (and modalities) that tell apart rows sharing it."""
    by_label: dict[str, list[tuple]] = defaultdict(list)
    for key, members in rows_by_key.items():
        by_label[spec_label(members[0].spec)].append(key)
    labels = {}
    for label, keys in by_label.items():
        if len(keys) == 1:
            labels[keys[0]] = label
            continue
        configs = [dict(rows_by_key[k][0].spec["config"]) for k in keys]
        differing = sorted({k for c in configs for k in c if any(c.get(k) != o.get(k) for o in configs)})
        mods = [",".join(rows_by_key[k][0].spec["modalities"]) for k in keys]
        for k, cfg, mod in zip(keys, configs, mods):
            keys_text = ",".join(f"{d}={cfg.get(d)}" for d in differing)
            text = label + (("," if ":" in label else ":") + keys_text if differing else "")
            if len(set(mods)) > 1:
                text += f" [{mod}]"
            if text in labels.values():
                text += f" (impl v{rows_by_key[k][0].spec['impl_version']})"
            labels[k] = text
    return labels


_row_labels = row_labels  # the name the slice used
