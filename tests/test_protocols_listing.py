"""`msabench protocols --json`: every protocol with its version, settings, selection rules and defaults."""

from __future__ import annotations

import json

from msabench.cli import main

EXPECTED = {
    "standard": ([], "val"),
    "missing-rate": ([], "val"),
    "missing-rate-eval": ([], "val"),
    "dg-single": (["A", "B", "C"], "train-domain"),
    "dg-multisource": (["A", "B", "C"], "train-domain"),
    "feature-analysis": (["A", "B", "C"], "train-domain"),
}


def test_protocols_json_lists_versions_settings_rules_and_defaults(capsys):
    assert main(["protocols", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(EXPECTED) <= set(info)
    for name, (settings, default_rule) in EXPECTED.items():
        p = info[name]
        assert p["version"] and p["settings"] == settings and p["default_selection"] == default_rule
        assert p["selection_rules"][0] == default_rule and p["seeds"] and p["quick_models"]
        assert p["default_dataset"] and "synthetic_policy" in p and p["label_rule"] in ("sign", "round")
    assert info["dg-multisource"]["selection_rules"] == ["train-domain", "oracle", "lodo"]
    assert info["dg-single"]["selection_rules"] == ["train-domain", "oracle"]
    assert info["missing-rate"]["rates"]["sims"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert len(info["missing-rate"]["rates"]["mosi"]) == 11
    assert info["feature-analysis"]["outputs"] == ["features.npz", "analysis.json"]
    assert main(["protocols"]) == 0
    assert "dg-multisource" in capsys.readouterr().out
