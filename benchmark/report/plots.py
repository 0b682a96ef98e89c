"""Plots for reports (`msabench report --plots DIR`), PNG and PDF, with matplotlib (Agg; torch-free).

- metric vs missing rate per dataset (EMT-DLFR Figs. 4-6), from the missing-rate runs' curves;
- from each feature-analysis run's `analysis.json` (S2LIF Figs. 4-8): the across-domain selection
  heatmap (Fig. 4), retained proportions (Fig. 5), cross-modal independence per text feature
  (Fig. 6), intra-modal independence (Fig. 7) and feature-label dependence of selected vs removed
  features (Fig. 8).

Every plot function takes plain dicts and lists, so it is usable (and tested) without a store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError

FORMATS = ("png", "pdf")
LABELS = {"mae": "MAE", "corr": "Corr", "acc7": "Acc-7", "acc5": "Acc-5", "acc3": "Acc-3", "acc2": "Acc-2",
          "acc2_has0": "Acc-2 (has0)", "acc2_non0": "Acc-2 (non0)", "f1": "F1", "f1_has0": "F1 (has0)",
          "f1_non0": "F1 (non0)", "acc": "Accuracy", "f1_weighted": "weighted F1", "mean_f1": "mean F1"}
# EMT-DLFR's four representative metrics (MAE, Corr, Acc-7 / Acc-5, Acc-2 on negative/positive).
FIGURE_METRICS = {"default": ("mae", "corr", "acc7", "acc2_non0"), "sims": ("mae", "corr", "acc5", "acc2")}


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plots needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "plot"


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in FORMATS:
        path = stem.with_name(stem.name + "." + fmt)
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(path, format=fmt, bbox_inches="tight", metadata=metadata, dpi=120)
        out.append(path)
    _plt().close(fig)
    return out


def _percent(metric: str) -> bool:
    return metric not in ("mae", "corr")


# -- metric vs missing rate -----------------------------------------------------------------------
def plot_missing_rate(curves: Mapping[str, Mapping[str, Mapping[str, Sequence]]], stem: str | Path, *,
                      title: str = "", metrics: Sequence[str] | None = None) -> list[Path]:
    """One figure, one panel per metric, one line per row (model) with a ±std band.

    curves: {row label: {metric: {"rates": [...], "mean": [...], "std": [...]}}} (fractions)."""
    plt = _plt()
    if metrics is None:
        available = {m for row in curves.values() for m in row}
        metrics = next((ms for ms in FIGURE_METRICS.values() if set(ms) <= available), sorted(available)[:4])
    metrics = [m for m in metrics if any(m in row for row in curves.values())]
    if not metrics:
        raise ValueError("plot_missing_rate: no metric to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.3), squeeze=False)
    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(curves))}  # one colour per row in every panel
    for ax, metric in zip(axes[0], metrics):
        factor = 100.0 if _percent(metric) else 1.0
        for label, row in sorted(curves.items()):
            curve = row.get(metric)
            if not curve or not curve.get("rates"):
                continue
            rates = list(curve["rates"])
            mean = [None if v is None else v * factor for v in curve["mean"]]
            std = [0.0 if s is None else s * factor for s in (curve.get("std") or [None] * len(rates))]
            pts = [(r, m, s) for r, m, s in zip(rates, mean, std) if m is not None]
            if not pts:
                continue
            xs, ys, ss = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=3, label=label, color=colors[label])
            ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)], alpha=0.15,
                            color=colors[label])
        ax.set_xlabel("missing rate")
        ax.set_ylabel(LABELS.get(metric, metric) + (" (%)" if _percent(metric) else ""))
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", markersize=3, label=label) for label, c in colors.items()]
    axes[0][0].legend(handles=handles, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(stem))


# -- S2LIF Figs. 4-8 from plain dicts -------------------------------------------------------------
def plot_selection_heatmap(matrix: Sequence[Sequence[int]], domains: Sequence[str], stem: str | Path, *,
                           title: str = "", consistent: Sequence[int] = ()) -> list[Path]:
    """Fig. 4: selected (1) / removed (0) features per domain; features selected in every domain
    are marked '1' above the map."""
    import numpy as np

    plt = _plt()
    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2 or data.shape[0] != len(domains):
        raise ValueError(f"plot_selection_heatmap: matrix {data.shape} does not match {len(domains)} domains")
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 0.12 * data.shape[1] + 2)), 0.5 * len(domains) + 1.4))
    ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(domains)), labels=list(domains))
    ax.set_xlabel("feature")
    for j in consistent:
        if 0 <= j < data.shape[1]:
            ax.text(j, -0.7, "1", ha="center", va="bottom", fontsize=6)
    ax.set_title(title or "selected features per domain", fontsize=9, pad=14)
    return _save(fig, Path(stem))


def plot_ratio_bars(ratios: Mapping[str, float | None], stem: str | Path, *, title: str = "",
                    xlabel: str = "", what: tuple[str, str] = ("independent", "dependent")) -> list[Path]:
    """Figs. 5-8 style: per key, the ratio (e.g. independent) stacked with its complement."""
    plt = _plt()
    keys = [k for k, v in ratios.items() if v is not None]
    if not keys:
        raise ValueError("plot_ratio_bars: no ratio to plot")
    values = [float(ratios[k]) for k in keys]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.35 * len(keys) + 1.5), 3.0))
    xs = range(len(keys))
    ax.bar(xs, values, label=what[0], color="#4c72b0")
    ax.bar(xs, [1 - v for v in values], bottom=values, label=what[1], color="#dd8452")
    long = len(keys) > 8 or max(len(k) for k in keys) * len(keys) > 40
    ax.set_xticks(list(xs), labels=keys, rotation=90 if len(keys) > 8 else (30 if long else 0),
                  ha="center" if len(keys) > 8 or not long else "right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ratio")
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(stem))


def plot_label_dependence(blocks: Mapping[str, Mapping[str, float | None]], stem: str | Path, *,
                          title: str = "") -> list[Path]:
    """Fig. 8: per block, the proportion of selected and of removed features dependent on the label."""
    import numpy as np

    plt = _plt()
    names = [b for b, d in blocks.items() if d.get("selected") is not None or d.get("removed") is not None]
    if not names:
        raise ValueError("plot_label_dependence: nothing to plot")
    xs = np.arange(len(names))
    sel = [blocks[b].get("selected") or 0.0 for b in names]
    rem = [blocks[b].get("removed") or 0.0 for b in names]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(names) + 1.5), 3.0))
    ax.bar(xs - 0.2, sel, width=0.4, label="selected")
    ax.bar(xs + 0.2, rem, width=0.4, label="removed")
    ax.set_xticks(list(xs), labels=names, fontsize=7, rotation=30 if len(names) > 2 else 0,
                  ha="right" if len(names) > 2 else "center")
    ax.set_ylim(0, 1)
    ax.set_ylabel("dependent on the label")
    ax.legend(fontsize=7)
    ax.set_title(title or "feature-label dependence", fontsize=9)
    return _save(fig, Path(stem))


def plots_from_analysis(analysis: Mapping[str, Any], out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Every S2LIF-style plot that `analysis` (an analysis.json dict) has data for."""
    out_dir = Path(out_dir)
    prefix = _slug(prefix or str(analysis.get("run_id", "analysis")))
    model = analysis.get("model", "")
    written: list[Path] = []
    domains = list(analysis.get("domains") or [])
    for block, cons in (analysis.get("consistency") or {}).items():
        if cons.get("matrix") and domains:
            matrix = cons["matrix"]
            every = [j for j in range(len(matrix[0])) if all(row[j] for row in matrix)] if matrix else []
            written += plot_selection_heatmap(matrix, domains, out_dir / f"{prefix}-selection-{_slug(block)}",
                                              title=f"{model} {block}: selected features per domain", consistent=every)
    per_domain = analysis.get("per_domain") or {}
    retained, intra, dependence = {}, {}, {}
    for domain, info in per_domain.items():
        for block, b in (info.get("blocks") or {}).items():
            key = f"{domain} {block}" if len(per_domain) > 1 else block
            retained[key] = b.get("retained")
            intra[key] = b.get("intra_independence")
            if b.get("label_dependence"):
                dependence[key] = b["label_dependence"]
            per = b.get("intra_independence_per_feature") or []
            if per:
                written += plot_ratio_bars({str(i): v for i, v in enumerate(per)},
                                           out_dir / f"{prefix}-intra-{_slug(domain)}-{_slug(block)}",
                                           title=f"{model} {domain} {block}: intra-modal independence (Fig. 7)",
                                           xlabel="selected feature")
        for pair, c in (info.get("cross_independence") or {}).items():
            per = c.get("per_feature_of_first") or []
            if per:
                written += plot_ratio_bars({str(i): v for i, v in enumerate(per)},
                                           out_dir / f"{prefix}-cross-{_slug(domain)}-{_slug(pair)}",
                                           title=f"{model} {domain} {pair}: cross-modal independence (Fig. 6)",
                                           xlabel="selected feature of the first block")
    if any(v is not None for v in retained.values()):
        written += plot_ratio_bars(retained, out_dir / f"{prefix}-retained", title=f"{model}: retained features (Fig. "
                                   "5)",
                                   what=("retained", "removed"))
    if any(v is not None for v in intra.values()):
        written += plot_ratio_bars(intra, out_dir / f"{prefix}-intra", title=f"{model}: intra-modal independence (Fig. "
                                   "7)")
    if dependence:
        written += plot_label_dependence(dependence, out_dir / f"{prefix}-label-dependence",
                                         title=f"{model}: feature-label dependence (Fig. 8)")
    return written


def plots_from_store(views, out_dir: str | Path, *, selection: str | None = None, out: str | None = None) -> list[Path]:
    """Missing-rate curves of the store's runs and the plots of every analysis.json it holds."""
    from msabench.report.aggregate import is_rate_run, rate_curves

    out_dir = Path(out_dir)
    written: list[Path] = []
    rate_views = [v for v in views if is_rate_run(v.spec)]
    for key, group in rate_curves(rate_views, selection).items():
        protocol, _, setting, datasets = key
        name = "+".join(datasets)
        curves = {label: {m: {"rates": c["rates"], "mean": c["mean"], "std": c["std"]} for m, c in row.items()}
                  for label, row in group["rows"].items()}
        family = "sims" if any(d.endswith("sims") for d in datasets) else "default"
        metrics = [m for m in FIGURE_METRICS[family] if any(m in r for r in curves.values())] or None
        written += plot_missing_rate(curves, out_dir / f"{_slug(protocol)}-{_slug(name)}", metrics=metrics,
                                     title=f"{protocol} on {name} (selection '{group['rule']}')")
    if out is not None:
        import json

        for v in views:
            path = Path(out) / "runs" / v.run_id / "analysis.json"
            if path.is_file():
                written += plots_from_analysis(json.loads(path.read_text()), out_dir, prefix=v.run_id[:12])
    return written
