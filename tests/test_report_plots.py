"""Plots (PNG and PDF) from plain dicts: metric vs missing rate (EMT-DLFR Figs. 4-6) and the
S2LIF Figs. 4-8 plots from an analysis.json-shaped dict (fabricated here, in the format that
msabench.evaluation.feature_analysis writes), plus `report --plots` over a fabricated missing-rate store."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from msabench.report.plots import (  # noqa: E402
    plot_label_dependence,
    plot_missing_rate,
    plot_ratio_bars,
    plot_selection_heatmap,
    plots_from_analysis,
)


def _ok(paths, n=2):
    assert len(paths) == n and {p.suffix for p in paths} == {".png", ".pdf"}
    for p in paths:
        assert p.stat().st_size > 1000
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")


def test_missing_rate_curves(tmp_path):
    rates = [0.0, 0.5, 1.0]
    curves = {"tfn": {"mae": {"rates": rates, "mean": [1.0, 1.2, 1.4], "std": [0.01, 0.02, 0.03]},
                      "corr": {"rates": rates, "mean": [0.6, 0.4, 0.2], "std": [None, None, None]},
                      "acc7": {"rates": rates, "mean": [0.3, 0.25, 0.2], "std": [0.0, 0.0, 0.0]},
                      "acc2_non0": {"rates": rates, "mean": [0.8, 0.7, None], "std": [0.01, 0.01, None]}},
              "constant": {"mae": {"rates": rates, "mean": [1.5, 1.5, 1.5], "std": [0, 0, 0]}}}
    _ok(plot_missing_rate(curves, tmp_path / "mosi", title="missing-rate on synth-mosi"))


def test_heatmap_bars_and_dependence(tmp_path):
    _ok(plot_selection_heatmap([[1, 0, 1, 1], [1, 1, 0, 1]], ["mosei", "meld"], tmp_path / "heat", consistent=[0, 3]))
    _ok(plot_ratio_bars({"t": 0.8, "v": 0.6, "a": None}, tmp_path / "bars"))
    _ok(plot_label_dependence({"t": {"selected": 0.9, "removed": 0.1}, "v": {"selected": 0.7, "removed": None}},
                              tmp_path / "dep"))
    with pytest.raises(ValueError):
        plot_selection_heatmap([[1, 0]], ["a", "b"], tmp_path / "bad")


def fabricated_analysis() -> dict:
    domains = ["synth-dg/mosei", "synth-dg/meld"]
    block = {"selected": [0, 2], "retained": 0.5, "intra_independence": 0.75,
             "intra_independence_per_feature": [0.5, 1.0],
             "label_dependence": {"selected": 0.9, "removed": 0.2, "n_selected": 2, "n_removed": 2}}
    return {
        "schema": 1, "alpha": 0.05, "domains": domains, "run_id": "abc123", "model": "s2lif@t2v-frozen",
        "blocks": {"input/t": {"modality": "t", "dim": 4}, "input/v": {"modality": "v", "dim": 4}},
        "per_domain": {d: {"n": 50, "blocks": {"input/t": block, "input/v": block},
                           "cross_independence": {
                               "input/t|input/v": {"ratio": 0.8, "per_feature_of_first": [0.7, 0.9]}}}
                       for d in domains},
        "consistency": {"input/t": {"matrix": [[1, 0, 1, 0], [1, 1, 1, 0]], "selected_in_all": [0, 2]},
                        "input/v": {"matrix": [[0, 0, 1, 1], [0, 1, 1, 1]], "selected_in_all": [2, 3]}},
    }


def test_plots_from_analysis(tmp_path):
    written = plots_from_analysis(fabricated_analysis(), tmp_path)
    names = {p.name for p in written}
    for stem in ("abc123-selection-input-t", "abc123-retained", "abc123-intra", "abc123-label-dependence",
                 "abc123-cross-synth-dg-mosei-input-t-input-v"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names


def test_report_plots_over_a_missing_rate_store(tmp_path, capsys):
    from fabricate import fabricate_views, write_store

    from msabench.cli import main
    from msabench.protocols.templates import TEMPLATES

    store = tmp_path / "store"
    write_store(fabricate_views(TEMPLATES.get("emt-table7"), ["tfn", "constant"], seeds=(1, 2)), str(store))
    assert main(["report", "--out", str(store), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "auilc_norm" in out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["missing-rate-synth-sims.pdf",
                                                                     "missing-rate-synth-sims.png"]
