"""`missing-rate` and `missing-rate-eval`: grids, plans, curves and AUILC from records.

The AUILC definition itself is checked against EMT-DLFR's SIMS Acc-2 curve (38.41) in
tests/test_metrics.py::test_auilc_reproduces_emt_dlfr_sims_acc2; here the curves built from
stored records must give the same numbers as `msabench.metrics.auilc` on the same points.
"""

from __future__ import annotations

import pytest

from msabench.core.errors import UserError
from msabench.metrics import auilc, auilc_norm
from msabench.plan.request import Request
from msabench.protocols import PROTOCOLS
from msabench.protocols.missing_rate import GRID_FULL, GRID_SIMS, curve_summary, curves, default_grid, run_curve

MR = PROTOCOLS.get("missing-rate")
MRE = PROTOCOLS.get("missing-rate-eval")


def test_grids_follow_emt_dlfr():
    assert GRID_FULL == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert GRID_SIMS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert default_grid("mosi") == GRID_FULL and default_grid("synth-mosei") == GRID_FULL
    assert default_grid("sims") == GRID_SIMS and default_grid("synth-sims") == GRID_SIMS


def test_missing_rate_plans_one_run_per_rate_and_seed_on_all_modalities():
    runs = MR.plan(Request())
    assert len(runs) == 11 * 3
    assert {r.datasets for r in runs} == {("synth-mosi",)}
    assert sorted({r.rate for r in runs}) == list(GRID_FULL)
    assert {r.seed for r in runs} == {1, 2, 3}
    assert all(r.modalities == ("t", "a", "v") and r.eval_rates == () for r in runs)
    assert all(r.selection_rules[0] == "val" for r in runs)
    sims = MR.plan(Request(datasets=("synth-sims",), seeds=(7,)))
    assert [r.rate for r in sims] == list(GRID_SIMS)


def test_rates_override_and_are_checked():
    runs = MR.plan(Request(rates=(0.0, 0.5), seeds=(1,)))
    assert [r.rate for r in runs] == [0.0, 0.5]
    with pytest.raises(UserError, match="increasing"):
        MR.plan(Request(rates=(0.5, 0.2)))
    with pytest.raises(UserError, match="no settings"):
        MR.plan(Request(setting="A"))


def test_missing_rate_eval_trains_complete_and_tests_every_rate():
    runs = MRE.plan(Request(datasets=("synth-sims",)))
    assert len(runs) == 3
    assert all(r.rate == 0.0 and r.eval_rates == GRID_SIMS for r in runs)


def test_describe_lists_grids_and_defaults():
    info = MR.describe()
    assert info["rates"]["sims"] == list(GRID_SIMS) and info["seeds"] == [1, 2, 3]
    assert info["masks"]["mask_seeds"] == {"t": 111, "a": 1111, "v": 11111}
    assert MRE.describe()["train_rate"].startswith("0")


# -- curves from records -----------------------------------------------------------------------------------


def _records(rate_values: dict[float, float], valid_by_epoch: list[float], train_rate: float = 0.0,
             domain: str = "synth-mosi"):
    """Records of one run: valid MAE per epoch at `train_rate`; test acc2 per epoch and rate
    (the value at the best epoch is `rate_values[rate]`, other epochs are worse)."""
    best = min(range(len(valid_by_epoch)), key=lambda e: valid_by_epoch[e])
    out = []
    for e, mae in enumerate(valid_by_epoch):
        out.append({"epoch": e, "split": "valid", "domain": domain, "rate": train_rate,
                    "metrics": {"mae": mae, "acc2_has0": 0.5}})
        for rate, value in rate_values.items():
            out.append({"epoch": e, "split": "test", "domain": domain, "rate": rate,
                        "metrics": {"acc2_has0": value if e == best else value - 0.2, "mae": 1.0 - value}})
    return out


def _spec(protocol: str, seed: int, rate: float = 0.0, model: str = "m"):
    return {"protocol": protocol, "protocol_version": "1.0", "datasets": ["synth-mosi"], "model": model,
            "config": {"train.lr": 0.001}, "impl_version": 1, "modalities": ["t", "a", "v"], "seed": seed,
            "rate": rate, "task": "regression", "source_domains": ["synth-mosi"], "target_domains": [],
            "selection_rules": ["val", "last"]}


# EMT-DLFR's SIMS Acc-2 curve (percent), the one tests/test_metrics.py checks to give AUILC 38.41.
SIMS_RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
SIMS_ACC2 = [80.1, 79.2, 77.0, 76.1, 75.0, 73.5]


def test_missing_rate_curve_joins_runs_over_rates_and_gives_the_auilc():
    views = []
    for seed, shift in ((1, 0.0), (2, 1.0)):
        for rate, value in zip(SIMS_RATES, SIMS_ACC2):
            records = _records({rate: value + shift}, [0.9, 0.7, 0.8], train_rate=rate)
            views.append((_spec("missing-rate", seed, rate), records))
    (curve,) = curves(views)
    assert curve.rates == SIMS_RATES
    mean = curve.mean()
    assert [mean[r]["acc2_has0"] for r in SIMS_RATES] == pytest.approx([v + 0.5 for v in SIMS_ACC2])
    value, std, n = curve.auilc("acc2_has0")
    assert n == 2
    assert value == pytest.approx(auilc(SIMS_RATES, SIMS_ACC2) + 0.5 * 0.5)
    assert value - 0.25 == pytest.approx(38.41, abs=0.01)  # seed 1's curve is the paper's
    assert curve.auilc("acc2_has0", normalised=True)[0] == pytest.approx(
        (auilc_norm(SIMS_RATES, SIMS_ACC2) + auilc_norm(SIMS_RATES, [v + 1 for v in SIMS_ACC2])) / 2)
    (summary,) = curve_summary(views)
    assert summary["rates"] == SIMS_RATES and summary["seeds"] == [1, 2]
    assert summary["auilc"]["acc2_has0"][0] == pytest.approx(value)


def test_missing_rate_eval_reads_every_rate_at_the_epoch_chosen_on_complete_data():
    records = _records(dict(zip(SIMS_RATES, SIMS_ACC2)), [0.9, 0.6, 0.8], train_rate=0.0)
    points = run_curve((_spec("missing-rate-eval", 1), records))
    assert sorted(points) == SIMS_RATES
    assert [points[r]["acc2_has0"] for r in SIMS_RATES] == SIMS_ACC2  # the best epoch's values
    (curve,) = curves([(_spec("missing-rate-eval", 1), records)])
    assert curve.auilc("acc2_has0")[0] == pytest.approx(38.41, abs=0.01)


def test_curves_keep_models_apart_and_ignore_other_protocols():
    views = [(_spec("missing-rate-eval", 1, model=m), _records({0.0: 0.7, 1.0: 0.5}, [0.5])) for m in ("a", "b")]
    views.append((_spec("standard", 1), _records({0.0: 0.7}, [0.5])))
    assert [c.model for c in curves(views)] == ["a", "b"]


# -- runs on synth-mosi (tiny) ---------------------------------------------------------------------------------


def _store_views(out):
    from msabench.store.runs import Store

    return [(rd.read_spec().to_dict(), rd.read_records()) for rd in Store(out).runs() if rd.is_done()]


def test_missing_rate_completes_its_grid_on_synth_mosi_tiny(tmp_path):
    from msabench.cli import main

    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "missing-rate", "--tiny", "--model", "linear_probe", "--seeds",
                 "1",
                 "--out", str(out), "--device", "cpu"]) == 0
    done = _store_views(out)
    assert sorted(s["rate"] for s, _ in done) == list(GRID_FULL)
    for spec, records in done:  # trained, validated and tested at its own rate only
        assert {float(r["rate"]) for r in records} == {spec["rate"]}
    (summary,) = curve_summary(done)
    assert summary["rates"] == list(GRID_FULL) and summary["seeds"] == [1]
    value, _, n = summary["auilc"]["acc2_has0"]
    assert n == 1 and 0.0 < value <= 1.0
    assert summary["auilc_norm"]["acc2_has0"][0] == pytest.approx(value / 1.0)


def test_missing_rate_eval_tests_one_checkpoint_at_every_rate(tmp_path):
    from msabench.cli import main

    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "missing-rate-eval", "--tiny", "--model", "linear_probe",
                 "--seeds", "1",
                 "--rates", "0,0.5,1", "--out", str(out), "--device", "cpu"]) == 0
    ((spec, records),) = _store_views(out)
    assert spec["rate"] == 0.0 and spec["eval_rates"] == [0.0, 0.5, 1.0]
    assert {float(r["rate"]) for r in records if r["split"] == "test"} == {0.0, 0.5, 1.0}
    assert {float(r["rate"]) for r in records if r["split"] != "test"} == {0.0}  # selection on complete data
    points = run_curve((spec, records))
    assert sorted(points) == [0.0, 0.5, 1.0]
    assert points[1.0]["acc2_has0"] is not None
