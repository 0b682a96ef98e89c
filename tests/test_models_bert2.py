"""`self_mm` (ULGM unimodal labels, four heads) and `mmim` (BA bound with memory, CPC, two stages):
parameter counts against MMSA 2.2.1, MMSA's presets, the label update and its timing, the two-stage
update, and the unimodal labels of Self-MM on a synthetic set whose audio is pure noise."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel  # noqa: F401  (at collection: the first import takes seconds)

from msabench.api import MODELS, Batch, InputSpec, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, run_epochs, training_context
from msabench.core.config import ModelSpec, resolve_config
from msabench.models.mmim import MMIM, log_det_covariance
from msabench.models.self_mm import SelfMM, UnimodalLabels

pytestmark = pytest.mark.time_limit(60)

# MMSA 2.2.1: AMIO(get_config_regression(name, "mosi")), train_mode regression, its BertTextEncoder's
# BertModel.from_pretrained replaced by BertModel(BertConfig()) (no download; MMSA looks the class up
# in BertTextEncoder.TRANSFORMERS_MAP["bert"]); sum(p.numel() for p in model.parameters()).
MMSA_MOSI_PARAMS = {"self_mm": 109_641_572, "mmim": 109_763_913}
# MMSA's from_pretrained BERT carries its pooler (Linear 768 -> 768), which neither model uses; the
# harness counts BERT built from its config without it.
BERT_POOLER = 768 * 768 + 768
# MMSA's children at MOSI shapes (same build), for the parts that follow MMSA one to one.
MMSA_SELF_MM_PARTS = {"audio_model": 1_744, "video_model": 7_968,
                      "m": 104_576 + 16_512 + 129, "t": 24_608 + 1_056 + 33, "a": 272 + 272 + 17,
                      "v": 1_056 + 1_056 + 33}
MMSA_MMIM_PARTS = {"acoustic_enc": 3_472, "visual_enc": 5_392, "mi.tv": 25_220, "mi.ta": 25_220,
                   "cpc.t": 99_072, "cpc.a": 2_064, "cpc.v": 2_064, "fusion_prj": 119_169}


def _mosi_bert_model(name: str):
    """The model at MOSI shapes with bert-base-uncased's config (meta device, as `models --params`)."""
    from msabench.api.text_encoder import EncoderSettings, config_only

    cls = MODELS.get(name)
    flat = resolve_config(cls, ModelSpec(name), "mosi")
    assert flat["text.encoder"] == "bert-base-uncased" and flat["text.frozen"] is False
    with config_only(BertConfig()):
        spec = InputSpec(modalities=("t", "a", "v"), dims={"t": 768, "a": 5, "v": 20},
                         max_lens={"t": 50, "a": 375, "v": 500}, text_kind="encoded", vocab_size=30522,
                         special_ids={"pad": 0, "unk": 100, "cls": 101, "sep": 102},
                         text_encoder=EncoderSettings(name="bert-base-uncased", frozen=False).as_dict())
        with torch.device("meta"):
            return cls(config_from_flat(cls.config_cls, flat), spec)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["self_mm", "mmim"])
def test_parameter_count_equals_mmsa_without_the_unused_bert_pooler(name):
    model = _mosi_bert_model(name)
    assert _count(model) == MMSA_MOSI_PARAMS[name] - BERT_POOLER
    assert _count(model.text_input) == 108_891_648  # bert-base-uncased without the pooler


def test_parameter_parts_follow_mmsa():
    self_mm = _mosi_bert_model("self_mm")
    parts = {"audio_model": self_mm.audio_model, "video_model": self_mm.video_model, **dict(self_mm.heads.items())}
    assert {k: _count(v) for k, v in parts.items()} == MMSA_SELF_MM_PARTS
    mmim = _mosi_bert_model("mmim")
    got = {k: _count(mmim.get_submodule(k)) for k in MMSA_MMIM_PARTS}
    assert got == MMSA_MMIM_PARTS
    # entropy_prj (Linear 16 -> 4 per pair) is frozen: MMSA never updates it
    assert sum(p.numel() for p in mmim.parameters() if not p.requires_grad) == 2 * (16 * 4 + 4)


def test_presets_are_mmsa_config_regression():
    flat = {f: resolve_config(SelfMM, ModelSpec("self_mm"), f) for f in ("mosi", "mosei", "sims")}
    # (batch, lr bert/audio/video/other, wd bert/audio/video/other, v hidden, post text dim, H)
    expected = {"mosi": (16, 5e-5, 5e-3, 5e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 32, 32, 3.0),
                "mosei": (32, 5e-5, 5e-3, 1e-4, 1e-3, 1e-3, 0.0, 0.0, 1e-2, 32, 32, 3.0),
                "sims": (32, 5e-5, 5e-3, 5e-3, 1e-3, 1e-3, 1e-2, 1e-2, 1e-3, 64, 64, 1.0)}
    for family, values in expected.items():
        f = flat[family]
        assert (f["train.batch_size"], f["train.text_lr"], f["model.audio_lr"], f["model.video_lr"], f["train.lr"],
                f["model.text_weight_decay"], f["model.audio_weight_decay"], f["model.video_weight_decay"],
                f["train.weight_decay"], f["model.v_lstm_hidden_size"], f["model.post_text_dim"],
                f["model.label_bound"]) == values
        assert (f["train.grad_accum"], f["train.patience"]) == (4, 8)  # update_epochs, early_stop
    assert flat["sims"]["text.encoder"] == "bert-base-chinese"
    mmim = {f: resolve_config(MMIM, ModelSpec("mmim"), f) for f in ("mosi", "mosei")}
    m = mmim["mosi"]
    assert (m["train.lr"], m["train.text_lr"], m["model.mmilb_lr"], m["train.weight_decay"], m["train.clip"],
            m["train.batch_size"], m["model.alpha"], m["model.beta"], m["model.add_va"],
            m["model.mem_size"]) == (1e-3, 5e-5, 1e-3, 1e-4, 1.0, 32, 0.1, 0.1, False, 1)
    assert (m["model.lld_fraction"], mmim["mosei"]["model.lld_fraction"]) == (1.0, 0.5)


# -- Self-MM: ULGM ----------------------------------------------------------------------------------

def test_label_update_is_mmsa_formula_on_hand_computed_numbers():
    dims = {"m": 2, "t": 2, "a": 2}
    ulgm = UnimodalLabels(3, dims, torch.device("cpu"))
    index = torch.tensor([0, 2])
    ulgm.observe(index, torch.tensor([1.2, -2.4]))
    for m in dims:  # positive centre (0, 1) or (1, 0), negative its mirror image
        pos = torch.tensor([1.0, 0.0]) if m == "m" else torch.tensor([0.0, 1.0])
        ulgm.centres[m] = torch.stack([pos, -pos])
    features = {"m": torch.tensor([[0.5, 0.0], [0.5, 0.0]]),  # d_p 0.5, d_n 1.5: delta_f = 2
                "t": torch.tensor([[0.0, 0.5], [0.0, 0.5]]),  # delta_t = 2: alpha 1, agrees with the fusion
                "a": torch.tensor([[0.0, -0.5], [0.0, -0.5]])}  # d_p 1.5, d_n 0.5: delta_a = -2/3, alpha -1/3
    ulgm.update_labels(index, features, epoch=2, bound=3.0)
    # text: y_new = y_m, so y_t = y_m / 3 + 2 y_m / 3 = y_m
    assert ulgm.labels["t"][index].tolist() == pytest.approx([1.2, -2.4], abs=1e-6)
    # audio, y_m = 1.2: y_new = 0.5 (-1/3)(1.2) + 0.5 (1.2 - 2/3 - 2) = -0.9333; y_a = 1.2/3 + 2/3 (-0.9333)
    # audio, y_m = -2.4: y_new = 0.4 + 0.5 (-2.4 - 2.6667) = -2.1333; y_a = -0.8 + 2/3 (-2.1333)
    assert ulgm.labels["a"][index].tolist() == pytest.approx([-0.22222, -2.22222], abs=1e-4)
    assert ulgm.labels["a"][1] == 0.0 and not ulgm.seen[1]  # untouched sample
    ulgm.labels["a"][index] = torch.tensor([1.2, -2.4])
    # f_a (0, -0.1): d_p 1.1, d_n 0.9, delta_a = -2/11, alpha = -1/11; y_new = -0.545 (y_m 1.2) and
    # -2.18 (y_m -2.4), both clamped to -H = -0.5; epoch 3: y_a = (2/4) y_old + (2/4) y_new
    ulgm.update_labels(index, {**features, "a": torch.tensor([[0.0, -0.1], [0.0, -0.1]])}, epoch=3, bound=0.5)
    assert ulgm.labels["a"][index].tolist() == pytest.approx([0.5 * 1.2 - 0.25, 0.5 * -2.4 - 0.25], abs=1e-5)


def test_centres_use_trained_samples_by_label_sign_excluding_zero():
    ulgm = UnimodalLabels(5, {"m": 1, "t": 1}, torch.device("cpu"))
    index = torch.tensor([0, 1, 2, 3])
    ulgm.observe(index, torch.tensor([2.0, 0.0, -1.0, 1.0]))
    ulgm.store_features(index, {"m": torch.tensor([[4.0], [100.0], [-3.0], [2.0]]),
                                "t": torch.tensor([[1.0], [100.0], [-1.0], [5.0]])})
    ulgm.labels["t"][3] = -0.5  # a generated label decides its own modality's centre
    ulgm.update_centres(exclude_zero=True)
    assert ulgm.centres["m"].flatten().tolist() == [3.0, -3.0]  # the 0 label and the untrained row 4 excluded
    assert ulgm.centres["t"].flatten().tolist() == [1.0, 2.0]  # negatives: rows 2 (-1) and 3 (5)
    ulgm.update_centres(exclude_zero=False)  # label 0 joins the positives
    assert ulgm.centres["m"][0].item() == pytest.approx((4.0 + 100.0 + 2.0) / 3)


def _drive(model, ctx, batches, epoch):
    ctx.epoch = epoch
    model.train()
    model.on_epoch_start(ctx)
    logged = [model.training_step(b, ctx) for b in batches]
    ctx.flush()
    model.on_epoch_end(ctx)
    return logged


def test_labels_start_at_y_m_change_from_epoch_two_in_the_step_that_trains_them():
    spec = make_input_spec(("t", "a", "v"))
    torch.manual_seed(0)
    model = SelfMM(SelfMM.tiny(), spec)
    ctx = training_context(model, spec, n_train=12, steps_per_epoch=2, epochs=3)
    batches = [random_batch(spec, batch_size=6, seed=s) for s in (1, 2)]
    for b, offset in zip(batches, (0, 6)):
        b.index = torch.arange(6) + offset
    logged = _drive(model, ctx, batches, epoch=0)
    ulgm = ctx.state["ulgm"]
    y = torch.cat([b.y for b in batches])
    for s in "tav":
        assert torch.equal(ulgm.labels[s], y)  # no update in the first epoch
    assert all(step[f"loss_{s}"] == 0.0 for step in logged for s in "tav")  # weights tanh(|y_s - y_m|) = 0
    assert ctx.state["label_gaps"] == {"t": 0.0, "a": 0.0, "v": 0.0}
    ctx.epoch = 1
    model.training_step(batches[0], ctx)
    for s in "tav":  # only the trained batch's samples move
        assert not torch.equal(ulgm.labels[s][:6], y[:6])
        assert torch.equal(ulgm.labels[s][6:], y[6:])
    assert torch.equal(ulgm.labels["m"], y)
    records = [{"split": "valid", "loss": {}}, {"split": "train", "loss": {"task": 1.0}}]
    model.on_epoch_end(ctx)
    model.on_validation_end(ctx, records)
    gaps = {k: v for k, v in records[1]["loss"].items() if k.startswith("train_label_gap_")}
    assert set(gaps) == {"train_label_gap_t", "train_label_gap_a", "train_label_gap_v"}
    assert all(v > 0 for v in gaps.values()) and records[0]["loss"] == {}
    expected = (ulgm.labels["m"] - ulgm.labels["a"]).abs().mean().item()
    assert gaps["train_label_gap_a"] == pytest.approx(expected)


def test_param_groups_are_mmsa_five_groups():
    spec = make_input_spec(("t", "a", "v"), text_kind="encoded")
    model = SelfMM(SelfMM.tiny(), spec)
    groups = model.param_groups({"train.text_lr": 5e-5})["main"].groups
    bert_decay, bert_no_decay, audio, video, other = groups
    assert (bert_decay["lr"], bert_decay["weight_decay"]) == (5e-5, 1e-3)
    assert (bert_no_decay["lr"], bert_no_decay["weight_decay"]) == (5e-5, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in bert_no_decay["params"])
    assert all("LayerNorm" not in names[id(p)] and "bias" not in names[id(p)] for p in bert_decay["params"])
    assert (audio["lr"], audio["weight_decay"], video["lr"], video["weight_decay"]) == (5e-3, 1e-3, 5e-3, 1e-3)
    assert {names[id(p)].split(".")[0] for p in other["params"]} == {"heads"}
    assert "lr" not in other  # train.lr and train.weight_decay (MMSA's "other")


def _synth_batches(split, size: int, rng: np.random.Generator):
    """Batches of a loaded synthetic split: text features, audio, vision, masks from the lengths."""
    order = rng.permutation(len(split))
    for start in range(0, len(order), size):
        rows = np.sort(order[start:start + size])

        def seq(values, lengths, rows=rows):
            x = torch.from_numpy(np.ascontiguousarray(values[rows])).float()
            mask = torch.arange(x.shape[1])[None, :] < torch.from_numpy(lengths[rows])[:, None]
            return x, mask

        text, text_mask = seq(split.text_feats, split.text_lengths)
        audio, audio_mask = seq(split.audio, split.audio_lengths)
        vision, vision_mask = seq(split.vision, split.vision_lengths)
        yield Batch(index=torch.from_numpy(rows).long(), domain=torch.zeros(len(rows), dtype=torch.long),
                    y=torch.from_numpy(split.regression[rows]).float(), text_feats=text, text_mask=text_mask,
                    audio=audio, audio_mask=audio_mask, vision=vision, vision_mask=vision_mask)


def test_audio_labels_move_further_from_y_m_than_text_labels_when_audio_is_noise():
    """synth-mosi with pure-noise audio (data.noise_modality=a): from the second epoch on, ULGM's audio
    labels sit further from the multimodal label than the text labels."""
    from msabench.data.datasets import load_dataset

    data = load_dataset("synth-mosi", scale=0.05, noise_modality="a")
    train = data.splits["train"]
    spec = make_input_spec(("t", "a", "v"), dims=data.dims(),
                           max_lens={"t": train.text_feats.shape[1], "a": train.audio.shape[1],
                                     "v": train.vision.shape[1]})
    torch.manual_seed(0)
    model = SelfMM(SelfMM.tiny(), spec)
    epochs = 5
    ctx = training_context(model, spec, lr=3e-3, n_train=len(train), steps_per_epoch=math.ceil(len(train) / 16),
                           epochs=epochs)
    rng = np.random.default_rng(0)
    gaps = []
    for epoch in range(epochs):
        _drive(model, ctx, list(_synth_batches(train, 16, rng)), epoch)
        gaps.append(ctx.state["label_gaps"])
    assert gaps[0] == {"t": 0.0, "a": 0.0, "v": 0.0}  # labels start at y_m; the first update is in epoch 2
    assert all(g["a"] > g["t"] > 0 for g in gaps[1:]), gaps
    assert np.mean([g["a"] - g["t"] for g in gaps[1:]]) > 0.15, gaps


# -- MMIM -----------------------------------------------------------------------------------------

def test_log_det_covariance_is_the_biased_covariance_and_refuses_too_few_samples():
    x = torch.tensor([[0.0, 1.0], [2.0, 0.5], [1.0, -1.0], [4.0, 2.0]])
    expected = np.linalg.slogdet(np.cov(x.numpy().T, bias=True))[1]
    assert log_det_covariance(x).item() == pytest.approx(expected, rel=1e-5)
    assert log_det_covariance(x[:2]) is None  # n <= width: singular
    assert log_det_covariance(torch.ones(5, 2)) is None  # no spread


def _mmim(seed=0, **overrides):
    spec = make_input_spec(("t", "a", "v"))
    torch.manual_seed(seed)
    return MMIM(dataclasses.replace(MMIM.tiny(), **overrides), spec), spec


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _moved(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def test_stage_one_moves_only_the_q_networks_and_stage_two_never_moves_them():
    model, spec = _mmim()
    q_networks = {n for n, p in model.named_parameters() if n.startswith("mi.") and "entropy_prj" not in n}
    batch = random_batch(spec, batch_size=8, seed=3)
    ctx = training_context(model, spec, lr=0.0, n_train=8, steps_per_epoch=1)  # "main" cannot move
    model.on_epoch_start(ctx)
    before = _snapshot(model)
    logged = model.training_step(batch, ctx)
    assert _moved(model, before) == q_networks and "lld_stage1" in logged
    assert ctx.step_index == 2  # one step of each optimiser
    model, spec = _mmim(mmilb_lr=0.0)  # the q networks cannot move in stage 1: stage 2 must not move them
    ctx = training_context(model, spec, lr=1e-2, n_train=8, steps_per_epoch=1)
    model.on_epoch_start(ctx)
    before = _snapshot(model)
    model.training_step(batch, ctx)
    moved = _moved(model, before)
    assert not moved & q_networks
    assert {n for n in before if n not in moved} == q_networks | {n for n in before if "entropy_prj" in n}
    assert all(p.grad is None for n, p in model.named_parameters() if n in q_networks)  # nothing leaks


def test_stage_one_raises_the_lld_of_a_fixed_batch():
    model, spec = _mmim()
    batch = random_batch(spec, batch_size=16, seed=5)
    ctx = training_context(model, spec, lr=0.0, n_train=16, steps_per_epoch=1, epochs=10)
    lld = [step["lld_stage1"] for step in run_epochs(model, ctx, [batch], 10)]
    assert all(b > a for a, b in zip(lld, lld[1:])) and lld[-1] > lld[0] + 1.0, lld


def test_entropy_joins_from_the_third_batch_with_one_batch_of_memory_reset_each_epoch():
    model, spec = _mmim()
    batches = [random_batch(spec, batch_size=12, seed=s) for s in range(4)]
    ctx = training_context(model, spec, n_train=48, steps_per_epoch=4, epochs=2)
    for epoch in range(2):
        logged = run_epochs(model, ctx, batches, 1, first_epoch=epoch)
        assert ["entropy" in step for step in logged] == [False, False, True, True]
        memory = ctx.state["memory"]
        assert set(memory) == {"tv", "ta"} and all(len(memory[p][k]) == 1 for p in memory for k in ("pos", "neg"))
        y_last = batches[-1].y
        assert memory["ta"]["pos"][0].shape == (int((y_last > 0).sum()), 1)  # d_aout 4 // 4


def test_stage_one_on_the_first_half_of_the_batches_on_mosei():
    model, spec = _mmim(lld_fraction=0.5)
    batches = [random_batch(spec, batch_size=6, seed=s) for s in range(4)]
    ctx = training_context(model, spec, n_train=24, steps_per_epoch=4)
    logged = run_epochs(model, ctx, batches, 1)
    assert ["lld_stage1" in step for step in logged] == [True, True, False, False]


def test_add_va_adds_the_vision_audio_pair_and_contrast_off_drops_the_mi_terms():
    model, spec = _mmim(add_va=True)
    assert set(model.mi) == {"tv", "ta", "va"}
    model, spec = _mmim(contrast=False)
    ctx = training_context(model, spec, n_train=8, steps_per_epoch=1)
    logged = run_epochs(model, ctx, [random_batch(spec, batch_size=8, seed=1)], 1)
    assert not {"lld_stage1", "nce", "lld"} & set(logged[0])


@pytest.mark.parametrize("cls", [SelfMM, MMIM], ids=lambda c: c.name)
def test_fine_tuned_tiny_bert_trains_and_masks_padding(cls):
    """Text through a fine-tuned BERT (tiny-bert: the --tiny stand-in for bert-base-uncased): BERT's
    parameters train with the rest, and padded tokens and frames never change the prediction."""
    from msabench.api.conformance import check_padding_masked, check_training_updates_every_parameter

    spec = make_input_spec(("t", "a", "v"), text_kind="encoded")
    check_training_updates_every_parameter(cls, spec)
    check_padding_masked(cls, spec)
