"""Protocols own their behaviour (kinds, the after-run hook, selection rules with labels), one
request type, one answer to "family / synthetic" for a dataset name, and a plan the runner holds
to (the InputSpec planning measured, the data hashes it recorded)."""

from __future__ import annotations

import dataclasses

import pytest

from msabench.core.errors import UserError
from msabench.core.types import RunSpec
from msabench.data import names
from msabench.evaluation.selection import RULES, SELECTION_RULES, caption_text, check_rule, rules_during_training
from msabench.plan.planner import plan
from msabench.plan.request import Request
from msabench.protocols import PROTOCOLS, kind_of, names_of_kind, protocol_of


@pytest.mark.parametrize("name, family, synthetic", [
    ("mosi", "mosi", False), ("synth-mosi", "mosi", True), ("synth-dg/meld", "meld", True),
    ("synth-dg", "", True), ("iemocap", "iemocap", False), ("synthetic-like", "", False), ("nosuch", "", False),
])
def test_one_module_answers_family_and_synthetic(name, family, synthetic):
    assert (names.family_of(name), names.is_synthetic(name)) == (family, synthetic)


def test_the_dataset_registry_agrees_with_the_names_module():
    from msabench.data.datasets import DATASETS

    for name, info in DATASETS.items():
        assert (info.family, info.synthetic) == (names.family_of(name), names.is_synthetic(name)), name


def test_protocol_kinds_are_attributes():
    assert set(names_of_kind("dg")) == {"dg-single", "dg-multisource"}
    assert set(names_of_kind("missing-rate")) == {"missing-rate", "missing-rate-eval"}
    assert [n for n, p in PROTOCOLS.items() if p.tests_every_rate] == ["missing-random", "missing-rate-eval"]
    assert [n for n, p in PROTOCOLS.items() if p.analyses_stored_runs] == ["feature-analysis"]
    assert PROTOCOLS.get("dg-single").is_dg and not PROTOCOLS.get("standard").is_dg
    assert kind_of("no-such-protocol") == "" and protocol_of("no-such-protocol") is None
    assert all(p.describe()["kind"] == p.kind for _, p in PROTOCOLS.items())


def test_the_after_run_hook_is_the_protocols(monkeypatch):
    calls = []
    import msabench.evaluation.feature_analysis as fa

    monkeypatch.setattr(fa, "analyse_run", lambda *args: calls.append(args))
    PROTOCOLS.get("standard").after_run("spec", "dir", "model", [], [], "result", "cpu")  # the default: nothing
    assert calls == []
    PROTOCOLS.get("feature-analysis").after_run("spec", "dir", "model", [], [], "result", "cpu")
    assert calls == [("spec", "dir", "model", [], [], "result", "cpu")]


def test_selection_rules_are_registered_once_with_labels():
    assert RULES == ("val", "train-domain", "oracle", "lodo", "last")
    assert all(SELECTION_RULES.get(r).label for r in RULES)
    assert rules_during_training(("train-domain", "oracle", "lodo")) == ("train-domain", "oracle")
    assert caption_text("oracle") == "selection rule 'oracle' (oracle: selected on the target valid split)"
    assert caption_text("val") == "selection rule 'val'"
    with pytest.raises(UserError, match="use one of val, train-domain"):
        check_rule("best")
    for _, protocol in PROTOCOLS.items():  # every protocol's rules are registered ones
        assert set(protocol.selection_rules) <= set(RULES)


def test_a_protocol_with_an_unregistered_rule_is_refused():
    with pytest.raises(ValueError, match="unregistered selection rules"):
        dataclasses.replace(PROTOCOLS.get("standard"), selection_rules=("best-ever",))


def test_one_request_type_feeds_the_protocols_and_the_planner():
    request = Request(protocol="missing-rate", datasets=("synth-sims",), seeds=(7,), rates=(0.0, 0.5))
    runs = PROTOCOLS.get("missing-rate").plan(request)
    assert [(r.datasets, r.seed, r.rate) for r in runs] == [(("synth-sims",), 7, 0.0), (("synth-sims",), 7, 0.5)]


@pytest.fixture(scope="module")
def planned() -> RunSpec:
    (spec,) = plan(Request(models=("linear_probe",), datasets=("synth-mosi",), seeds=(1,), tiny=True))
    return spec


def test_planning_keeps_its_input_spec_outside_the_run_id(planned):
    assert planned.input_spec is not None and planned.input_spec.domains == ("synth-mosi",)
    assert "input_spec" not in planned.to_dict()
    stored = RunSpec.from_dict(planned.to_dict())
    assert stored.input_spec is None and stored.run_id == planned.run_id and stored == planned


def test_the_runner_refuses_data_other_than_the_plan_measured(planned, tmp_path):
    from msabench.engine.options import RunOptions
    from msabench.execution.base import run_one
    from msabench.store.runs import Store

    stale = dataclasses.replace(planned, data_hashes=("0123456789abcdef",))
    store = Store(tmp_path)
    with pytest.raises(UserError, match="synth-mosi changed since the run was planned"):
        run_one(stale, store, RunOptions(device="cpu", threads=1), retry_failed=False)
    assert store.run_dir(stale.run_id).status() not in ("failed", "done")


def test_models_listing_has_one_line_summaries():
    from click.testing import CliRunner

    from msabench.cli.app import cli

    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0
    for line in result.output.strip().splitlines():
        name, version, summary = line.split(None, 2)
        assert summary.strip() and not summary.startswith("`"), line
