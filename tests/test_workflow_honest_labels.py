"""Honest labels (issue: the researcher's workflow, item 7): beside the papers' published numbers, a row
from synthetic data or a `--tiny` smoke run says so in the row itself; a smoke run gets no "ours -
paper" difference; captions state the epoch cap and data scale of the synthetic-suite policy."""

from __future__ import annotations

from fabricate import fabricate_views

from msabench.protocols.templates import TEMPLATES
from msabench.report.aggregate import generic_tables
from msabench.report.paper import build_template_table
from msabench.report.render import to_csv, to_markdown


def _smoke(views):
    for v in views:
        v.spec["smoke"] = True
    return views


def _ours(table):
    return [r for r in table.rows if r.kind == "ours"]


def test_synthetic_rows_beside_published_numbers_say_so():
    template = TEMPLATES.get("s2lif-table2")
    table = build_template_table(template, fabricate_views(template, ["mult@frozen"]), compare_paper=True)
    text = to_markdown(table)
    assert "| MuLT (M-Frozen) [synthetic data] |" in text
    assert "| MuLT (M-Frozen) (paper) |" in text
    assert ",MuLT (M-Frozen),synthetic data," in to_csv([table])  # the CSV's row_caveat column
    assert "Synthetic-suite policy of dg-multisource: train.epochs capped at 8, data.scale 0.05" in table.caption
    assert not any(r.kind == "delta" for r in table.rows)


def test_a_smoke_run_on_real_data_is_marked_and_never_compared():
    template = TEMPLATES.get("emt-table4")
    model = next(r.model for r in template.rows if r.model)
    real = fabricate_views(template, [model], real=True)
    table = build_template_table(template, real, compare_paper=True)
    assert [r.caveat for r in _ours(table)] == [""]
    assert any(r.kind == "delta" for r in table.rows)  # a real run is compared

    smoke = build_template_table(template, _smoke(fabricate_views(template, [model], real=True)),
                                 compare_paper=True)
    (row,) = _ours(smoke)
    assert row.caveat == "smoke run" and f"| {row.label} [smoke run] |" in to_markdown(smoke)
    assert not any(r.kind == "delta" for r in smoke.rows)
    assert "--tiny smoke runs" in smoke.caption and "none for smoke runs" in smoke.caption


def test_generic_tables_mark_smoke_rows_and_state_the_policy():
    template = TEMPLATES.get("mtmd-table1")
    views = fabricate_views(template, ["lf_dnn"]) + _smoke(fabricate_views(template, ["constant"]))
    for v in views:
        v.spec["config"].update({"train.epochs": 3 if v.spec.get("smoke") else 10, "data.scale": 0.05})
    table = generic_tables(views, None)[0]  # one per dataset of the template; each alike
    assert {r.label: r.caveat for r in table.rows} == {"constant": "smoke run", "lf_dnn": ""}
    assert "Synthetic-suite policy of standard: train.epochs capped at 10, data.scale 1; these runs: " \
           "train.epochs 3/10, data.scale 0.05." in table.caption


def test_tiny_plans_smoke_runs(tmp_path):
    from msabench.plan.planner import plan
    from msabench.plan.request import Request

    (spec,) = plan(Request(protocol="standard", models=("constant",), seeds=(1,), tiny=True))
    assert spec.smoke and spec.to_dict()["smoke"] is True
    (full,) = plan(Request(protocol="standard", models=("constant",), seeds=(1,)))
    assert not full.smoke and "smoke" not in full.to_dict()
