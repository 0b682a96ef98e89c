"""Generic tables from a store: selection applied post hoc, mean and std (ddof=1) over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from msabench.report.table import Cell, Column, Row, Table
from msabench.selection import metrics_at, select_epoch

GENERIC_METRICS = {
    "regression": ("acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc7", "mae", "corr"),
    "classification": ("acc", "f1_weighted"),
    "multilabel": ("mean_f1",),
}
SIMS_METRICS = ("acc2", "acc3", "acc5", "f1", "mae", "corr")
RAW_METRICS = {"mae": "min", "corr": "max"}


@dataclass
class RunView:
    """What the report needs of a stored run."""

    run_id: str
    spec: dict[str, Any]
    records: list[dict[str, Any]]
    git: str = ""

    @property
    def row_key(self) -> tuple:
        """Runs that differ only by seed share a row."""
        s = self.spec
        return (s["model"], _freeze(s["config"]), s["impl_version"], tuple(s["modalities"]))

    @property
    def table_key(self) -> tuple:
        s = self.spec
        return (s["protocol"], s["protocol_version"], s["setting"], tuple(s["datasets"]), float(s["rate"]))


def _freeze(obj: Any) -> Any:
    if isinstance(obj, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(_freeze(v) for v in obj)
    return obj


def chosen_metrics(view: RunView, rule: str, lodo: list[list[dict[str, Any]]] = ()) -> dict[str, dict[str, float]]:
    """Test metrics per domain at the epoch `rule` picks (None when it cannot be answered)."""
    s = view.spec
    sources = s.get("train_domains") or s.get("source_domains") or s["datasets"][:1]
    epoch = select_epoch(view.records, rule, task=s["task"], sources=sources,
                         targets=s.get("target_domains", ()), train_rate=float(s["rate"]), lodo_records=lodo)
    if epoch is None:
        return {}
    out = {}
    for domain in s["datasets"]:
        m = metrics_at(view.records, epoch, "test", domain, float(s["rate"]))
        if m is not None:
            out[domain] = m
    return out


def metric_columns(task: str, family: str, domains: list[str]) -> list[Column]:
    names = SIMS_METRICS if (task == "regression" and family == "sims") else GENERIC_METRICS[task]
    cols = []
    for domain in domains:
        for m in names:
            raw = m in RAW_METRICS
            cols.append(Column(key=f"{domain}:{m}", label=m, group=domain, metric=m,
                               direction=RAW_METRICS.get(m, "max"), scale="raw" if raw else "percent",
                               digits=3 if raw else 2))
    return cols


def mean_std(values: list[float]) -> Cell:
    values = [v for v in values if v is not None]
    if not values:
        return Cell()
    std = statistics.stdev(values) if len(values) > 1 else None
    return Cell(mean=statistics.fmean(values), std=std, n=len(values))


def generic_tables(views: list[RunView], selection: str | None, family_of, synthetic_of) -> list[Table]:
    by_table: dict[tuple, list[RunView]] = defaultdict(list)
    for v in views:
        by_table[v.table_key].append(v)
    tables = []
    for key, runs in sorted(by_table.items(), key=lambda kv: str(kv[0])):
        protocol, version, setting, datasets, rate = key
        spec0 = runs[0].spec
        rule = selection or spec0["selection_rules"][0]
        task = spec0["task"]
        columns = metric_columns(task, family_of(datasets[0]), list(datasets))
        rows_by_key: dict[tuple, list[RunView]] = defaultdict(list)
        for r in runs:
            rows_by_key[r.row_key].append(r)
        rows = []
        labels = _row_labels(rows_by_key)
        for rkey, members in rows_by_key.items():
            per_run = [chosen_metrics(m, rule) for m in members]
            cells = {}
            for col in columns:
                cells[col.key] = mean_std([pm.get(col.group, {}).get(col.metric) for pm in per_run])
            rows.append(Row(key=str(hash(rkey)), label=labels[rkey], cells=cells,
                            n_seeds=len({m.spec["seed"] for m in members})))
        rows.sort(key=lambda r: r.label)
        synthetic = all(synthetic_of(d) for d in datasets)
        seeds = sorted({r.n_seeds for r in rows})
        title = f"{protocol} {setting}".strip() + f" on {' + '.join(datasets)}" + (f" at rate {rate:g}" if rate else "")
        caption = (f"Protocol {protocol} v{version}; test split; mean ± std (ddof=1) over "
                   f"{'/'.join(map(str, seeds))} seeds; selection rule '{rule}'"
                   + (" (oracle: selected on the target valid split)" if rule == "oracle" else "")
                   + ("; synthetic data" if synthetic else "") + ". Accuracies and F1 in percent.")
        table = Table(id=f"{protocol}{('-' + setting) if setting else ''}-{'+'.join(datasets)}",
                      title=title, columns=columns, rows=rows, caption=caption,
                      meta={"protocol": protocol, "version": version, "setting": setting, "selection": rule,
                            "synthetic": synthetic, "datasets": list(datasets)})
        table.rank_cells()
        tables.append(table)
    return tables


def _row_labels(rows_by_key: dict[tuple, list[RunView]]) -> dict[tuple, str]:
    """The model label, plus the config keys that tell apart rows sharing it."""
    by_label: dict[str, list[tuple]] = defaultdict(list)
    for key, members in rows_by_key.items():
        by_label[members[0].spec["model"]].append(key)
    labels = {}
    for label, keys in by_label.items():
        if len(keys) == 1:
            labels[keys[0]] = label
            continue
        configs = [dict(rows_by_key[k][0].spec["config"]) for k in keys]
        differing = sorted({k for c in configs for k in c if any(c.get(k) != o.get(k) for o in configs)})
        for k, cfg in zip(keys, configs):
            labels[k] = label + ":" + ",".join(f"{d}={cfg.get(d)}" for d in differing)
    return labels
