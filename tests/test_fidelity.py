"""Issue 21 (protocol fidelity): one test per fix, each failing on the code before it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from msabench.core.errors import UserError


# -- fix 1: IEMOCAP label columns follow MulT's eval_iemocap (Neutral, Happy, Sad, Angry) ----------------
def test_iemocap_columns_are_mults_order(tmp_path):
    from msabench.core.types import IEMOCAP_EMOTIONS
    from msabench.data.readers import read_mult_pickle
    from msabench.metrics import multilabel_metrics

    assert IEMOCAP_EMOTIONS == ("neutral", "happy", "sad", "angry")
    rng = np.random.default_rng(0)
    obj = {}
    for split, n in {"train": 6, "valid": 4, "test": 4}.items():
        hot = np.zeros((n, 4), dtype=np.int64)
        hot[:, 1] = 1  # MulT's column 1: Happy
        obj[split] = {"text": rng.normal(size=(n, 3, 2)), "audio": rng.normal(size=(n, 4, 2)),
                      "vision": rng.normal(size=(n, 4, 2)), "labels": np.stack([1 - hot, hot], -1)}
    path = tmp_path / "iemocap_data_noalign.pkl"
    path.write_bytes(pickle.dumps(obj))
    y = read_mult_pickle(path).splits["test"].multilabel
    # a model that says "happy" for every sample is right on happy, and right on no other emotion's positives
    logits = np.where(np.arange(4) == IEMOCAP_EMOTIONS.index("happy"), 5.0, -5.0)[None].repeat(len(y), 0)
    m = multilabel_metrics(logits, y, IEMOCAP_EMOTIONS)
    assert m["acc_happy"] == 1.0 and m["acc_neutral"] == 1.0  # neutral: all negative, predicted negative
    y_neutral_first = y[:, [1, 0, 2, 3]]
    assert multilabel_metrics(logits, y_neutral_first, IEMOCAP_EMOTIONS)["acc_happy"] == 0.0


def test_synthetic_iemocap_corners_follow_the_names():
    from msabench.core.types import IEMOCAP_EMOTIONS
    from msabench.data.synth_labels import EMOTION_CORNERS, EMOTIONS

    assert EMOTIONS == IEMOCAP_EMOTIONS
    # neutral: no valence, low arousal; happy: positive valence
    assert tuple(EMOTION_CORNERS[EMOTIONS.index("neutral")]) == pytest.approx((0.0, -0.9))
    assert EMOTION_CORNERS[EMOTIONS.index("happy")][0] > 0


# -- fix 2: AUILC cells read their own protocol on a pinned grid ------------------------------------------
def _rate_store(tmp_path):
    """missing-rate runs of tfn on the full grid (seeds 1-3, seed 3 without rate 0.7), missing-rate runs
    of lmf on 0.5..1.0 only, and missing-rate-eval runs of tfn (another experiment) in one store."""
    from fabricate import fabricate_views, write_store

    from msabench.protocols.templates import TEMPLATES

    t6 = TEMPLATES.get("emt-table6")
    full = [v for v in fabricate_views(t6, ["tfn"]) if not (v.spec["seed"] == 3 and v.spec["rate"] == 0.7)]
    partial = fabricate_views(t6, ["lmf"], rates=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    other = [v for v in fabricate_views(t6, ["tfn"]) if v.spec["rate"] == 0.0]
    for v in other:  # the same model trained once on complete data, tested at every rate
        v.spec["protocol"] = "missing-rate-eval"
        v.spec["eval_rates"] = [round(0.1 * i, 1) for i in range(11)]
        v.records = [dict(r, metrics={k: 0.0 for k in r["metrics"]}) for r in v.records]
        v.records += [dict(r, rate=round(0.1 * i, 1)) for r in v.records if r["split"] == "test" for i in range(1, 11)]
    out = tmp_path / "store"
    write_store([v for v in full + partial + other if v.spec["datasets"] == ["synth-mosi"]], str(out))
    return out, full


@pytest.mark.slow
def test_emt_table6_own_protocol_pinned_grid_marked_cell(tmp_path):
    from msabench.metrics import auilc
    from msabench.report.aggregate import rate_metrics
    from msabench.report.build import build_report, build_tables, load_views
    from msabench.report.paper import GRID_FLAG

    out, full = _rate_store(tmp_path)
    (table,) = build_tables(load_views(str(out)), tables=["emt-table6"])
    rows = {r.label: r for r in table.rows if r.kind == "ours"}
    tfn, lmf = rows["TFN"], rows["LMF"]
    # the right cell: tfn's MAE AUILC over 0.0..1.0 from missing-rate runs only; seed 3 lacks 0.7 -> left out, marked
    grid = [round(0.1 * i, 1) for i in range(11)]
    per_seed = {}
    for seed in (1, 2):
        curve = {float(v.spec["rate"]): rate_metrics(v, "val")[float(v.spec["rate"])]["synth-mosi"]["mae"]
                 for v in full if v.spec["seed"] == seed and v.spec["datasets"] == ["synth-mosi"]}
        per_seed[seed] = auilc(grid, [curve[r] for r in grid])
    cell = tfn.cells["mosi:mae"]
    assert cell.n == 2 and cell.mean == pytest.approx(sum(per_seed.values()) / 2)  # no missing-rate-eval zeros mixed in
    assert cell.flag == GRID_FLAG
    # lmf has only 0.5..1.0: marked, and says on which rates
    assert lmf.cells["mosi:mae"].flag == GRID_FLAG
    assert any("LMF" in n and "0.5..1.0" in n and "not the grid 0.0..1.0" in n for n in table.notes)
    assert any("TFN" in n and "seed 3" in n for n in table.notes)
    assert "grid (pinned): mosi 0.0..1.0 step 0.1" in table.caption
    text = build_report(str(out), table="emt-table6", warn=lambda m: None)
    assert f"{GRID_FLAG}" in text and "0.0..1.0 step 0.1" in text


# -- fix 5: data.mask_scheme=emt reproduces EMT-DLFR's official masks --------------------------------------
def _official_emt_keep(lengths, max_len, rate, seed, text):
    """sunlicai/EMT-DLFR data/load_data.py generate_m, restated: reseed, one uniform grid, keep if > rate."""
    real = (np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]).astype(int)
    np.random.seed(seed)
    keep = (np.random.uniform(size=real.shape) > rate) * real
    if text:
        for i, row in enumerate(keep):
            row[0] = row[lengths[i] - 1] = 1
    return keep.astype(bool) | ~real.astype(bool)


def test_emt_mask_scheme_is_the_official_draw_nested_and_shared():
    from msabench.data.masks import drop_masks

    lengths = np.array([5, 9, 12, 3, 12, 7])
    for m, seed in (("t", 111), ("a", 1111)):
        for rate in (0.3, 0.7):
            ours = drop_masks(lengths, 12, rate, dataset="mosi", split="train", modality=m, scheme="emt")
            assert np.array_equal(ours, ~_official_emt_keep(lengths, 12, rate, seed, m == "t"))
    kw = dict(dataset="mosi", modality="v")
    low = drop_masks(lengths, 12, 0.3, split="train", scheme="emt", **kw)
    high = drop_masks(lengths, 12, 0.6, split="train", scheme="emt", **kw)
    assert np.all(high[low]) and high.sum() > low.sum()  # nested across rates
    assert np.array_equal(drop_masks(lengths, 12, 0.3, split="test", scheme="emt", **kw), low)  # shared across splits
    default_low = drop_masks(lengths, 12, 0.3, split="train", **kw)
    default_high = drop_masks(lengths, 12, 0.6, split="train", **kw)
    assert not np.all(default_high[default_low])  # the default scheme is not nested


def test_mask_scheme_enters_the_run_id_only_when_not_default():
    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS
    from msabench.core.config import identity_config, parse_model_spec, resolve_config

    cls = MODELS.get("linear_probe")
    default = resolve_config(cls, parse_model_spec("linear_probe"), "mosi")
    same = resolve_config(cls, parse_model_spec("linear_probe"), "mosi", user_set={"data.mask_scheme": "msabench"})
    emt = resolve_config(cls, parse_model_spec("linear_probe"), "mosi", user_set={"data.mask_scheme": "emt"})
    assert default == same and default["data.mask_scheme"] == "msabench"
    # at the default the key stays out of the run id: the id of a config without it (a run stored
    # before the key existed) is unchanged
    assert "data.mask_scheme" not in identity_config(default)
    assert identity_config(default) == identity_config({k: v for k, v in default.items() if k != "data.mask_scheme"})
    assert identity_config(emt)["data.mask_scheme"] == "emt"
    with pytest.raises(UserError, match="data.mask_scheme='x'"):
        resolve_config(cls, parse_model_spec("linear_probe"), "mosi", user_set={"data.mask_scheme": "x"})


# -- missing-random (LNLN) ---------------------------------------------------------------------------------
def test_missing_random_plan_and_card():
    from msabench.plan.request import Request
    from msabench.protocols import PROTOCOLS

    p = PROTOCOLS.get("missing-random")
    runs = p.plan(Request(datasets=("synth-mosi",), seeds=(1, 2)))
    assert [r.seed for r in runs] == [1, 2] and {r.rate for r in runs} == {0.5}
    assert runs[0].eval_rates == tuple(round(0.1 * i, 1) for i in range(10))
    card = p.describe()
    assert card["version"] == "1.0" and card["valid_rate"] == 0.5
    assert "redrawn every epoch" in card["train_masks"]["rate"]
    with pytest.raises(UserError, match="below 1"):
        p.plan(Request(datasets=("synth-mosi",), rates=(0.0, 1.0)))


def test_random_rate_masks_follow_lnln():
    from msabench.data.masks import random_rate_drop_masks

    lengths = np.full(400, 30)
    kw = dict(dataset="synth-mosi", split="train", modality="a", seed=1)
    d0, r0 = random_rate_drop_masks(lengths, 30, epoch=0, **kw)
    d0b, r0b = random_rate_drop_masks(lengths, 30, epoch=0, **kw)
    d1, r1 = random_rate_drop_masks(lengths, 30, epoch=1, **kw)
    assert np.array_equal(d0, d0b) and np.array_equal(r0, r0b)  # seeded
    assert not np.array_equal(r0, r1)  # redrawn every epoch
    assert (r0 == 0).sum() >= 200 and (r0 == 0).sum() <= 205  # half the samples complete
    busy = r0 > 0
    assert abs(d0[busy].mean() - r0[busy].mean()) < 0.03  # each position dropped with the sample's rate
    assert not d0[~busy].any()
    dt, _ = random_rate_drop_masks(np.array([10, 4]), 12, epoch=0, dataset="x", split="train", modality="t", seed=1)
    assert not dt[0, 0] and not dt[0, 9] and not dt[1, 3] and not dt[:, 10:].any()  # [CLS]/[SEP], padding kept


def test_missing_random_training_redraws_masks_every_epoch():
    from msabench.engine.runner import build_model, prepare_tensors
    from msabench.plan.planner import Request, plan

    (spec,) = plan(Request(protocol="missing-random", models=("linear_probe",), datasets=("synth-mosi",), seeds=(1,),
                           tiny=True))
    _, datasets, tokens = build_model(spec, None)
    train, evals = prepare_tensors(spec, datasets, tokens)
    assert train.redraw is not None and train.drop
    first = {m: d.copy() for m, d in train.drop.items()}
    train.redraw(1)
    assert any(not np.array_equal(first[m], train.drop[m]) for m in first)
    assert {e.rate for e in evals if e.split == "test"} == {round(0.1 * i, 1) for i in range(10)}
    valid = [e for e in evals if e.split == "valid"]
    assert [e.rate for e in valid] == [0.5] and valid[0].data.redraw is None


# -- fix 7: #Params counts inference-time networks only --------------------------------------------------
def _with_decoder():
    from torch import nn

    import msabench.models  # noqa: F401  (registers the plugins)
    from msabench.api.model import MODELS

    base = MODELS.get("linear_probe")

    class WithDecoder(base):
        """linear_probe plus a training-only reconstruction decoder (as EMT-DLFR has) and a frozen block."""

        name = "with_decoder"

        def __init__(self, cfg, spec):
            super().__init__(cfg, spec)
            self.decoder = nn.Linear(10, 10)  # 110 parameters used only in training
            self.frozen = nn.Linear(3, 3)  # 12 frozen parameters used at inference
            self.frozen.requires_grad_(False)

        def inference_parameter_count(self) -> int:
            return super().inference_parameter_count() - sum(p.numel() for p in self.decoder.parameters())

    return WithDecoder


@pytest.mark.slow
def test_params_count_inference_networks_only(tmp_path, monkeypatch):
    import json

    from msabench.api.model import MODELS
    from msabench.cli import main
    from msabench.protocols.templates import TEMPLATES
    from msabench.report.aggregate import RunView
    from msabench.report.paper import seed_values

    cls = _with_decoder()
    monkeypatch.setitem(MODELS._items, "with_decoder", cls)
    out = tmp_path / "store"
    assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
                 "--model", "with_decoder", "--seeds", "1", "--out", str(out)]) == 0
    (env_path,) = out.glob("runs/*/env.json")
    env = json.loads(env_path.read_text())
    trainable = env["n_params"]
    assert env["inference_params"] == trainable - 110 + 12
    t9 = TEMPLATES.get("emt-table9")
    col = next(c for c in t9.columns if c.value == "params")
    view = RunView("r", {"seed": 1, "datasets": ["synth-mosi"]}, [], env=env)
    assert seed_values(t9, col, 0, [view], "val", [view]) == {1: env["inference_params"] / 1e6}
    old = RunView("r", {"seed": 1, "datasets": ["synth-mosi"]}, [], env={"n_params": trainable})
    assert seed_values(t9, col, 0, [old], "val", [old]) == {}  # a trainable count is not #Params


# -- fix 8: SIMS bins in float32 whatever the dtype; ddof=1 stated where numbers are compared ----------------
def test_sims_metrics_bin_float64_copies_like_float32():
    from msabench.metrics import sims_metrics

    true = np.array([0.1, -0.1, 0.7, -0.7, 0.0, 0.4], dtype=np.float32)
    same = sims_metrics(true, true)
    as64 = sims_metrics(true.astype(np.float64), true)  # a float64 copy of the float32 labels as predictions
    assert same["acc3"] == as64["acc3"] == 1.0 and as64["acc5"] == 1.0


def test_check_failure_states_the_std_definition():
    from msabench.evaluation.check import compare
    from msabench.report.table import Cell, Column, Row, Table

    row = Row("r", "r", cells={"c": Cell(mean=0.9, std=0.01, n=3)})
    table = Table("t", "t", [Column("c", "c", metric="acc7")], [row])
    baseline = {"tolerance": {"k": 2.0, "floor": 0.0}, "cells": [{"table": "t", "row": "r", "column": "c",
                                                                  "metric": "acc7", "mean": 0.5, "std": 0.01}]}
    (line,) = compare(baseline, [table])
    assert "ddof=1" in line


# -- fix 11: the DG feature-space error names each domain's source and the option that changes it ---------
def test_dg_feature_space_error_names_sources_and_data_source_option():
    from types import SimpleNamespace

    from msabench.plan.planner import build_input_spec

    def domain(name, dim, source):
        split = SimpleNamespace(text_ids=None)
        return SimpleNamespace(name=name, source=source, splits={"train": split}, dims=lambda: {"t": dim},
                               max_lens=lambda: {"t": 10})

    mosi = domain("mosi", 768, "MOSI/Processed/unaligned_50.pkl")
    meld = domain("meld", 384, "MELD/train_sent_emo.csv + features.npz")
    with pytest.raises(UserError) as err:
        build_input_spec([mosi, meld], ("t",), "classification", "round", tokens=False)
    text = str(err.value)
    assert "mosi: dim 768 read from MOSI/Processed/unaligned_50.pkl" in text and "meld: dim 384" in text
    assert "--set data.source=label-csv" in text


# -- fix 10: degenerate runs are flagged ---------------------------------------------------------------------
def test_degenerate_predictions_by_task():
    from msabench.metrics import degenerate_predictions

    y = np.array([-2.0, 0.5, 1.0, 3.0])
    assert "near-constant" in degenerate_predictions("regression", np.full(4, 0.3) + 1e-4 * np.arange(4), y)
    assert degenerate_predictions("regression", y * 0.5, y) == ""
    logits = np.tile([0.1, 0.9, 0.0], (5, 1))
    assert "single predicted class (1)" in degenerate_predictions("classification", logits, np.arange(5) % 3)
    assert degenerate_predictions("classification", np.eye(3)[[0, 1, 1, 2, 0]], np.arange(5) % 3) == ""
    assert degenerate_predictions("multilabel", np.tile([1.0, -1, -1, -1], (4, 1)), np.eye(4)) != ""


@pytest.mark.slow
def test_degenerate_runs_marked_in_tables_and_status(tmp_path, monkeypatch, capsys):
    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS
    from msabench.cli import main
    from msabench.report.aggregate import DEGENERATE_FLAG

    class Stuck(MODELS.get("constant")):
        """A model stuck on one score, as lf_dnn on real MOSI text in 2 of 3 seeds."""

        name = "stuck"
        CONSTANT_BY_DESIGN = False

    monkeypatch.setitem(MODELS._items, "stuck", Stuck)
    out = str(tmp_path / "store")
    assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1",
                 "--model", "stuck", "--model", "constant", "--seeds", "1", "--out", out]) == 0
    capsys.readouterr()
    assert main(["status", "--out", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("degenerate")] == [
        line for line in lines if "degenerate" in line and "(stuck synth-mosi seed 1)" in line]
    assert len([line for line in lines if line.startswith("degenerate")]) == 1  # constant is so by design
    assert main(["report", "--out", out]) == 0
    report = capsys.readouterr().out
    stuck = next(line for line in report.splitlines() if line.startswith("| stuck"))
    constant = next(line for line in report.splitlines() if line.startswith("| constant"))
    assert DEGENERATE_FLAG in stuck and DEGENERATE_FLAG not in constant
    assert f"- {DEGENERATE_FLAG} stuck: degenerate run(s)" in report and "near-constant predictions" in report


# -- fix 6: the notes the tables must carry about the papers' numbers -----------------------------------------
def test_templates_carry_the_notes_on_the_papers_numbers():
    from msabench.protocols.templates import TEMPLATES
    from msabench.report.paper import build_template_table

    def notes(name, compare=False):
        table = build_template_table(TEMPLATES.get(name), [], compare_paper=compare)
        return " ".join(table.notes), table.caption

    s2lif, _ = notes("s2lif-table1")
    assert "'sign' rule" in s2lif and "imply 'round'" in s2lif and "swaps the MELD and MOSEI label counts" in s2lif
    assert "MELD 2,608" in s2lif and "MOSEI 4,591" in s2lif
    assert "Qwen-VL cells of setting B" in notes("s2lif-table2")[0]
    for name in ("mica-table2", "mica-table3", "mica-table4", "mica-table5"):
        text = notes(name)[0]
        assert "arguments swapped" in text and "GloVe (300), COVAREP (74) and Facet (35)" in text
    assert "16,265/1,869/4,643" in notes("m3sa-table2")[0]
    assert "notes on the paper's numbers" in notes("m3sa-table2", compare=True)[1]


# -- fix 4: DG runs train every epoch; the report says when lodo's epoch was clamped ---------------------------
def test_dg_protocols_do_not_stop_early():
    from msabench.protocols import PROTOCOLS

    for name in ("dg-single", "dg-multisource"):
        p = PROTOCOLS.get(name)
        assert p.early_stopping is False and p.version == "1.1" and p.describe()["early_stopping"] is False
    assert PROTOCOLS.get("standard").early_stopping is True


@pytest.mark.slow
def test_dg_run_logs_every_epoch_whatever_the_patience(tmp_path):
    import json

    from msabench.cli import main

    out = tmp_path / "store"
    assert main(["run", "--protocol", "dg-single", "--setting", "A", "--tiny", "--no-mlflow", "--threads", "1",
                 "--model", "constant", "--seeds", "1", "--set", "train.patience=1", "--set", "train.epochs=4",
                 "--out", str(out)]) == 0
    (summary,) = out.glob("runs/*/summary.json")
    data = json.loads(summary.read_text())
    assert data["epochs_run"] == 4 and data["stopped_early"] is False


def _valid(domain, accs, epochs=None):
    return [{"epoch": e, "split": "valid", "domain": domain, "rate": 0.0, "metrics": {"acc": a}}
            for e, a in zip(epochs or range(len(accs)), accs)]


def test_lodo_clamp_is_reported(monkeypatch):
    from msabench.evaluation.selection import lodo_clamp, select_epoch
    from msabench.report import aggregate
    from msabench.report.aggregate import RunView, note_lodo
    from msabench.report.table import Row

    main_records = _valid("a", [0.1, 0.2, 0.3])  # three epochs
    helpers = [_valid("a", [0.1, 0.2, 0.3, 0.4, 0.9]), _valid("b", [0.1, 0.2, 0.3, 0.4, 0.8])]  # best at epoch 4
    kw = dict(sources=("a", "b"), lodo_records=helpers)
    assert select_epoch(main_records, "lodo", task="classification", **kw) == 2
    assert lodo_clamp(main_records, **kw) == (4, 2)
    assert lodo_clamp(_valid("a", [0.1] * 6), **kw) is None
    view = RunView("r", {"seed": 1, "rate": 0.0, "source_domains": ["a", "b"], "datasets": ["a", "b", "c"]},
                   main_records)
    monkeypatch.setattr(aggregate, "lodo_helpers", lambda v, views: helpers)
    notes: list[str] = []
    note_lodo(Row("k", "probe"), [view], "lodo", [view], notes)
    assert notes == ["probe: the lodo epoch lies past the run's last epoch and was clamped to it: seed 1 "
                     "(helpers' best epoch 4, the run's last 2)."]


# -- fix 9: one preset rule for multi-domain runs; helpers train their main run's recipe; '-' says why --------
def test_lodo_helpers_train_their_main_runs_recipe():
    from msabench.plan.planner import Request, plan
    from msabench.protocols import PROTOCOLS

    specs = plan(Request(protocol="dg-multisource", models=("lf_dnn",), setting="A", seeds=(1,), tiny=True,
                         user_set={"data.scale": 0.05}))
    main = next(s for s in specs if not s.valid_domains)
    helpers = [s for s in specs if s.valid_domains]
    assert len(helpers) == 2
    assert main.config["train.lr"] == 2e-3 and main.config["train.weight_decay"] == 1e-3  # MOSEI's (first source)
    for h in helpers:  # the helper holding out MOSEI trains on MELD alone, yet with MOSEI's recipe
        assert h.config == main.config
    assert "first source domain" in PROTOCOLS.get("dg-multisource").describe()["preset_rule"]


def test_lodo_dash_says_why():
    from fabricate import fabricate_views

    from msabench.protocols.templates import TEMPLATES
    from msabench.report.aggregate import DASH_NOTE
    from msabench.report.paper import build_template_table

    template = TEMPLATES.get("s2lif-table2")
    views = fabricate_views(template, ["linear_probe"], seeds=(1, 2))  # main runs, no lodo helpers
    table = build_template_table(template, views, selection="lodo")
    row = next(r for r in table.rows if r.kind == "ours")
    assert all(cell.empty for cell in row.cells.values())
    expected = "linear_probe: '-' under lodo for seeds 1, 2 (settings A, B, C): a lodo helper run"
    assert any(n.startswith(expected) for n in table.notes)
    assert DASH_NOTE in table.notes


# -- fix 3: feature analysis: selection fitted off the test split, constant columns out, pre-mask features ------
def test_constant_columns_are_left_out_of_independence():
    from msabench.evaluation.feature_analysis import cross_independence, intra_independence

    rng = np.random.default_rng(0)
    z = rng.standard_normal(300)
    dependent = np.stack([z + 0.05 * rng.standard_normal(300) for _ in range(4)], axis=1)
    x = np.concatenate([dependent, np.zeros((300, 4))], axis=1)
    ratio, per = intra_independence(x)
    assert ratio == 0.0  # was 22/28 = 0.786 with the all-zero columns counted as independent
    assert per[4:] == [None] * 4
    cross, per_x = cross_independence(x, dependent)
    assert cross == 0.0 and per_x[4:] == [None] * 4


def test_l1_selection_is_fitted_on_the_fit_split_not_test():
    from msabench.evaluation.feature_analysis import analyse_features

    rng = np.random.default_rng(3)

    def split(n, informative):
        y = rng.integers(0, 3, n)
        x = rng.standard_normal((n, 6))
        x[:, informative] += 2.0 * (y - 1)
        return x, y

    test_x, test_y = split(300, 0)  # on test, feature 0 carries the label
    fit_x, fit_y = split(300, 5)  # on the fit split, feature 5 does
    kw = dict(l1_c=0.02)
    on_test = analyse_features({"d": {"b": test_x}}, {"d": test_y}, **kw)
    on_fit = analyse_features({"d": {"b": test_x}}, {"d": test_y}, fit={"d": {"b": fit_x}}, fit_labels={"d": fit_y},
                              **kw)
    assert 0 in on_test["per_domain"]["d"]["blocks"]["b"]["selected"] and on_test["selection_fit_split"] == "test"
    assert on_fit["per_domain"]["d"]["blocks"]["b"]["selected"] == [5] and on_fit["selection_fit_split"] == "valid"
    assert on_fit["per_domain"]["d"]["blocks"]["b"]["n_constant"] == 0


def test_masked_features_are_refused_and_premask_used():
    from msabench.evaluation.feature_analysis import _blocks, analyse_features

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4))
    mask = np.tile([1.0, 1.0, 0.0, 0.0], (50, 1))
    masked = x * mask
    with pytest.raises(ValueError, match="look masked"):
        analyse_features({"d": {"h": masked}}, {"d": rng.integers(0, 2, 50)}, masks={"d": {"h": mask}})
    blocks, _, mblocks = _blocks(object(), {"h": masked, "h:mask": mask, "h:premask": x})
    assert np.array_equal(blocks["h"], x) and np.array_equal(mblocks["h"], mask)
    out = analyse_features({"d": blocks}, {"d": rng.integers(0, 2, 50)}, masks={"d": mblocks})
    assert out["per_domain"]["d"]["blocks"]["h"]["selected"] == [0, 1]


# -- staged models: no rule picks an epoch before the model's last stage ------------------------------------
def test_no_selection_rule_picks_a_provisional_epoch():
    from msabench.evaluation.selection import select_epoch

    records = _valid("a", [0.9, 0.95, 0.5, 0.6]) + _valid("t", [0.9, 0.9, 0.7, 0.4])
    for r in records:
        r["provisional"] = r["epoch"] < 2 or None  # epochs 0-1: a staged model's first stage
        if r["provisional"] is None:
            del r["provisional"]
    kw = dict(task="classification", sources=("a",), targets=("t",))
    assert select_epoch(records, "train-domain", **kw) == 3
    assert select_epoch(records, "val", **kw) == 3
    assert select_epoch(records, "oracle", **kw) == 2
    assert select_epoch(records, "last", **kw) == 3
    only_provisional = [r for r in records if r["epoch"] < 2]
    assert select_epoch(only_provisional, "train-domain", **kw) is None
    assert select_epoch(only_provisional, "last", **kw) is None
