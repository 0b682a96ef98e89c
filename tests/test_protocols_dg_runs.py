"""DG runs end to end: synth-dg (tiny), the feature-space check, lodo helpers, real data (MOSI and
MELD from ../shared/data beside a fabricated MOSEI), and (slow) invariant vs all features."""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
from pathlib import Path

import numpy as np
import pytest

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.plan.planner import plan
from msabench.plan.request import Request
from msabench.protocols.dg import is_lodo_helper
from msabench.report.aggregate import RunView, chosen_metrics, lodo_helpers, selected_epoch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "MOSI" / "label.csv").is_file(), reason="../shared/data is absent")
A = {"sources": ["synth-dg/mosei", "synth-dg/meld"], "target": "synth-dg/mosi"}


def selected(spec_records, rule, views=()):
    """What `report` shows for a run (`msabench.report.aggregate`): the epoch `rule` picks and the
    test metrics per domain there; `views` supplies the lodo helpers."""
    view = RunView("main", *spec_records)
    lodo = lodo_helpers(view, [RunView(str(i), s, r) for i, (s, r) in enumerate(views)]) if rule == "lodo" else ()
    return {"epoch": selected_epoch(view, rule, lodo), "domains": chosen_metrics(view, rule, lodo)}


def views(out):
    from msabench.store.runs import Store

    return [(rd.read_spec().to_dict(), rd.read_records()) for rd in Store(out).runs() if rd.is_done()]


@pytest.fixture(scope="module")
def lodo_store(tmp_path_factory):
    """Setting A, seed 1, linear_probe, tiny, with the lodo helpers: 1 main run + 2 helpers."""
    out = tmp_path_factory.mktemp("dg") / "store"
    code = main(["run", "--no-mlflow", "--protocol", "dg-multisource", "--setting", "A", "--seeds", "1", "--model",
                 "linear_probe",
                 "--selection", "lodo", "--tiny", "--out", str(out), "--device", "cpu"])
    assert code == 0
    return out


def test_tiny_multisource_run_logs_sources_and_target(lodo_store):
    done = views(lodo_store)
    assert len(done) == 3
    (main_spec, records), = [(s, r) for s, r in done if not is_lodo_helper(s)]
    assert main_spec["source_domains"] == A["sources"] and main_spec["target_domains"] == [A["target"]]
    assert (main_spec["task"], main_spec["label_rule"], main_spec["modalities"]) == ("classification", "round",
                                                                                      ["t", "v"])
    seen = {(r["split"], r["domain"]) for r in records}
    # no training split is evaluated (train.eval_train=false in the DG policy); the epoch's training
    # losses are logged with its first record
    assert main_spec["config"]["train.eval_train"] is False and not {s for s, _ in seen} & {"train"}
    epochs = sorted({r["epoch"] for r in records})
    first = [next(r for r in records if r["epoch"] == e) for e in epochs]
    assert all("train_task" in r["loss"] for r in first)
    assert sum("train_task" in r["loss"] for r in records) == len(epochs)
    assert {("valid", A["target"]), ("test", A["target"])} <= seen
    assert {("test", d) for d in A["sources"]} <= seen
    assert all({"acc", "f1_weighted"} <= set(r["metrics"]) for r in records)
    train_domain = selected((main_spec, records), "train-domain")
    oracle = selected((main_spec, records), "oracle")
    assert set(train_domain["domains"]) == set(A["sources"]) | {A["target"]}
    assert oracle["epoch"] is not None


def test_lodo_helpers_train_on_one_source_and_validate_on_the_other(lodo_store):
    done = views(lodo_store)
    helpers = [(s, r) for s, r in done if is_lodo_helper(s)]
    assert sorted((s["train_domains"][0], s["valid_domains"][0]) for s, _ in helpers) == [
        ("synth-dg/meld", "synth-dg/mosei"), ("synth-dg/mosei", "synth-dg/meld")]
    for _spec, records in helpers:
        assert A["target"] not in {r["domain"] for r in records}
        assert not [r for r in records if r["split"] == "train"]
    main_view = next((s, r) for s, r in done if not is_lodo_helper(s))
    chosen = selected(main_view, "lodo", done)
    assert chosen["epoch"] is not None and A["target"] in chosen["domains"]


def test_tiny_single_source_run_tests_both_targets(tmp_path):
    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "dg-single", "--setting", "B", "--seeds", "1", "--model",
                 "linear_probe",
                 "--tiny", "--out", str(out), "--device", "cpu"]) == 0
    ((spec, records),) = views(out)
    assert spec["source_domains"] == ["synth-dg/mosi"]
    assert spec["target_domains"] == ["synth-dg/meld", "synth-dg/mosei"]
    chosen = selected((spec, records), "oracle")  # mean target-valid accuracy over both targets
    assert set(chosen["domains"]) == {"synth-dg/mosi", "synth-dg/meld", "synth-dg/mosei"}


def test_domains_must_share_a_feature_space():
    # synth-mosi's vision has 20 features, the DG suite's 35
    request = Request(protocol="dg-multisource", datasets=("synth-mosi", "synth-dg/mosei", "synth-dg/meld"),
                      setting="A", seeds=(1,), models=("linear_probe",), tiny=True)
    with pytest.raises(UserError, match="feature space"):
        plan(request)
    request = dataclasses.replace(request, modalities=("t",))  # text shares its 768 features
    assert len(plan(request)) == 3  # the main run and its two lodo helpers


def test_dg_cli_errors_exit_2(tmp_path, capsys):
    assert main(["run", "--no-mlflow", "--protocol", "dg-single", "--selection", "lodo", "--dry-run", "--out",
                 str(tmp_path)]) == 2
    assert "dg-multisource" in capsys.readouterr().err
    assert main(["run", "--no-mlflow", "--protocol", "dg-multisource", "--setting", "D", "--dry-run", "--out",
                 str(tmp_path)]) == 2


# -- real data: MOSI and MELD from ../shared/data, a fabricated MOSEI, text through features.npz ---------------


def _write_npz(path: Path, ids, dim: int, scores, rng, vision_dim: int | None = None) -> None:
    ids = np.asarray(ids, dtype=str)
    text = rng.standard_normal((len(ids), dim)).astype(np.float32)
    text[:, 0] += np.asarray(scores, dtype=np.float32)  # one feature carries the sentiment
    arrays = {"id": ids, "text": text}
    if vision_dim:
        arrays["vision"] = rng.standard_normal((len(ids), 4, vision_dim)).astype(np.float32)
    np.savez(path, **arrays)


def _real_root(tmp_path: Path, mosi_vision: int | None = None, mosei_vision: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "MOSI").mkdir(parents=True)
    (root / "MELD").mkdir()
    (root / "MOSEI").mkdir()
    os.symlink(SHARED / "MOSI" / "label.csv", root / "MOSI" / "label.csv")
    with open(SHARED / "MOSI" / "label.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    _write_npz(root / "MOSI" / "features.npz", [f"{r['video_id']}$_${r['clip_id']}" for r in rows], 16,
               [float(r["label"]) for r in rows], rng, mosi_vision)
    meld_ids, meld_scores = [], []
    for fname, prefix in (("train_sent_emo.csv", "train"), ("dev_sent_emo.csv", "dev"), ("test_sent_emo.csv", "test")):
        os.symlink(SHARED / "MELD" / fname, root / "MELD" / fname)
        with open(SHARED / "MELD" / fname, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                meld_ids.append(f"{prefix}_dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}")
                meld_scores.append({"negative": -2.0, "neutral": 0.0, "positive": 2.0}[r["Sentiment"].strip().lower()])
    _write_npz(root / "MELD" / "features.npz", meld_ids, 16, meld_scores, rng, mosei_vision)
    # MOSEI: a small label.csv in MMSA's layout (thirds in [-3, 3], as MOSEI's annotators give)
    mosei_ids, mosei_scores = [], []
    with open(root / "MOSEI" / "label.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id", "clip_id", "text", "label", "annotation", "mode"])
        for mode, n in (("train", 90), ("valid", 30), ("test", 30)):
            for i in range(n):
                score = round(float(rng.integers(-9, 10)) / 3.0, 4)
                writer.writerow([f"vid{mode}{i // 3}", i % 3, f"utterance {i}", score,
                                 "Positive" if score > 0 else "Negative", mode])
                mosei_ids.append(f"vid{mode}{i // 3}$_${i % 3}")
                mosei_scores.append(score)
    _write_npz(root / "MOSEI" / "features.npz", mosei_ids, 16, mosei_scores, rng, mosei_vision)
    return root


@needs_shared
def test_real_data_dg_with_text_features(tmp_path):
    root = _real_root(tmp_path)
    out = tmp_path / "store"
    args = ["run", "--protocol", "dg-multisource", "--dataset", "mosi", "--dataset", "mosei", "--dataset", "meld",
            "--modalities", "t", "--setting", "A", "--seeds", "1", "--model", "linear_probe", "--tiny",
            "--selection", "train-domain",
            "--data-root", str(root), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    (spec, records), = views(out)
    assert spec["datasets"] == ["mosei", "meld", "mosi"] and spec["label_rule"] == "round"
    test_mosi = [r for r in records if r["split"] == "test" and r["domain"] == "mosi"]
    assert test_mosi and all(0.0 <= r["metrics"]["acc"] <= 1.0 for r in test_mosi)


@needs_shared
def test_real_data_vision_of_different_widths_is_refused(tmp_path, capsys):
    root = _real_root(tmp_path, mosi_vision=20, mosei_vision=35)
    args = ["run", "--protocol", "dg-multisource", "--dataset", "mosi", "--dataset", "mosei", "--dataset", "meld",
            "--setting", "A", "--seeds", "1", "--model", "linear_probe", "--tiny", "--dry-run",
            "--data-root", str(root), "--out", str(tmp_path / "store")]
    assert main(args) == 2
    assert "feature space" in capsys.readouterr().err


# -- the yardstick: invariant input features generalise, all of them do not -------------------------------------


@pytest.mark.slow
def test_invariant_features_beat_all_features_on_the_targets(tmp_path):
    """linear_probe on the ground truth's invariant features vs on all features (the protocol's quick
    list and synthetic policy), multi-source DG on synth-dg, all three settings, 1 seed: target
    accuracy under train-domain selection, oracle beside it."""
    out = tmp_path / "store"
    assert main(["run", "--no-mlflow", "--protocol", "dg-multisource", "--seeds", "1", "--selection", "train-domain",
                 "--out", str(out), "--device", "cpu"]) == 0
    target_acc: dict[tuple[str, str], list[float]] = {}
    for spec, records in views(out):
        if spec["model"] != "linear_probe":
            continue
        for rule in ("train-domain", "oracle"):
            chosen = selected((spec, records), rule)
            for t in spec["target_domains"]:
                target_acc.setdefault((spec["config"]["model.features"], rule), []).append(chosen["domains"][t]["acc"])
    mean = {k: statistics.fmean(v) for k, v in target_acc.items()}
    assert len(target_acc["invariant", "train-domain"]) == 3
    assert mean["invariant", "train-domain"] >= mean["all", "train-domain"] + 0.05, mean
    assert ("all", "oracle") in mean and ("invariant", "oracle") in mean
