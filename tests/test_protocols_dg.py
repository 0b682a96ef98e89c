"""`dg-single` / `dg-multisource`: settings, plans, lodo helpers, selection over records.

Runs on the synthetic DG suite (and on real data when ../shared/data is present) are in
tests/test_protocols_dg_runs.py.
"""

from __future__ import annotations

import pytest

from msabench.core.errors import UserError
from msabench.plan.request import Request
from msabench.protocols import PROTOCOLS
from msabench.protocols.dg import is_lodo_helper, lodo_records, resolve_domains
from msabench.report.aggregate import RunView, chosen_metrics, lodo_helpers, selected_epoch

SINGLE = PROTOCOLS.get("dg-single")
MULTI = PROTOCOLS.get("dg-multisource")
D = {f: f"synth-dg/{f}" for f in ("mosi", "mosei", "meld")}


def selected(spec_records, rule, views=()):
    """What `report` shows for a run (`msabench.report.aggregate`): the epoch `rule` picks and the
    test metrics per domain there; `views` supplies the lodo helpers."""
    view = RunView("main", *spec_records)
    lodo = lodo_helpers(view, [RunView(str(i), s, r) for i, (s, r) in enumerate(views)]) if rule == "lodo" else ()
    return {"epoch": selected_epoch(view, rule, lodo), "domains": chosen_metrics(view, rule, lodo)}


def test_single_source_settings_match_s2lif_table1():
    runs = SINGLE.plan(Request(seeds=(1,)))
    got = {r.setting: (r.source_domains, r.target_domains) for r in runs}
    assert got == {
        "A": ((D["mosei"],), (D["mosi"], D["meld"])),
        "B": ((D["mosi"],), (D["meld"], D["mosei"])),
        "C": ((D["meld"],), (D["mosi"], D["mosei"])),
    }
    for r in runs:
        assert r.datasets == r.source_domains + r.target_domains
        assert (r.task, r.label_rule, r.modalities) == ("classification", "round", ("t", "v"))
        assert r.selection_rules == ("train-domain", "oracle")


def test_multi_source_settings_match_s2lif_table2_with_lodo_helpers():
    runs = MULTI.plan(Request())
    mains = [r for r in runs if r.role == "main"]
    helpers = [r for r in runs if r.role == "lodo-helper"]
    assert len(mains) == 3 * 3 and len(helpers) == 2 * 3 * 3
    assert MULTI.plan(Request(selection="lodo")) == runs
    # --selection never changes the main runs (nor their ids); train-domain / oracle need no helpers
    assert MULTI.plan(Request(selection="train-domain")) == mains
    got = {r.setting: (r.source_domains, r.target_domains) for r in mains}
    assert got == {
        "A": ((D["mosei"], D["meld"]), (D["mosi"],)),
        "B": ((D["mosi"], D["meld"]), (D["mosei"],)),
        "C": ((D["mosi"], D["mosei"]), (D["meld"],)),
    }
    assert all(r.selection_rules[0] == "train-domain" and "lodo" in r.selection_rules for r in mains)
    a1 = [h for h in helpers if h.setting == "A" and h.seed == 1]
    assert {(h.train_domains, h.valid_domains) for h in a1} == {
        ((D["meld"],), (D["mosei"],)), ((D["mosei"],), (D["meld"],))}
    for h in a1:  # never sees the target; the held-out source only through its valid split
        assert D["mosi"] not in h.datasets
        assert h.target_domains == h.valid_domains and h.source_domains == h.train_domains


def test_setting_and_selection_options():
    assert {r.setting for r in MULTI.plan(Request(setting="B"))} == {"B"}
    oracle = MULTI.plan(Request(selection="oracle", setting="A", seeds=(1,)))
    assert [r.selection_rules for r in oracle] == [("train-domain", "oracle", "lodo")]
    with pytest.raises(UserError, match="dg-multisource"):
        SINGLE.plan(Request(selection="lodo"))
    with pytest.raises(UserError, match="setting"):
        MULTI.plan(Request(setting="D"))
    with pytest.raises(UserError, match="missing-rate"):
        MULTI.plan(Request(rates=(0.0, 0.5)))


def test_domains_from_dataset_options():
    assert resolve_domains(()) == D
    assert resolve_domains(("synth-dg",)) == D
    assert resolve_domains(("mosi", "mosei", "meld")) == {"mosi": "mosi", "mosei": "mosei", "meld": "meld"}
    with pytest.raises(UserError, match="MOSI, MOSEI and MELD"):
        resolve_domains(("sims",))
    with pytest.raises(UserError, match="both the MOSI domain"):
        resolve_domains(("mosi", "synth-dg/mosi"))
    with pytest.raises(UserError, match="MOSEI"):  # setting A needs MOSEI
        MULTI.plan(Request(datasets=("mosi", "meld"), setting="A"))


def test_describe_has_settings_rules_and_defaults():
    info = MULTI.describe()
    assert info["settings"] == ["A", "B", "C"] and info["default_selection"] == "train-domain"
    assert info["selection_rules"] == ["train-domain", "oracle", "lodo"]
    assert info["settings_detail"]["C"] == {"sources": ["mosi", "mosei"], "targets": ["meld"],
                                            "description": "MOSI+MOSEI -> MELD"}
    assert info["label_rule"] == "round" and info["modalities"] == ["t", "v"] and info["seeds"] == [1, 2, 3]


# -- selection over records -------------------------------------------------------------------------------

SRC, TGT = ("s1", "s2"), ("t",)


def _rec(epoch, split, domain, acc):
    return {"epoch": epoch, "split": split, "domain": domain, "rate": 0.0, "metrics": {"acc": acc, "f1_weighted": acc}}


def _main_records():
    # source-valid best at epoch 0, target-valid best at epoch 2; test acc = 10 * epoch + domain code
    out = []
    for e in range(4):
        out += [_rec(e, "valid", "s1", [0.9, 0.5, 0.4, 0.3][e]), _rec(e, "valid", "s2", [0.8, 0.5, 0.4, 0.3][e]),
                _rec(e, "valid", "t", [0.1, 0.2, 0.9, 0.3][e])]
        out += [_rec(e, "test", d, e + k / 10) for k, d in enumerate(("s1", "s2", "t"))]
    return out


def _spec(**kw):
    base = {"protocol": "dg-multisource", "protocol_version": "1.0", "setting": "A", "model": "m",
            "config": {"k": 1}, "impl_version": 1, "seed": 1, "modalities": ["t", "v"], "label_rule": "round",
            "task": "classification", "msabench_version": "0.1", "datasets": ["s1", "s2", "t"],
            "source_domains": list(SRC), "target_domains": list(TGT), "rate": 0.0,
            "selection_rules": ["train-domain", "oracle", "lodo"], "train_domains": [], "valid_domains": []}
    base.update(kw)
    return base


def _helper(train, held, best_epoch, **kw):
    spec = _spec(datasets=[train, held], source_domains=[train], target_domains=[held], train_domains=[train],
                 valid_domains=[held], selection_rules=["train-domain"], **kw)
    recs = []
    for e in range(4):
        recs.append(_rec(e, "valid", held, 0.9 if e == best_epoch else 0.2))
        recs.append(_rec(e, "valid", train, 1.0 if e == 0 else 0.1))  # must not count: not held out
    return spec, recs


def test_train_domain_oracle_and_lodo_pick_their_epochs():
    main = (_spec(), _main_records())
    assert selected(main, "train-domain")["epoch"] == 0
    oracle = selected(main, "oracle")
    assert oracle["epoch"] == 2 and oracle["domains"]["t"]["acc"] == pytest.approx(2.2)
    assert selected(main, "lodo") == {"epoch": None, "domains": {}}  # no helpers yet
    helpers = [_helper("s2", "s1", 3), _helper("s1", "s2", 3)]
    assert all(is_lodo_helper(h[0]) for h in helpers) and not is_lodo_helper(main[0])
    lodo = lodo_records(main, [main, *helpers])
    assert [sorted({r["domain"] for r in rs}) for rs in lodo] == [["s1"], ["s2"]]
    chosen = selected(main, "lodo", [main, *helpers])
    assert chosen["epoch"] == 3 and chosen["domains"]["s1"]["acc"] == pytest.approx(3.0)


def test_lodo_helpers_of_another_model_or_seed_do_not_count():
    main = (_spec(), _main_records())
    others = [_helper("s2", "s1", 3, seed=2), _helper("s1", "s2", 3, model="other")]
    assert lodo_records(main, others) is None
    assert lodo_records(main, [_helper("s2", "s1", 3)]) is None  # one source lacks its helper
