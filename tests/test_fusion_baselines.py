"""Model-specific properties of the fusion baselines `ef_lstm`, `lf_lstm` and `lmf`: parameter counts
at MOSI shapes against MMSA 2.2.1, LMF's low-rank fusion against the full tensor it factorises,
LMF's optimiser groups and frozen fusion weights, EF-LSTM's masked time-step BatchNorm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from msabench.api import MODELS, TrainContext, config_from_flat, task_loss_fn
from msabench.api.conformance import make_input_spec, random_batch
from msabench.api.context import build_optimizers
from msabench.core.config import ModelSpec, resolve_config
from msabench.models.ef_lstm import EFLSTM
from msabench.models.lmf import LMF, LMFConfig
from msabench.models.tfn import tensor_fusion

MOSI_DIMS = {"t": 768, "a": 5, "v": 20}
MOSI_LENS = {"t": 50, "a": 375, "v": 500}
MOSI_ALIGNED_LENS = {"t": 50, "a": 50, "v": 50}

# MMSA 2.2.1, AMIO(get_config_regression(name, "mosi")) with train_mode "regression",
# sum(p.numel() for p in model.parameters()); MMSA has no lf_lstm.
MMSA_MOSI_PARAMS = {"ef_lstm": 885_605, "lmf": 505_071}


def _mosi_model(name: str):
    cls = MODELS.get(name)
    lens = MOSI_ALIGNED_LENS if getattr(cls, "NEEDS_ALIGNED", False) else MOSI_LENS
    spec = make_input_spec(("t", "a", "v"), dims=MOSI_DIMS, max_lens=lens)
    cfg = config_from_flat(cls.config_cls, resolve_config(cls, ModelSpec(name), "mosi"))
    with torch.device("meta"):
        return cls(cfg, spec)


@pytest.mark.parametrize("name,total,trainable", [
    ("ef_lstm", 885_605, 885_605),
    ("lmf", 505_071, 505_067),  # fusion weights (1 x rank 3) and bias (1) frozen, as MMSA's optimiser leaves them
    ("lf_lstm", 589_633, 589_633),
])
def test_parameter_count_at_mosi_shapes(name, total, trainable):
    model = _mosi_model(name)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    if name in MMSA_MOSI_PARAMS:
        assert total == MMSA_MOSI_PARAMS[name]


def test_ef_lstm_declares_aligned_input_and_has_one_norm_channel_per_step():
    assert EFLSTM.NEEDS_ALIGNED is True
    model = _mosi_model("ef_lstm")
    assert model.norm.weight.shape == (50,)
    assert model.lstm.input_size == 768 + 5 + 20


def test_ef_lstm_time_step_norm_ignores_padding_in_training():
    """Junk on padded steps changes neither the training-mode output nor the running statistics."""
    spec = make_input_spec(("t", "a", "v"), max_lens={"t": 7, "a": 7, "v": 7})
    batch = random_batch(spec, batch_size=6, seed=3)
    for m in ("a", "v"):  # word-aligned: every modality has the text's mask
        setattr(batch, f"{'audio' if m == 'a' else 'vision'}_mask", batch.text_mask.clone())
    noisy = dataclasses.replace(batch)
    g = torch.Generator().manual_seed(1)
    pad = ~batch.text_mask
    for attr in ("text_feats", "audio", "vision"):
        x = getattr(batch, attr)
        setattr(noisy, attr, torch.where(pad[..., None], 1e3 * torch.randn(x.shape, generator=g), x))
    outs, stats = [], []
    for b in (batch, noisy):
        torch.manual_seed(0)
        model = EFLSTM(EFLSTM.tiny(), spec).train()
        outs.append(model(b).pred)
        stats.append((model.norm.running_mean.clone(), model.norm.running_var.clone()))
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(stats[0], stats[1])
    # the running statistics moved on real steps
    assert not torch.equal(stats[0][0], torch.zeros(7))


def test_lmf_equals_the_full_fusion_tensor_it_factorises():
    """Paper eq. 6: the low-rank output equals the full tensor fusion contracted with
    W = sum_i w_i (W_a^(i) x W_v^(i) x W_t^(i)), plus the bias."""
    spec = make_input_spec(("t", "a", "v"), task="classification")
    torch.manual_seed(0)
    model = LMF(LMF.tiny(), spec).eval()
    with torch.no_grad():
        model.fusion_bias.normal_()
        out = model(random_batch(spec, batch_size=5, seed=2))
    hs = [out.features[m] for m in ("a", "v", "t")]
    fused = tensor_fusion(hs)  # (B, (d_a + 1)(d_v + 1)(d_t + 1)), audio slowest
    f = model.factors
    full = torch.einsum("r,rio,rjo,rko->ijko", model.fusion_weights[0], f["a"], f["v"], f["t"])
    expected = fused @ full.reshape(-1, spec.n_outputs) + model.fusion_bias
    torch.testing.assert_close(out.pred, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train_fusion_weights", [False, True])
def test_lmf_fusion_weights_switch_and_factor_lr(train_fusion_weights):
    spec = make_input_spec(("t", "a", "v"))
    cfg = dataclasses.replace(LMF.tiny(), train_fusion_weights=train_fusion_weights)
    torch.manual_seed(0)
    model = LMF(cfg, spec).train()
    groups = model.param_groups({"train.lr": 1e-2, "train.factor_lr": 3e-2})["main"]
    assert groups[0]["lr"] == 3e-2 and "lr" not in groups[1]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.factors.values()}
    fusion_ids = {id(model.fusion_weights), id(model.fusion_bias)}
    assert (fusion_ids <= {id(p) for p in groups[1]["params"]}) == train_fusion_weights
    before = (model.fusion_weights.detach().clone(), model.fusion_bias.detach().clone())
    opt = build_optimizers(model, {"train.lr": 1e-2, "train.factor_lr": 3e-2})
    assert [g["lr"] for g in opt["main"].param_groups] == [3e-2, 1e-2]
    ctx = TrainContext(model=model, optimizers=opt, loss_fn=task_loss_fn("regression"))
    for _ in range(3):
        model.training_step(random_batch(spec, batch_size=7, seed=4), ctx)
    moved = not torch.equal(before[0], model.fusion_weights) or not torch.equal(before[1], model.fusion_bias)
    assert moved == train_fusion_weights


def test_lmf_presets_follow_mmsa_text_out_rule():
    for family, preset in LMF.PRESETS.items():
        assert preset["model.text_out"] == preset["model.text_hidden"] // 2, family
    assert LMFConfig().text_out == LMFConfig().text_hidden // 2


def test_lf_lstm_reads_each_modality_with_its_own_lstm():
    """Late fusion: a modality's unimodal vector depends on that modality alone."""
    spec = make_input_spec(("t", "a", "v"))
    torch.manual_seed(0)
    model = MODELS.get("lf_lstm")(MODELS.get("lf_lstm").tiny(), spec).eval()
    batch = random_batch(spec, batch_size=4, seed=5)
    noise = torch.randn(batch.audio.shape) * batch.audio_mask[..., None]
    changed = dataclasses.replace(batch, audio=batch.audio + noise)
    with torch.no_grad():
        a, b = model(batch).features, model(changed).features
    torch.testing.assert_close(a["t"], b["t"])
    torch.testing.assert_close(a["v"], b["v"])
    assert not torch.allclose(a["a"], b["a"])
