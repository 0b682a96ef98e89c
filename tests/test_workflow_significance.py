"""Significance from the CLI (issue: the researcher's workflow, item 4): `report --reference ROW --test
t|wilcoxon|bootstrap|mcnemar|williams`, Holm across the table, the test named in the caption; the
item-level tests read each run's stored test predictions and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msabench.report.significance import TESTS

PROBE, INVARIANT = "linear_probe", "linear_probe:model.features=invariant"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from msabench.cli import main

    out = tmp_path_factory.mktemp("sig") / "store"
    assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--model", PROBE, "--model", INVARIANT,
                 "--seeds", "1,2", "--tiny", "--no-mlflow", "--out", str(out)]) == 0
    return out


def _report(store, capsys, *args) -> dict:
    from msabench.cli import main

    assert main(["report", "--out", str(store), "--format", "json", "--reference", PROBE, *args]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    return table


def test_every_test_is_run_holm_adjusted_and_named(store, capsys):
    counts = {}
    for test in TESTS:
        table = _report(store, capsys, "--test", test)
        ref = table["meta"]["reference"]
        assert ref["test"] == test and f"({TESTS[test]}, Holm-adjusted across the table's" in table["caption"]
        assert all(t["p_holm"] is None or t["p_holm"] >= t["p"] for t in ref["tests"])
        counts[test] = {t["column"].split(":")[1] for t in ref["tests"]}
    assert counts["t"] == counts["wilcoxon"] == counts["bootstrap"]  # every metric column
    assert counts["mcnemar"] == {"acc2_has0", "acc2_non0", "acc7"}  # accuracy columns only
    assert counts["williams"] == {"corr"}


def test_mcnemar_matches_the_stored_predictions(store, capsys):
    """The p of the acc2_has0 cell, recomputed from the two rows' predictions.npz by hand."""
    from scipy.stats import binomtest

    from msabench.report.aggregate import selected_epoch
    from msabench.report.build import load_views
    from msabench.store.format import Predictions
    from msabench.store.io import read_npz_file

    table = _report(store, capsys, "--test", "mcnemar")
    (cell,) = [t for t in table["meta"]["reference"]["tests"] if t["column"].endswith(":acc2_has0")]
    right = {PROBE: [], INVARIANT: []}
    for view in sorted(load_views(str(store)), key=lambda v: v.spec["seed"]):
        pred = Predictions(read_npz_file(f"{view.path}/predictions.npz"))
        epoch = selected_epoch(view, "val")
        label = INVARIANT if view.spec.get("model_keys") else PROBE
        right[label].append((pred.pred(epoch, "test", "synth-mosi") >= 0) == (pred.y("test", "synth-mosi") >= 0))
    a, b = np.concatenate(right[INVARIANT]), np.concatenate(right[PROBE])
    n_ab, n_ba = int(np.sum(a & ~b)), int(np.sum(~a & b))
    expected = 1.0 if n_ab + n_ba == 0 else binomtest(min(n_ab, n_ba), n_ab + n_ba, 0.5).pvalue
    assert cell["p"] == pytest.approx(expected, rel=1e-3) and cell["n_seeds"] == 2


def test_bad_test_requests_exit_2(store, capsys, tmp_path):
    import shutil

    from msabench.cli import main
    from msabench.store.runs import Store

    for args in (["--test", "bootstrap"], ["--reference", PROBE, "--test", "anova"]):
        assert main(["report", "--out", str(store), *args]) == 2
        err = capsys.readouterr().err
        assert "msabench: error:" in err and "--test" in err and "Traceback" not in err
    old = tmp_path / "old"
    shutil.copytree(store, old)
    rd = next(iter(Store(old).runs("done")))  # as recorded before the labels were stored
    rd.write_predictions({k: v for k, v in rd.read_predictions().items() if not k.startswith("y/")})
    assert main(["report", "--out", str(old), "--reference", PROBE, "--test", "williams"]) == 2
    assert "before msabench stored the test labels" in capsys.readouterr().err
    assert main(["report", "--out", str(old), "--reference", PROBE, "--test", "wilcoxon"]) == 0


def test_the_python_api_takes_the_test(store):
    from msabench import results

    (table,) = results.load(store).tables(reference=PROBE, test="williams")
    assert table.meta["reference"]["test"] == "williams" and TESTS["williams"] in table.caption
