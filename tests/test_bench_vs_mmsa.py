"""perf/bench_vs_mmsa.py and perf/mmsa_runner.py: the parts that decide what is compared (no MMSA, no timing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

PERF = Path(__file__).resolve().parent.parent / "perf"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PERF / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_capped_loader_ends_the_run_after_the_last_epoch():
    runner = _load("mmsa_runner")
    loader = runner.CappedLoader([1, 2, 3], epochs=2)
    assert len(loader) == 3
    assert [list(loader), list(loader)] == [[1, 2, 3], [1, 2, 3]]
    with pytest.raises(runner.EpochsDone):
        iter(loader)


def test_msabench_args_give_a_model_its_own_scale_and_epochs_inline():
    bench = _load("bench_vs_mmsa")
    a = SimpleNamespace(scale=0.1, epochs=3, scales={"tfn": 0.1, "mult": 0.0125}, epochs_of={"tfn": 3, "mult": 2})
    args = bench.msabench_args(["tfn", "mult"], [1, 2], a, Path("store"))
    models = [args[i + 1] for i, v in enumerate(args) if v == "--model"]
    assert models == ["tfn", "mult:data.scale=0.0125,train.epochs=2,train.patience=3"]
    assert "train.eval_train=false" in args and "train.patience=4" in args and "--seeds" in args


def test_compare_says_within_only_inside_mmsas_seed_range():
    bench = _load("bench_vs_mmsa")
    mmsa = {"tfn": [{"MAE": 1.0, "Corr": 0.1, "Non0_acc_2": 0.5, "Non0_F1_score": 0.4},
                    {"MAE": 1.2, "Corr": 0.3, "Non0_acc_2": 0.7, "Non0_F1_score": 0.6}]}
    ours = {"tfn": {"mae": [1.1, 1.15], "corr": [0.5, 0.6], "acc2_non0": [0.5, 0.7], "f1_non0": [0.4, 0.6]}}
    table = bench.compare(["tfn"], mmsa, ours)
    assert table["tfn/mae"]["within"] and not table["tfn/corr"]["within"]
    assert table["tfn/acc2_non0"]["msabench_mean"] == pytest.approx(0.6)
