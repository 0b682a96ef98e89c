"""`misa` and `mag_bert`: parameter counts against MMSA 2.2.1, each loss term, MAG inside BERT, presets."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from msabench.api import MODELS, UserError, config_from_flat
from msabench.api.conformance import make_input_spec, random_batch, training_context
from msabench.api.text_encoder import EncoderSettings, config_only
from msabench.api.types import InputSpec
from msabench.core.config import ModelSpec, resolve_config
from msabench.models.mag_bert import AdaptationGate
from msabench.models.misa import cmd, orthogonality

MISA = MODELS.get("misa")
MAG_BERT = MODELS.get("mag_bert")

pytestmark = pytest.mark.time_limit(60)

# MMSA 2.2.1's own counts at MOSI shapes (text 768 x 50, audio 5 x 375, vision 20 x 500, regression),
# its models built with a random-init bert-base-uncased: tests/fixtures/mmsa_param_counts.py says how.
MMSA_MISA_PARAMS = 110_620_273  # BERT 109,482,240 with its pooler 590,592; sp_discriminator 516; tlayer_norm 3,072
MMSA_BERT_MAG_PARAMS = 110_705_665  # embeddings+encoder 108,891,648; MAG 1,222,656; pooler 590,592; classifier 769
BERT_BASE_NO_POOLER = 108_891_648
BERT_POOLER = 768 * 768 + 768


def _mosi_bert_spec(aligned: bool = False) -> InputSpec:
    """MOSI shapes with text as ids through a fine-tuned bert-base-uncased (as `msabench models --params`)."""
    lens = {"t": 50, "a": 50, "v": 50} if aligned else {"t": 50, "a": 375, "v": 500}
    return InputSpec(modalities=("t", "a", "v"), dims={"t": 768, "a": 5, "v": 20}, max_lens=lens,
                     text_kind="encoded", vocab_size=30522, special_ids={"pad": 0, "unk": 100, "cls": 101, "sep": 102},
                     task="regression", n_outputs=1, family="mosi", aligned=aligned,
                     text_encoder=EncoderSettings("bert-base-uncased", frozen=False).as_dict())


def _build_meta(cls, spec: InputSpec):
    from transformers import BertConfig

    cfg = config_from_flat(cls.config_cls, resolve_config(cls, ModelSpec(cls.name), "mosi"))
    with config_only(BertConfig()), torch.device("meta"):
        return cls(cfg, spec)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- MISA -----------------------------------------------------------------------------------------

def test_misa_parameter_count_against_mmsa():
    model = _build_meta(MISA, _mosi_bert_spec())
    h = 128
    assert _count(model.text_input) == BERT_BASE_NO_POOLER  # config-only BERT: no pooler (MISA never uses it)

    def lstm(i, w):  # one direction: 4 gates x (input + hidden weights + two biases)
        return 4 * w * (i + w) + 8 * w

    for m, d in (("a", 5), ("v", 20)):  # sLSTM: biLSTM(d, d), LayerNorm(2d), biLSTM(2d, d)
        assert _count(model.slstm[m]) == 2 * lstm(d, d) + 4 * d + 2 * lstm(2 * d, d)
    assert _count(model.project) == (768 + 80 + 20) * h + 3 * h + 3 * 2 * h  # Linear + LayerNorm
    assert _count(model.private) + _count(model.shared) + _count(model.recon) == 7 * (h * h + h)
    assert _count(model.fusion) == 4 * (h * h + h) + (h * 2048 + 2048) + (2048 * h + h) + 4 * h
    assert _count(model.head) == (6 * h * 3 * h + 3 * h) + (3 * h + 1)
    # MMSA minus what MISA never uses: BERT's pooler, sp_discriminator (Linear(128, 4)), tlayer_norm (2 x 1536)
    assert _count(model) == MMSA_MISA_PARAMS - BERT_POOLER - (h * 4 + 4) - 2 * 1536 == 110_026_093
    assert model.inference_parameter_count() == _count(model) - 3 * (h * h + h)


def _numpy_cmd(x1, x2, moments):
    x1, x2 = np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64)
    m1, m2 = x1.mean(0), x2.mean(0)
    total = np.linalg.norm(m1 - m2)
    for k in range(2, moments + 1):
        total += np.linalg.norm(((x1 - m1) ** k).mean(0) - ((x2 - m2) ** k).mean(0))
    return total


def test_cmd_is_zero_for_equal_batches_and_sees_each_moment():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 5, generator=g, dtype=torch.float64)
    assert float(cmd(x, x, 5)) == pytest.approx(0.0, abs=5 * 1e-6)  # CMD_EPS under each of the 5 roots
    # ... and its gradient stays finite there (sqrt's gradient at 0 is not)
    leaf = x.clone().requires_grad_(True)
    cmd(leaf, x, 5).backward()
    assert torch.isfinite(leaf.grad).all()
    # a shift moves the mean only: CMD is the shift's norm
    assert float(cmd(x, x + 0.5, 5)) == pytest.approx(0.5 * np.sqrt(5), abs=5e-6)
    # x and -x (centred, skewed): same mean and variance, opposite third moment
    skewed = -torch.log(torch.rand(256, 4, generator=g, dtype=torch.float64))  # exponential
    skewed = skewed - skewed.mean(0)
    assert float(cmd(skewed, -skewed, 2)) == pytest.approx(0.0, abs=1e-5)
    assert float(cmd(skewed, -skewed, 3)) > 0.1
    y = torch.randn(64, 5, generator=g, dtype=torch.float64)
    assert float(cmd(x, y, 5)) == pytest.approx(_numpy_cmd(x, y, 5), rel=1e-9)


def test_orthogonality_zero_for_uncorrelated_features_positive_for_shared_ones():
    a = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    b = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert float(orthogonality(a, b)) == pytest.approx(0.0, abs=1e-12)
    assert float(orthogonality(a, a)) == pytest.approx(16.0 / (1 + 1e-6) ** 4, rel=1e-6)  # (sum of 1s)^2
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=g)
    assert float(orthogonality(x, x)) > float(orthogonality(x, torch.randn(16, 6, generator=g)))
    # the row norms are constants to the gradient (MMSA's DiffLoss detaches them)
    x = x.clone().requires_grad_(True)
    orthogonality(x, x.detach()).backward()
    centred = x.detach() - x.detach().mean(0)
    scale = centred.norm(dim=1, keepdim=True) + 1e-6
    xn = centred / scale
    expected = 2 * (xn @ (xn.t() @ xn)) / (6 * 6) / scale
    expected = expected - expected.mean(0)  # through the batch centring
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-6)


def _misa(spec, **overrides):
    torch.manual_seed(0)
    cfg = dataclasses.replace(MISA.tiny(), dropout=0.0, fusion_dropout=0.0, **overrides)
    return MISA(cfg, spec)


def test_misa_aux_losses_are_the_weighted_terms_of_its_subspaces():
    spec = make_input_spec(("t", "a", "v"))
    model = _misa(spec, diff_weight=0.1, sim_weight=0.3, recon_weight=0.7).train()
    batch = random_batch(spec, batch_size=9, seed=3)
    out = model(batch)
    assert set(out.aux_losses) == {"cmd", "diff", "recon"}
    s = {m: out.features[f"shared_{m}"] for m in "tav"}
    p = {m: out.features[f"private_{m}"] for m in "tav"}
    expected_cmd = (cmd(s["t"], s["v"], 5) + cmd(s["t"], s["a"], 5) + cmd(s["a"], s["v"], 5)) / 3
    torch.testing.assert_close(out.aux_losses["cmd"], 0.3 * expected_cmd)
    expected_diff = sum(orthogonality(p[m], s[m]) for m in "tav") + sum(
        orthogonality(p[x], p[y]) for x, y in (("a", "t"), ("a", "v"), ("t", "v")))
    torch.testing.assert_close(out.aux_losses["diff"], 0.1 * expected_diff)
    projected = {m: model.project[m](u) for m, u in model.utterances(batch).items()}
    expected_recon = sum(F.mse_loss(model.recon[m](p[m] + s[m]), projected[m]) for m in "tav") / 3
    torch.testing.assert_close(out.aux_losses["recon"], 0.7 * expected_recon)
    for value in out.aux_losses.values():
        assert float(value.detach()) > 0
    assert model.eval()(batch).aux_losses == {}  # training only


def test_misa_zero_weights_drop_their_terms_and_the_reconstruction_layers():
    spec = make_input_spec(("t", "a", "v"))
    model = _misa(spec, diff_weight=0.0, sim_weight=0.0, recon_weight=0.0).train()
    assert len(model.recon) == 0
    assert model(random_batch(spec, batch_size=5, seed=1)).aux_losses == {}
    # one modality: no pair for CMD; the orthogonality loss is its private vs shared only
    spec_t = make_input_spec(("t",))
    model = _misa(spec_t).train()
    out = model(random_batch(spec_t, batch_size=5, seed=1))
    assert set(out.aux_losses) == {"diff", "recon"}
    torch.testing.assert_close(out.aux_losses["diff"],
                               0.1 * orthogonality(out.features["private_t"], out.features["shared_t"]))
    assert model.head[0].in_features == 2 * MISA.tiny().hidden_size


def test_misa_training_step_mse_task_loss_and_value_clipping():
    spec = make_input_spec(("t", "a", "v"))
    batch = random_batch(spec, batch_size=7, seed=2)
    model = _misa(spec, grad_clip_value=1e-3).train()
    with torch.no_grad():
        out = model(batch)  # no dropout anywhere: the step's forward is this one
    ctx = training_context(model, spec, lr=1e-2)
    ctx.grad_accum = 2  # MMSA's update_epochs: the first micro-batch leaves its clipped gradients in place
    logged = model.training_step(batch, ctx)
    assert logged["task"] == pytest.approx(float(F.mse_loss(out.pred, batch.y)), rel=1e-5)
    assert logged["total"] == pytest.approx(logged["task"] + sum(float(v) for v in out.aux_losses.values()), rel=1e-5)
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert float(grads.abs().max()) == pytest.approx(1e-3 / 2)  # the bound, divided like the loss
    l1 = _misa(spec, regression_loss="l1").train()
    logged = l1.training_step(batch, training_context(l1, spec, lr=1e-2))
    with torch.no_grad():
        expected_l1 = F.l1_loss(_misa(spec, regression_loss="l1").train()(batch).pred, batch.y)
    assert logged["task"] == pytest.approx(float(expected_l1), rel=1e-5)
    with pytest.raises(UserError, match="regression_loss"):
        _misa(spec, regression_loss="huber")


def test_misa_audio_and_vision_read_their_own_lengths():
    """Audio frames past the text's length count (MMSA packs audio with the text's lengths)."""
    spec = make_input_spec(("t", "a", "v"), max_lens={"t": 3, "a": 10, "v": 8})
    model = _misa(spec).eval()
    batch = random_batch(spec, batch_size=4, seed=5)
    assert bool(batch.audio_mask[0].all()) and int(batch.text_mask[0].sum()) == 3  # sample 0: full lengths
    changed = dataclasses.replace(batch, audio=batch.audio.clone())
    changed.audio[0, 9] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(changed).pred[0], model(batch).pred[0])


def test_misa_presets_follow_mmsa_config():
    expected = {  # family: dropout, diff, sim, recon, grad clip, batch size, lr, encoder
        "mosi": (0.2, 0.1, 0.3, 1.0, 0.8, 16, 1e-4, "bert-base-uncased"),
        "mosei": (0.5, 0.3, 0.8, 1.0, 0.8, 64, 1e-4, "bert-base-uncased"),
        "sims": (0.0, 0.3, 1.0, 0.8, 1.0, 64, 1e-4, "bert-base-chinese"),
    }
    for family, (dropout, diff, sim, recon, clip, bs, lr, encoder) in expected.items():
        flat = resolve_config(MISA, ModelSpec("misa"), family)
        cfg = config_from_flat(MISA.config_cls, flat)
        assert (cfg.dropout, cfg.diff_weight, cfg.sim_weight, cfg.recon_weight, cfg.grad_clip_value) == (
            dropout, diff, sim, recon, clip)
        assert (flat["train.batch_size"], flat["train.lr"], flat["train.text_lr"]) == (bs, lr, lr)
        assert (flat["text.encoder"], flat["text.frozen"], flat["train.grad_accum"]) == (encoder, False, 2)
        assert (cfg.hidden_size, cfg.cmd_moments, flat["train.patience"], flat["train.weight_decay"]) == (128, 5, 8, 0)
    assert MISA.USES_TEXT_ENCODER and not MISA.NEEDS_ALIGNED


# -- MAG-BERT -------------------------------------------------------------------------------------

def test_mag_bert_parameter_count_equals_mmsa():
    model = _build_meta(MAG_BERT, _mosi_bert_spec(aligned=True))
    d = 768
    assert _count(model.text) == BERT_BASE_NO_POOLER
    assert _count(model.gate) == ((20 + d) * d + d) + ((5 + d) * d + d) + (20 * d + d) + (5 * d + d) + 2 * d
    assert _count(model.pooler) == BERT_POOLER  # the config-only BERT has none: the model's own, same shape
    assert _count(model.classifier) == d + 1
    assert _count(model) == MMSA_BERT_MAG_PARAMS


def _encoded_spec(modalities=("t", "a", "v")):
    return make_input_spec(modalities, text_kind="encoded", aligned=True, max_lens={"t": 9})


def _mag(spec, **overrides):
    torch.manual_seed(0)
    return MAG_BERT(dataclasses.replace(MAG_BERT.tiny(), **overrides), spec)


def _hidden_states(model, batch, gated: bool):
    transformer = model.text.encoder.transformer
    run = lambda: transformer(input_ids=batch.text_ids, attention_mask=batch.text_mask.long(),  # noqa: E731
                              output_hidden_states=True).hidden_states
    if not gated:
        return run()
    with model.gating(model.aligned_inputs(batch)):
        return run()


@pytest.mark.parametrize("k", [0, 1, 2])
def test_mag_changes_bert_only_from_layer_k_on(k):
    """inject_after=k: hidden states 0..k-1 are BERT's own, state k is MAG(BERT's state k), later ones differ."""
    spec = _encoded_spec()
    model = _mag(spec, inject_after=k).eval()
    batch = random_batch(spec, batch_size=4, seed=3)
    with torch.no_grad():
        plain, gated = _hidden_states(model, batch, False), _hidden_states(model, batch, True)
        assert len(plain) == 3  # tiny-bert: embeddings + 2 layers
        real = batch.text_mask
        for i in range(k):
            torch.testing.assert_close(gated[i], plain[i], rtol=0, atol=0)
        torch.testing.assert_close(gated[k], model.apply_gate(plain[k], model.aligned_inputs(batch)))
        for i in range(k, len(plain)):
            assert (gated[i][real] - plain[i][real]).abs().amax(dim=-1).min() > 1e-4, f"state {i} not moved"
        # the prediction is the head over the gated last layer's [CLS]
        expected = model.classifier(model.pool(gated[-1])).squeeze(-1)
        torch.testing.assert_close(model(batch).pred, expected)
    # outside forward (and after it) BERT runs unchanged
    with torch.no_grad():
        torch.testing.assert_close(_hidden_states(model, batch, False)[-1], plain[-1], rtol=0, atol=0)


def test_mag_injection_site_is_checked():
    spec = _encoded_spec()
    with pytest.raises(UserError, match="inject_after=3"):
        _mag(spec, inject_after=3)
    with pytest.raises(UserError, match="inject_after=-1"):
        _mag(spec, inject_after=-1)


def test_adaptation_gate_scaling_and_zero_displacement():
    torch.manual_seed(0)
    gate = AdaptationGate(6, {"v": 3, "a": 2}, beta_shift=0.5, dropout=0.0).eval()
    z = torch.randn(2, 5, 6)
    nonverbal = {"v": 50 * torch.randn(2, 5, 3), "a": 50 * torch.randn(2, 5, 2)}
    with torch.no_grad():
        h = gate.displacement(z, nonverbal)
        alpha = torch.clamp_max(z.norm(dim=-1) / (h.norm(dim=-1) + 1e-6) * 0.5, 1.0)
        torch.testing.assert_close(gate(z, nonverbal), gate.norm(z + alpha.unsqueeze(-1) * h))
        # a large displacement is scaled to beta_shift x ||Z||
        assert (alpha < 1).all()
        torch.testing.assert_close((alpha.unsqueeze(-1) * h).norm(dim=-1), 0.5 * z.norm(dim=-1), rtol=1e-4, atol=1e-5)
        # no non-verbal signal and no shift bias: H = 0, the output is LayerNorm(Z)
        for shift in gate.shifts.values():
            shift.bias.zero_()
        zeros = {m: torch.zeros_like(x) for m, x in nonverbal.items()}
        torch.testing.assert_close(gate(z, zeros), gate.norm(z))


def test_mag_bert_without_an_inner_bert_gates_the_given_text():
    spec = make_input_spec(("t", "a", "v"), aligned=True)  # precomputed text features
    model = _mag(spec).eval()
    assert not model.inside_bert and model.pooler is not None
    batch = random_batch(spec, batch_size=5, seed=4)
    with torch.no_grad():
        gated = model.apply_gate(model.text(batch)[0], model.aligned_inputs(batch))
        torch.testing.assert_close(model(batch).pred, model.classifier(model.pooler(gated[:, 0])).squeeze(-1))
    text_only = _mag(make_input_spec(("t",), text_kind="encoded", aligned=True))
    assert text_only.gate is None and not text_only.inside_bert


def test_mag_bert_copy_gates_with_its_own_weights():
    spec = _encoded_spec()
    model = _mag(spec, inject_after=1).eval()
    batch = random_batch(spec, batch_size=4, seed=6)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        before = model(batch).pred
        torch.testing.assert_close(clone(batch).pred, before)
        for p in clone.gate.parameters():
            p.add_(0.5)
        assert not torch.allclose(clone(batch).pred, before)
        torch.testing.assert_close(model(batch).pred, before)


def test_mag_bert_needs_aligned_input_and_presets_follow_mmsa():
    unaligned = make_input_spec(("t", "a", "v"))
    assert "data.aligned=true" in MAG_BERT.check_inputs(unaligned)
    assert MAG_BERT.check_inputs(make_input_spec(("a", "v"), aligned=True)) == "model 'mag_bert' needs modalities t"
    for family, (lr, dropout, encoder) in {"mosi": (2e-5, 0.3, "bert-base-uncased"),
                                           "mosei": (1e-5, 0.2, "bert-base-uncased"),
                                           "sims": (5e-5, 0.1, "bert-base-chinese")}.items():
        flat = resolve_config(MAG_BERT, ModelSpec("mag_bert"), family)
        cfg = config_from_flat(MAG_BERT.config_cls, flat)
        assert (cfg.beta_shift, cfg.gate_dropout, cfg.inject_after) == (1.0, dropout, 0)
        assert (flat["train.lr"], flat["train.text_lr"], flat["train.batch_size"]) == (lr, lr, 32)
        assert (flat["text.encoder"], flat["text.frozen"], flat["train.weight_decay"]) == (encoder, False, 0.0)


def test_both_read_bert_by_default_on_every_family():
    for cls, family in itertools.product((MISA, MAG_BERT), ("mosi", "mosei", "sims", "meld", "iemocap")):
        flat = resolve_config(cls, ModelSpec(cls.name), family)
        assert flat["text.encoder"].startswith("bert-base-") and flat["text.frozen"] is False, (cls.name, family)
