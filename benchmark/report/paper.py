"""Paper tables: a template (msabench.protocols.templates) filled from the store's runs.

Rows the store has runs for show our numbers (mean ± std over seeds at the post hoc selected
epoch); the template's other rows show the paper's numbers as "published only". Runs in the store
that match no template row (e.g. the protocol's quick list) are added as rows of their own, so a
paper layout also tabulates the harness's own baselines. `compare_paper` adds a "(paper)" row under
each of our rows, and on real data a "Δ" row (ours minus the paper's); on synthetic data no
differences are shown (they measure other data). `reference` marks the cells that differ from the
reference row (paired t-test over matched seeds, Holm-adjusted across the table).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from msabench.data.names import base_name, is_synthetic
from msabench.evaluation.selection import caption_text
from msabench.report.aggregate import (
    SMOKE,
    SYNTHETIC,
    RunView,
    chosen_metrics,
    data_notes,
    flag_degenerate,
    is_smoke,
    lodo_helpers,
    mean_std,
    note_dashes,
    note_lodo,
    rate_metrics,
    row_labels,
    selected_epoch,
    stable_key,
    text_masking_note,
)
from msabench.report.significance import ItemRef, ItemRefs, SeedValues, mark_significance
from msabench.report.table import Cell, Column, Row, Table

OTHER_GROUP = "Other runs in the store (not in the paper)"
PAPER_GROUP = "Paper rows"


# -- which runs feed a template ------------------------------------------------------------------
def _protocols(template) -> tuple[str, ...]:
    # A rate template reads its own protocol only: a missing-rate-eval curve (one model trained on
    # complete data) is another experiment than missing-rate's (one model per rate).
    return (template.protocol,)


def _sources(view: RunView) -> frozenset[str]:
    return frozenset(base_name(d) for d in view.sources)


def relevant_views(template, views: Iterable[RunView]) -> list[RunView]:
    out = []
    settings = {frozenset(s.sources) for s in template.settings}
    for v in views:
        if v.spec["protocol"] not in _protocols(template) or v.is_helper:
            continue
        domains = {base_name(d) for d in v.spec["datasets"]}
        if template.is_dg:
            if _sources(v) not in settings:
                continue
        elif not domains <= set(template.datasets):
            continue
        out.append(v)
    return out


def _default_modalities(protocol: str) -> tuple[str, ...] | None:
    try:
        from msabench.protocols import PROTOCOLS

        if protocol in PROTOCOLS:
            return tuple(PROTOCOLS.get(protocol).modalities)
    except Exception:  # noqa: BLE001 - the registry is optional here
        return None
    return None


def row_matches(row, view: RunView, default_modalities: tuple[str, ...] | None) -> bool:
    from msabench.core.config import parse_model_spec

    if row.model is None:
        return False
    spec = parse_model_spec(row.model)
    if view.spec["model"] != spec.label:
        return False
    config = view.spec.get("config", {})
    if any(config.get(k) != v for k, v in spec.overrides.items()):
        return False
    wanted = row.modalities or default_modalities
    return wanted is None or tuple(view.spec["modalities"]) == tuple(wanted)


# -- values per seed -----------------------------------------------------------------------------
def _domain_name(view: RunView, domain: str) -> str | None:
    for d in view.spec["datasets"]:
        if base_name(d) == domain:
            return d
    return None


def _column_views(template, col, views: list[RunView], domain: str) -> list[RunView]:
    if col.setting:
        wanted = frozenset(template.setting(col.setting).sources)
        return [v for v in views if _sources(v) == wanted]
    return [v for v in views if base_name(v.spec["datasets"][0]) == domain]


def _params(view: RunView) -> float | None:
    """The run's inference-time parameter count in millions (env.json `inference_params`, recorded
    from `MSAModel.inference_parameter_count`); None for runs recorded without it: the trainable
    count (`n_params`) they have is another number (it leaves out a frozen encoder and keeps
    training-only networks)."""
    value = view.env.get("inference_params")
    return float(value) / 1e6 if isinstance(value, (int, float)) else None


def seed_values(template, col, part: int, views: list[RunView], rule: str,
                all_views: Sequence[RunView]) -> dict[int, float]:
    domain, metric = col.parts[part]
    chosen = _column_views(template, col, views, domain)
    out: dict[int, float] = {}
    if col.value == "params":
        for v in chosen:
            p = _params(v)
            if p is not None:
                out[int(v.spec["seed"])] = p
        return out
    if col.value in CURVE_VALUES:
        return curve_values(template, col, part, views, rule)[0]
    for v in chosen:
        name = _domain_name(v, domain)
        if name is None:
            continue
        lodo = lodo_helpers(v, all_views) if rule == "lodo" else ()
        value = chosen_metrics(v, rule, lodo).get(name, {}).get(metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[int(v.spec["seed"])] = float(value)
    return out


def item_refs(template, col, part: int, views: list[RunView], rule: str, all_views: Sequence[RunView],
              seeds: Iterable[int]) -> dict[int, ItemRef]:
    """Per seed with a value, where its test predictions are (item-level tests); {} for cells that
    summarise a curve or count parameters."""
    if col.value == "params" or col.value in CURVE_VALUES:
        return {}
    domain, metric = col.parts[part]
    wanted, out = set(seeds), {}
    for v in _column_views(template, col, views, domain):
        name = _domain_name(v, domain)
        if name is None or int(v.spec["seed"]) not in wanted:
            continue
        epoch = selected_epoch(v, rule, lodo_helpers(v, all_views) if rule == "lodo" else ())
        if epoch is not None:
            out[int(v.spec["seed"])] = ItemRef(v, epoch, name, float(v.spec["rate"]), metric)
    return out


CURVE_VALUES = ("auilc", "mean-over-rates")  # cells summarising a curve over the template's rate grid
GRID_FLAG = "[g]"


def template_grid(template, domain: str) -> tuple[float, ...]:
    """The rate grid a curve cell is computed on: the template's, else the protocol's default for the
    dataset (EMT-DLFR: 0.0..1.0 step 0.1, SIMS 0.0..0.5)."""
    if template.rates:
        return tuple(sorted(float(r) for r in template.rates))
    from msabench.protocols.missing_rate import default_grid

    return default_grid(domain)


def curve_values(template, col, part: int, views: list[RunView], rule: str) -> tuple[dict[int, float], str]:
    """Per seed, the AUILC (or the mean over rates) of one metric on the template's pinned grid, and a
    caveat ("" when none): seeds that lack a rate of the grid are left out and named; when no seed has
    the whole grid, the value is taken on the rates every seed has, and the caveat says so."""
    from msabench.metrics import auilc

    domain, metric = col.parts[part]
    per_seed: dict[int, dict[float, float]] = defaultdict(dict)
    for v in _column_views(template, col, views, domain):
        every_rate = bool(v.spec.get("eval_rates"))
        name = _domain_name(v, domain)
        for rate, per_domain in rate_metrics(v, rule).items():
            if (every_rate or rate == float(v.spec["rate"])) and name in per_domain:
                value = per_domain[name].get(metric)
                if value is not None and not math.isnan(float(value)):
                    per_seed[int(v.spec["seed"])][round(rate, 6)] = float(value)
    if not per_seed:
        return {}, ""
    grid = template_grid(template, domain)
    summary = auilc if col.value == "auilc" else (lambda rates, ys: sum(ys) / len(ys))
    least = 2 if col.value == "auilc" else 1
    complete = {s: c for s, c in per_seed.items() if all(round(r, 6) in c for r in grid)}
    caveat = ""
    if complete:
        used, curves = grid, complete
        lacking = sorted(set(per_seed) - set(complete))
        if lacking:
            caveat = (f"seed{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking))} lack"
                      f"{'' if len(lacking) > 1 else 's'} rates of the grid {_grid_text(grid)} and "
                      f"{'are' if len(lacking) > 1 else 'is'} left out")
    else:
        common = sorted(set.intersection(*(set(c) for c in per_seed.values())))
        if len(common) < least:
            return {}, f"no seed has the grid {_grid_text(grid)}; no common rates to compute on"
        used, curves = tuple(common), per_seed
        caveat = f"computed on the rates {_grid_text(used)}, not the grid {_grid_text(grid)}: not comparable"
    return {s: summary(list(used), [c[round(r, 6)] for r in used]) for s, c in curves.items()}, caveat


def _grid_text(grid) -> str:
    grid = [float(r) for r in grid]
    steps = {round(b - a, 6) for a, b in zip(grid, grid[1:])}
    if len(grid) > 2 and len(steps) == 1:
        return f"{grid[0]:.1f}..{grid[-1]:.1f} step {steps.pop():g}"
    return ",".join(f"{r:g}" for r in grid)


def grid_caption(template, datasets: list[str]) -> str:
    """'AUILC grid: mosi 0.0..1.0 step 0.1.' for templates with curve cells ('' for the others)."""
    kinds = {c.value for c in template.columns} & set(CURVE_VALUES)
    if not kinds:
        return ""
    names = sorted({base_name(d) for d in datasets} or set(template.datasets),
                   key=lambda d: template.datasets.index(d) if d in template.datasets else 99)
    by_grid: dict[str, list[str]] = {}
    for d in names:
        by_grid.setdefault(_grid_text(template_grid(template, d)), []).append(d)
    what = "AUILC" if "auilc" in kinds else "Mean-over-rates"
    return (f" {what} grid (pinned): " + "; ".join(f"{', '.join(ds)} {g}" for g, ds in by_grid.items())
            + f" (rates as fractions); a cell computed otherwise is marked {GRID_FLAG}.")


# -- the table -------------------------------------------------------------------------------------
def _column(col) -> Column:
    return Column(key=col.key, label=col.label, group=col.group, subgroup=col.subgroup,
                  metric=col.parts[0][1] if len(col.parts) == 1 else "", direction=col.direction, scale=col.scale,
                  digits=col.digits, parts=[f"{d}:{m}" for d, m in col.parts] if len(col.parts) > 1 else [])


def _published_cells(template, row_key: str, lookup: dict) -> dict[str, Cell]:
    cells = {}
    for col in template.columns:
        parts = []
        for i in range(len(col.parts)):
            p = lookup.get((row_key, col.key, i))
            if p is None:
                parts.append(Cell())
                continue
            factor = 0.01 if col.scale == "percent" else 1.0
            parts.append(Cell(mean=p.value * factor, std=None if p.std is None else p.std * factor,
                              n=5 if p.std is not None else 0, published=p.value * factor))
        if any(not c.empty for c in parts):
            cells[col.key] = Cell(parts=parts) if len(parts) > 1 else parts[0]
    return cells


def _pairs(cell: Cell | None) -> list[Cell]:
    if cell is None:
        return []
    return cell.parts if cell.parts else [cell]


def _delta_cells(ours: dict[str, Cell], paper: dict[str, Cell], template) -> dict[str, Cell]:
    cells = {}
    for col in template.columns:
        a, b = _pairs(ours.get(col.key)), _pairs(paper.get(col.key))
        if not a or not b:
            continue
        parts = [Cell(mean=x.mean - y.mean) if x.mean is not None and y.mean is not None else Cell()
                 for x, y in zip(a, b)]
        cells[col.key] = Cell(parts=parts) if len(parts) > 1 else parts[0]
    return cells


def _version(template, views: list[RunView]) -> str:
    versions = sorted({str(v.spec.get("protocol_version", "")) for v in views})
    if versions:
        return "/".join(versions)
    try:
        from msabench.protocols import PROTOCOLS

        if template.protocol in PROTOCOLS:
            return PROTOCOLS.get(template.protocol).version
    except Exception:  # noqa: BLE001
        pass
    return "?"


def _rule(template, views: list[RunView], selection: str | None) -> str:
    if selection:
        return selection
    if template.selection:
        return template.selection
    for v in views:
        rules = v.spec.get("selection_rules") or ()
        if rules:
            return rules[0]
    try:
        from msabench.protocols import PROTOCOLS

        if template.protocol in PROTOCOLS:
            return PROTOCOLS.get(template.protocol).selection_rules[0]
    except Exception:  # noqa: BLE001
        pass
    return "val"


def build_template_table(template, views: Sequence[RunView], *, selection: str | None = None,
                         compare_paper: bool = False, reference: str | None = None, test: str = "t") -> Table:
    from msabench.protocols.published import lookup, table_info

    all_views = list(views)
    relevant = relevant_views(template, all_views)
    real = [v for v in relevant if not any(is_synthetic(d) for d in v.spec["datasets"])]
    used = real or relevant
    synthetic = bool(used) and not real
    rule = _rule(template, used, selection)
    default_mods = _default_modalities(template.protocol)
    published = lookup(template.paper, template.table)

    matched: dict[str, list[RunView]] = defaultdict(list)
    unmatched: list[RunView] = []
    for v in used:
        row = next((r for r in template.rows if row_matches(r, v, default_mods)), None)
        if row is None:
            unmatched.append(v)
        else:
            matched[row.key].append(v)
    extra_groups: dict[tuple, list[RunView]] = defaultdict(list)
    for v in unmatched:
        extra_groups[v.row_key].append(v)
    extra_labels = row_labels(extra_groups)

    columns = [_column(c) for c in template.columns]
    values: SeedValues = {}
    items: ItemRefs = {}
    rows: list[Row] = []
    models: dict[str, str] = {}
    use_groups = any(r.group for r in template.rows) or bool(extra_groups)

    caveats: list[str] = []
    grid_notes: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (row, caveat) -> its (domain, metric)s

    def measured(key: str, label: str, group: str, members: list[RunView]) -> Row:
        cells = {}
        for tcol in template.columns:
            parts = []
            for i in range(len(tcol.parts)):
                caveat = ""
                if tcol.value in CURVE_VALUES:
                    per_seed, caveat = curve_values(template, tcol, i, members, rule)
                else:
                    per_seed = seed_values(template, tcol, i, members, rule, all_views)
                values[(key, tcol.key, i)] = per_seed
                if test != "t" and reference:
                    items[(key, tcol.key, i)] = item_refs(template, tcol, i, members, rule, all_views, per_seed)
                cell = mean_std(per_seed.values())
                if caveat:
                    cell.flag = GRID_FLAG
                    grid_notes.setdefault((label, caveat), []).append(tcol.parts[i])
                parts.append(cell)
            cells[tcol.key] = Cell(parts=parts) if len(parts) > 1 else parts[0]
        # Beside the papers' (real-data) numbers, a row says in itself what it is not.
        caveat = ", ".join(([SYNTHETIC] if synthetic else []) + ([SMOKE] if any(is_smoke(m) for m in members) else []))
        row = Row(key=key, label=label, group=group, cells=cells, kind="ours",
                  n_seeds=len({int(m.spec["seed"]) for m in members}), caveat=caveat if published else "")
        flag_degenerate(row, members, rule, all_views, caveats)
        note_lodo(row, members, rule, all_views, caveats)
        return row

    for trow in template.rows:
        group = trow.group or (PAPER_GROUP if use_groups else "")
        paper_cells = _published_cells(template, trow.key, published)
        members = matched.get(trow.key, [])
        if trow.model:
            models[trow.key] = trow.model
        if not members:
            rows.append(Row(key=trow.key, label=trow.label, group=group, cells=paper_cells, published_only=True,
                            kind="published", note=trow.note or "published only"))
            continue
        ours = measured(trow.key, trow.label, group, members)
        if compare_paper:  # the paper's number beside ours in the JSON and CSV outputs
            for key, cell in ours.cells.items():
                for mine, theirs in zip(_pairs(cell), _pairs(paper_cells.get(key))):
                    mine.published = theirs.mean
        rows.append(ours)
        if compare_paper and paper_cells:
            rows.append(Row(key=trow.key + "#paper", label=f"{trow.label} (paper)", group=group, cells=paper_cells,
                            kind="paper"))
            if not synthetic and not ours.caveat:  # no difference for a smoke run: it measures nothing
                rows.append(Row(key=trow.key + "#delta", label=f"{trow.label} Δ (ours − paper)", group=group,
                                cells=_delta_cells(ours.cells, paper_cells, template), kind="delta"))
    for rkey, members in sorted(extra_groups.items(), key=lambda kv: extra_labels[kv[0]]):
        key = "store/" + stable_key(list(rkey))
        models[key] = members[0].spec["model"]
        rows.append(measured(key, extra_labels[rkey], OTHER_GROUP, members))

    info = table_info(template.paper, template.table)
    ours_rows = [r for r in rows if r.kind == "ours"]
    seeds = sorted({r.n_seeds for r in ours_rows})
    order = list(template.datasets)
    datasets = sorted({d for v in used for d in v.spec["datasets"]},
                      key=lambda d: (order.index(base_name(d)) if base_name(d) in order else len(order), d))
    version = _version(template, used)
    if not used:
        data_text = "no runs of this protocol in the store yet: every row shows the paper's numbers"
    elif synthetic:
        stand_ins = sorted({(d.split("/")[0], base_name(d)) for d in datasets},
                           key=lambda p: order.index(p[1]) if p[1] in order else len(order))
        if template.is_dg:
            data_text = f"synthetic data (synth-dg's domains stand in for {', '.join(c for _, c in stand_ins)})"
        else:
            data_text = "synthetic data (" + ", ".join(f"{s} for {c}" for s, c in stand_ins) + ")"
    else:
        data_text = f"real data ({', '.join(datasets)})"
    scales = sorted({c.scale for c in template.columns})
    raw = [c.label for c in template.columns if c.scale == "raw"]
    scale_text = {"percent": "accuracies and F1 in percent", "fraction": "accuracies as fractions",
                  "raw": " and ".join(dict.fromkeys(raw)) + " as raw values"}
    caption = (f"Layout of {template.paper.upper()} Table {template.table} ({info['caption']}). "
               f"Protocol {template.protocol} v{version}; test split; mean ± std (ddof=1) over "
               f"{'/'.join(map(str, seeds)) or '0'} seeds; " + caption_text(rule)
               + f"; {data_text}."
               + grid_caption(template, datasets) + " "
               + _sentence("; ".join(scale_text[s] for s in scales)) + ", as the paper prints them. "
               + "Best bold, second underlined, among our rows. Rows marked 'published only' show the paper's "
                 "numbers (not run here).")
    masking_note = text_masking_note(relevant)
    caption += masking_note + data_notes(template.protocol, used, synthetic)
    if compare_paper:
        caption += (" '(paper)' rows show the published numbers"
                    + ("; on synthetic data no differences are shown: they measure other data." if synthetic
                       else "; 'Δ' rows: ours minus the paper's" + (" (none for smoke runs)." if any(
                           is_smoke(v) for v in used) else ".")))
    notes = (list(template.notes) + ([template.metric_note] if template.metric_note else [])
             + [f"About the paper's numbers: {n}" for n in template.paper_notes]
             + [f"{GRID_FLAG} {label} ({_metrics_text(cols)}): {caveat}."
                for (label, caveat), cols in grid_notes.items()]
             + caveats)
    if compare_paper and template.paper_notes:
        caption += " Read the '(paper)' rows with the notes on the paper's numbers below."
    table = Table(id=template.name, title=template.title, columns=columns, rows=rows, caption=caption, notes=notes,
                  meta={"template": template.name, "paper": template.paper, "paper_table": template.table,
                        "protocol": template.protocol, "version": version, "selection": rule,
                        "synthetic": synthetic, "datasets": datasets, "compare_paper": compare_paper,
                        "row_models": models, "real": bool(real),
                        "text_masked_after_encoding": bool(masking_note)})
    note_dashes(table)
    if reference:
        mark_significance(table, values, reference, test=test, items=items)
    table.rank_cells()
    table.meta.pop("row_models", None)
    return table


def _metrics_text(parts: list[tuple[str, str]]) -> str:
    """[("mosi", "mae"), ("mosi", "corr")] -> "mosi mae, corr"."""
    by_domain: dict[str, list[str]] = {}
    for domain, metric in parts:
        by_domain.setdefault(domain, []).append(metric)
    return "; ".join(f"{d} {', '.join(ms)}" for d, ms in by_domain.items())


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
